import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isPickleTuple, parsePickle, PickleError, PickleSecurityError, type PickleValue } from '../../src/data/pickle.js';
import { bytes, u32, u64 } from './helpers.js';

/** FRAME opcode with the length of `body`, followed by body. */
const frame = (body: Buffer) => bytes(0x95, u64(body.length), body);

function asBins(value: PickleValue): { images: string[]; issame: unknown } {
  assert.ok(Array.isArray(value) && value.length === 2);
  const [bins, issame] = value as readonly PickleValue[];
  assert.ok(Array.isArray(bins));
  return { images: (bins as PickleValue[]).map((b) => (Buffer.isBuffer(b) ? b.toString('latin1') : `not bytes: ${typeof b}`)), issame };
}

test('protocol 2 as Python 2 writes it: SHORT_BINSTRING/BINSTRING byte strings, BINPUT memo, APPENDS, TUPLE2', () => {
  const long = 'x'.repeat(300);
  const p = bytes(
    0x80, 2, // PROTO 2
    ']', 'q', 0, // EMPTY_LIST, BINPUT 0
    '(', // MARK
    'U', 2, 'ab', 'q', 1, // SHORT_BINSTRING 'ab'
    'T', u32(300), long, 'q', 2, // BINSTRING (4-byte length)
    'e', // APPENDS
    ']', 'q', 3, '(', 0x88, 0x89, 'e', // [True, False]
    0x86, 'q', 4, // TUPLE2
    '.',
  );
  const value = parsePickle(p);
  assert.ok(isPickleTuple(value));
  const { images, issame } = asBins(value);
  assert.deepEqual(images, ['ab', long]);
  assert.deepEqual(issame, [true, false]);
});

test('protocol 2 as Python 3 writes bytes: _codecs.encode(str, "latin1") and __builtin__.bytes() are read as data', () => {
  const p = bytes(
    0x80, 2, ']', 'q', 0, '(',
    'c', '_codecs\nencode\n', 'q', 1, 'X', u32(3), 'a\xc3\xbf', 'q', 2, 'X', u32(6), 'latin1', 'q', 3, 0x86, 'q', 4, 'R', 'q', 5,
    'c', '__builtin__\nbytes\n', 'q', 6, ')', 'R', 'q', 7,
    'h', 1, 'X', u32(1), 'z', 'h', 3, 0x86, 'R', // memo reuse of the global and of 'latin1'
    'e', ']', 'q', 8, 0x88, 'a', 0x86, 'q', 9, '.',
  );
  // the str 'a\xff' is stored as UTF-8 and re-encoded as latin-1
  const { images, issame } = asBins(parsePickle(p));
  assert.deepEqual(images, ['a\xff', '', 'z']);
  assert.deepEqual(issame, [true]);
});

test('protocol 3: SHORT_BINBYTES / BINBYTES', () => {
  const big = 'y'.repeat(1000);
  const p = bytes(0x80, 3, ']', 'q', 0, '(', 'C', 2, 'ab', 'q', 1, 'B', u32(1000), big, 'q', 2, 'e', ']', 'q', 3, 0x89, 'a', 0x86, 'q', 4, '.');
  const { images, issame } = asBins(parsePickle(p));
  assert.deepEqual(images, ['ab', big]);
  assert.deepEqual(issame, [false]);
});

test('protocol 4: FRAME, MEMOIZE, BINBYTES8, SHORT_BINUNICODE, BINUNICODE8, BINGET of a memoized item', () => {
  const body = bytes(
    ']', 0x94, '(', 'C', 2, 'ab', 0x94, 0x8e, u64(3), 'cde', 0x94, 'h', 1, 'e', // third image is memo 1 again
    ']', 0x94, 0x88, 'a', 0x86, 0x94, '.',
  );
  const value = parsePickle(bytes(0x80, 4, frame(body)));
  const { images, issame } = asBins(value);
  assert.deepEqual(images, ['ab', 'cde', 'ab']);
  assert.deepEqual(issame, [true]);
  // Strings
  const s = parsePickle(bytes(0x80, 4, frame(bytes(0x8c, 3, 'h\xc3\xa9', 0x94, 0x8d, u64(2), 'ok', 0x94, 0x86, '.'))));
  assert.deepEqual([...(s as readonly PickleValue[])], ['hé', 'ok']);
});

test('protocol 5: BYTEARRAY8 items and READONLY_BUFFER are plain bytes', () => {
  const body = bytes(']', 0x94, '(', 0x96, u64(2), 'ab', 0x94, 'C', 2, 'cd', 0x94, 'e', ']', 0x94, '(', 0x88, 0x88, 0x89, 0x89, 'e', 0x86, 0x94, '.');
  const big = bytes(0x80, 5, frame(body));
  const { images, issame } = asBins(parsePickle(big));
  assert.deepEqual(images, ['ab', 'cd']);
  assert.deepEqual(issame, [true, true, false, false]);
  assert.deepEqual(parsePickle(bytes(0x80, 5, 0x96, u64(1), 'q', 0x98, '.')), Buffer.from('q'));
});

test('protocols 0 and 1: text opcodes (STRING escapes, UNICODE escapes, INT bools, LONG, FLOAT, GET/PUT)', () => {
  const p0 = bytes("((lp0\nS'a\\x41\\n\\'b'\np1\naS\"q\"\np2\nag1\na(lp3\nI01\naI00\naI-7\naL12345678901234567890L\naF-2.5\naVh\\u00e9\\\\u\np4\natp5\n.");
  const value = parsePickle(p0) as readonly PickleValue[];
  assert.deepEqual((value[0] as Buffer[]).map((b) => b.toString('latin1')), ["aA\n'b", 'q', "aA\n'b"]);
  assert.deepEqual(value[1], [true, false, -7, 12345678901234567890n, -2.5, 'hé\\\\u']);
  const p1 = bytes('(]q', 0, '(U', 1, 'xq', 1, 'h', 1, 'eq', 2, ']q', 3, 'I01\nat.');
  assert.deepEqual(asBins(parsePickle(p1)).images, ['x', 'x']);
});

test('integers and floats: BININT1/2, BININT (signed), LONG1/LONG4 two\'s complement, BINFLOAT', () => {
  const p = bytes(
    0x80, 2, '(',
    'K', 255, 'M', 0x34, 0x12, 'J', u32(-5 >>> 0), 0x8a, 0, 0x8a, 1, 0xff, 0x8a, 2, 0x00, 0x80, 0x8a, 3, 0x00, 0x80, 0x00, 0x8a, 9, [0, 0, 0, 0, 0, 0, 0, 0, 1],
    0x8b, u32(1), 0x80, 'G', [0x3f, 0xf8, 0, 0, 0, 0, 0, 0],
    'l', '.',
  );
  assert.deepEqual(parsePickle(p), [255, 0x1234, -5, 0, -1, -32768, 32768, 2n ** 64n, -128, 1.5]);
});

test('dicts, sets, tuples and stack opcodes', () => {
  const p = bytes(
    0x80, 4, '(',
    '}', 0x94, '(', 0x8c, 1, 'a', 'K', 1, 0x8c, 1, 'b', ')', 'u', // {'a': 1, 'b': ()}
    0x8f, '(', 'K', 1, 'K', 2, 0x90, // {1, 2}
    '(', 'K', 3, 0x91, // frozenset({3})
    'N', 0x85, // (None,)
    'K', 9, '2', 0x86, // (9, 9) via DUP
    'K', 7, '0', // push then POP
    '(', 'K', 8, '1', // MARK ... POP_MARK
    '(', 'K', 1, 'K', 2, 'K', 3, 'K', 4, 't', // 4-tuple
    ']', 'K', 5, 'a', // list [5]
    '(', 'd', 'K', 6, 'K', 7, 's', // DICT from an empty MARK, then SETITEM
    'l', '.',
  );
  const value = parsePickle(p) as PickleValue[];
  assert.equal(value.length, 8);
  const [dict, set, frozen, single, pair, four, list, dict2] = value;
  assert.ok(dict instanceof Map && set instanceof Set && frozen instanceof Set && dict2 instanceof Map);
  assert.deepEqual([...dict.entries()], [['a', 1], ['b', []]]);
  assert.ok(isPickleTuple(dict.get('b')));
  assert.deepEqual([...set], [1, 2]);
  assert.deepEqual([...frozen], [3]);
  assert.deepEqual(single, [null]);
  assert.deepEqual(pair, [9, 9]);
  assert.deepEqual(four, [1, 2, 3, 4]);
  assert.ok(isPickleTuple(four));
  assert.deepEqual(list, [5]);
  assert.ok(!isPickleTuple(list));
  assert.deepEqual([...dict2.entries()], [[6, 7]]);
  assert.ok(!isPickleTuple(value));
});

test('LONG_BINPUT / LONG_BINGET and self-referencing lists', () => {
  const p = bytes(0x80, 2, ']', 'r', u32(300), 'C', 2, 'zz', 'r', u32(70000), 'a', 'j', u32(300), 'a', '.');
  const value = parsePickle(p) as PickleValue[];
  assert.equal(value.length, 2);
  assert.equal((value[0] as Buffer).toString(), 'zz');
  assert.equal(value[1], value);
});

/** Python 2 numpy (protocol 2): numpy.core.multiarray.scalar(dtype('b1'), '\x01'). */
function numpyBoolScalar(flag: boolean, memoBase: number, dtypeModule = 'numpy.core.multiarray'): Buffer {
  return bytes(
    'c', `${dtypeModule}\nscalar\n`, 'q', memoBase,
    'c', 'numpy\ndtype\n', 'q', memoBase + 1, 'U', 2, 'b1', 'K', 0, 'K', 1, 0x87, 'R',
    '(', 'K', 3, 'U', 1, '|', 'N', 'N', 'N', 'J', u32(0xffffffff), 'J', u32(0xffffffff), 'K', 0, 't', 'b', // BUILD dtype state
    'U', 1, flag ? 1 : 0, 0x86, 'R',
  );
}

test('numpy bool scalars (Python 2 and numpy 2 module names) become booleans', () => {
  const p = bytes(
    0x80, 2, '(', ']', '(', 'U', 1, 'a', 'U', 1, 'b', 'U', 1, 'c', 'U', 1, 'd', 'e',
    ']', '(', numpyBoolScalar(true, 10), numpyBoolScalar(false, 20, 'numpy._core.multiarray'), 'e', 't', '.',
  );
  const { images, issame } = asBins(parsePickle(p));
  assert.deepEqual(images, ['a', 'b', 'c', 'd']);
  assert.deepEqual(issame, [true, false]);
});

test('numpy 1-D bool and uint8 arrays via _reconstruct + BUILD (memoized before BUILD) and via _frombuffer', () => {
  const dtype = (code: string) =>
    bytes(0x8c, 5, 'numpy', 0x8c, 5, 'dtype', 0x93, 0x8c, code.length, code, 0x89, 0x88, 0x87, 'R',
      '(', 'K', 3, 0x8c, 1, '|', 'N', 'N', 'N', 'J', u32(0xffffffff), 'J', u32(0xffffffff), 'K', 0, 't', 'b');
  const reconstruct = (code: string, data: number[]) =>
    bytes(
      0x8c, 22, 'numpy._core.multiarray', 0x8c, 12, '_reconstruct', 0x93,
      0x8c, 5, 'numpy', 0x8c, 7, 'ndarray', 0x93, 'K', 0, 0x85, 'C', 1, 'b', 0x87, 'R', 'q', 200,
      '(', 'K', 1, 'K', data.length, 0x85, dtype(code), 0x89, 'C', data.length, data, 't', 'b',
    );
  const p = bytes(0x80, 4, '(', reconstruct('b1', [1, 0, 1]), reconstruct('u1', [0, 1]), 'h', 200, 'l', '.');
  const [bools, u8, again] = parsePickle(p) as PickleValue[];
  assert.deepEqual(bools, [true, false, true]);
  assert.deepEqual(u8, new Uint8Array([0, 1]));
  assert.deepEqual(again, new Uint8Array([0, 1]), 'memo entry stored before BUILD resolves to the built array');

  const fromBuffer = bytes(
    0x80, 5, 0x8c, 19, 'numpy._core.numeric', 0x8c, 11, '_frombuffer', 0x93,
    '(', 0x96, u64(2), [1, 0], dtype('b1'), 'K', 2, 0x85, 0x8c, 1, 'C', 't', 'R', '.',
  );
  assert.deepEqual(parsePickle(fromBuffer), [true, false]);
});

function assertRefused(p: Buffer, opcode: string, offset: number, text: RegExp, globalName?: string): void {
  assert.throws(
    () => parsePickle(p),
    (error: unknown) => {
      assert.ok(error instanceof PickleSecurityError, `expected PickleSecurityError, got ${String(error)}`);
      assert.equal(error.opcode, opcode);
      assert.equal(error.offset, offset);
      assert.equal(error.globalName, globalName);
      assert.match(error.message, text);
      return true;
    },
  );
}

test('malicious pickles are refused before anything runs', () => {
  // GLOBAL os.system + REDUCE
  assertRefused(bytes(0x80, 2, 'c', 'os\nsystem\n', 'X', u32(2), 'id', 0x85, 'R', '.'), 'GLOBAL', 2, /^refusing global os\.system at byte 2$/, 'os.system');
  // protocol 0 posix.system
  assertRefused(bytes('cposix\nsystem\n(S\'id\'\ntR.'), 'GLOBAL', 0, /global posix\.system at byte 0/, 'posix.system');
  // STACK_GLOBAL builtins.eval
  assertRefused(
    bytes(0x80, 4, 0x8c, 8, 'builtins', 0x94, 0x8c, 4, 'eval', 0x94, 0x93, 0x8c, 2, '42', 0x85, 'R', '.'),
    'STACK_GLOBAL', 20, /refusing global builtins\.eval at byte 20/, 'builtins.eval',
  );
  // INST and OBJ
  assertRefused(bytes('(S\'id\'\nios\nsystem\n.'), 'INST', 7, /INST of os\.system at byte 7/, 'os.system');
  assertRefused(bytes(0x80, 2, '(', 'c', 'numpy\ndtype\n', 'U', 2, 'b1', 'o', '.'), 'OBJ', 20, /OBJ of numpy\.dtype at byte 20/, 'numpy.dtype');
  assertRefused(bytes(0x80, 2, '(', ']', 'o', '.'), 'OBJ', 4, /OBJ of a list at byte 4/);
  // allow-listed module, other name
  assertRefused(bytes(0x80, 2, 'c', 'numpy.core.multiarray\nfromstring\n', '.'), 'GLOBAL', 2, /numpy\.core\.multiarray\.fromstring/, 'numpy.core.multiarray.fromstring');
  // REDUCE on a non-callable, calling ndarray directly, _reconstruct of a non-ndarray class
  assertRefused(bytes(0x80, 2, ']', ')', 'R', '.'), 'REDUCE', 4, /REDUCE on a list/);
  assertRefused(bytes(0x80, 2, 'c', 'numpy\nndarray\n', ')', 'R', '.'), 'REDUCE', 18, /calling numpy\.ndarray directly/, 'numpy.ndarray');
  assertRefused(
    bytes(0x80, 2, 'c', 'numpy.core.multiarray\n_reconstruct\n', 'c', 'numpy\ndtype\n', ')', 0x86, 'R', '.'),
    'REDUCE', 53, /_reconstruct of global numpy\.dtype at byte 53/, 'numpy.dtype',
  );
  // BUILD on plain data (would set attributes / call __setstate__)
  assertRefused(bytes(0x80, 2, ']', '}', 'b', '.'), 'BUILD', 4, /BUILD on a list/);
  // object-creating opcodes
  assertRefused(bytes(0x80, 2, ']', ')', 0x81, '.'), 'NEWOBJ', 4, /refusing NEWOBJ at byte 4/);
  assertRefused(bytes(0x80, 4, ']', ')', '}', 0x92, '.'), 'NEWOBJ_EX', 5, /NEWOBJ_EX/);
  assertRefused(bytes(0x80, 2, 0x82, 1, '.'), 'EXT1', 2, /EXT1/);
  assertRefused(bytes(0x80, 2, 0x83, 1, 0, '.'), 'EXT2', 2, /EXT2/);
  assertRefused(bytes(0x80, 2, 0x84, 1, 0, 0, 0, '.'), 'EXT4', 2, /EXT4/);
  assertRefused(bytes('Pfoo\n.'), 'PERSID', 0, /PERSID/);
  assertRefused(bytes(0x80, 2, 'K', 1, 'Q', '.'), 'BINPERSID', 4, /BINPERSID/);
});

test('allowed globals never leak as values, and unsupported numpy dtypes are errors', () => {
  assert.throws(() => parsePickle(bytes(0x80, 2, 'c', 'numpy\ndtype\n', '.')), (e: unknown) => e instanceof PickleError && /bare global numpy\.dtype/.test(e.message));
  assert.throws(
    () => parsePickle(bytes(0x80, 2, 'c', 'numpy\ndtype\n', 'U', 2, 'O8', 'K', 0, 'K', 1, 0x87, 'R', '.')),
    (e: unknown) => e instanceof PickleError && !(e instanceof PickleSecurityError) && /dtype "O8" is not supported/.test(e.message),
  );
});

test('truncated input fails with PickleError at every cut, naming a byte offset', () => {
  const full = bytes(0x80, 4, frame(bytes(']', 0x94, '(', 'C', 2, 'ab', 0x94, 'C', 2, 'cd', 0x94, 'e', ']', 0x94, 0x88, 'a', 0x86, 0x94, '.')));
  assert.ok(parsePickle(full));
  for (let cut = 0; cut < full.length; cut++) {
    assert.throws(
      () => parsePickle(full.subarray(0, cut)),
      (e: unknown) => e instanceof PickleError && /at byte \d+|truncated/.test(e.message) && Number.isInteger(e.offset),
      `cut at ${cut}`,
    );
  }
  assert.throws(() => parsePickle(bytes(0x80, 2, 'C', 10, 'ab')), /SHORT_BINBYTES at byte 2: needs 10 bytes but only 2 remain/);
  assert.throws(() => parsePickle(bytes(0x80, 4, 0x8e, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0], '.')), /BINBYTES8 at byte 2: length \d+ exceeds/);
});

test('garbage input fails with PickleError, never another exception or a hang', () => {
  assert.throws(() => parsePickle(Buffer.from('GIF89a not a pickle')), /unknown opcode|PickleError|at byte/);
  assert.throws(() => parsePickle(bytes(0x80, 9, '.')), /unsupported pickle protocol 9/);
  assert.throws(() => parsePickle(bytes(0x80, 2, 'a', '.')), /APPEND at byte 2: stack underflow/);
  assert.throws(() => parsePickle(bytes(0x80, 2, 'h', 5, '.')), /memo key 5 was never stored/);
  assert.throws(() => parsePickle(bytes(0x80, 2, 'e', '.')), /no MARK/);
  const valid = bytes(0x80, 4, frame(bytes(']', 0x94, '(', 'C', 2, 'ab', 0x94, 'C', 2, 'cd', 0x94, 'e', ']', 0x94, 0x88, 'a', 0x86, 0x94, '.')));
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  for (let trial = 0; trial < 3000; trial++) {
    const mutated = Buffer.from(valid);
    const edits = 1 + Math.floor(rnd() * 3);
    for (let e = 0; e < edits; e++) mutated[Math.floor(rnd() * mutated.length)] = Math.floor(rnd() * 256);
    try {
      parsePickle(mutated);
    } catch (error) {
      assert.ok(error instanceof PickleError, `trial ${trial}: ${String(error)}`);
    }
  }
});
