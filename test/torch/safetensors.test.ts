// safetensors: round-trips per dtype, byte layout against hand-assembled files, validation errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ops as F,
  tidy,
  manualSeed,
  saveSafetensors,
  loadSafetensors,
  serializeSafetensors,
  deserializeSafetensors,
  readSafetensorsHeader,
  parseSafetensorsHeader,
  SafetensorsError,
  type DType,
  type Tensor,
} from '../../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'plsc-safetensors-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
let fileCounter = 0;
function tempPath(): string {
  return join(dir, `f${fileCounter++}.safetensors`);
}

/** A file per the spec: u64 LE header length, the header JSON padded with spaces to 8, then data. */
function assemble(headerJson: string, data: Uint8Array, pad = true): Buffer {
  const json = Buffer.from(headerJson, 'utf8');
  const padded = pad ? Math.ceil(json.length / 8) * 8 : json.length;
  const header = Buffer.alloc(padded, 0x20);
  json.copy(header);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(padded));
  return Buffer.concat([prefix, header, data]);
}

function bytesOf(...parts: (ArrayBufferView | number[])[]): Uint8Array {
  const buffers = parts.map((p) => (Array.isArray(p) ? Buffer.from(p) : Buffer.from(p.buffer, p.byteOffset, p.byteLength)));
  return Buffer.concat(buffers);
}

const ALL_DTYPES: DType[] = ['float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'];

function sample(dtype: DType, shape: number[]): Tensor {
  return tidy(() => {
    const base = F.mul(F.randn(shape, { dtype: 'float64' }), 50);
    if (dtype === 'bool') return F.gt(base, 0);
    if (dtype === 'uint8') return F.abs(base).to('uint8');
    return base.to(dtype);
  });
}

test('round-trip through a file and through a buffer for every dtype', () => {
  manualSeed(1);
  tidy(() => {
    const tensors: Record<string, Tensor> = {};
    for (const dtype of ALL_DTYPES) {
      tensors[`t.${dtype}`] = sample(dtype, [3, 5]);
      tensors[`scalar.${dtype}`] = sample(dtype, []);
      tensors[`empty.${dtype}`] = sample(dtype, [0, 4]);
    }
    // A non-contiguous tensor is written in row-major order of its logical shape.
    tensors.transposed = F.transpose(F.reshape(F.arange(0, 6, 1, { dtype: 'float32' }), [2, 3]), 0, 1);
    const path = tempPath();
    saveSafetensors(path, tensors, { format: 'pt', note: 'ünïcode ✓' });
    const fromFile = loadSafetensors(path);
    const fromBuffer = deserializeSafetensors(serializeSafetensors(tensors, { format: 'pt' }));
    assert.deepEqual(Object.keys(fromFile).sort(), Object.keys(tensors).sort());
    for (const loaded of [fromFile, fromBuffer]) {
      for (const [name, original] of Object.entries(tensors)) {
        const back = loaded[name] as Tensor;
        assert.equal(back.dtype, original.dtype, `${name} dtype`);
        assert.deepEqual(back.shape, original.shape, `${name} shape`);
        assert.deepEqual(back.bytes(), F.contiguous(original).bytes(), `${name} bytes`);
      }
    }
    assert.deepEqual((fromFile.transposed as Tensor).toArray(), [0, 3, 1, 4, 2, 5]);
    assert.deepEqual(readSafetensorsHeader(path).metadata, { format: 'pt', note: 'ünïcode ✓' });
  });
});

test('a file assembled by hand per the spec reads back correctly', () => {
  // Deliberately not in the writer's order, with metadata last and no padding needed check.
  const header =
    '{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[16,32]},' +
    '"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},' +
    '"h":{"dtype":"F16","shape":[3],"data_offsets":[32,38]},' +
    '"bf":{"dtype":"BF16","shape":[1],"data_offsets":[38,40]},' +
    '"mask":{"dtype":"BOOL","shape":[2,1],"data_offsets":[40,42]},' +
    '"__metadata__":{"format":"pt","epoch":"3"}}';
  const data = bytesOf(
    new BigInt64Array([7n, -9007199254740993n]),
    new Float32Array([1.5, -2, 0.25, 1e-3]),
    new Uint16Array([0x3c00, 0xc000, 0x3555]), // f16: 1, -2, 0.333...
    new Uint16Array([0x4049]), // bf16: 3.140625
    [1, 0],
  );
  const path = tempPath();
  writeFileSync(path, assemble(header, data));
  tidy(() => {
    const loaded = loadSafetensors(path);
    assert.deepEqual(Object.keys(loaded).sort(), ['bf', 'h', 'ids', 'mask', 'w']);
    assert.deepEqual((loaded.w as Tensor).shape, [2, 2]);
    assert.deepEqual((loaded.w as Tensor).toArray(), [1.5, -2, 0.25, Math.fround(1e-3)]);
    assert.deepEqual(Array.from((loaded.ids as Tensor).dataSync() as BigInt64Array), [7n, -9007199254740993n]);
    assert.equal((loaded.h as Tensor).dtype, 'float16');
    assert.deepEqual((loaded.h as Tensor).toArray(), [1, -2, 0.333251953125]);
    assert.equal((loaded.bf as Tensor).dtype, 'bfloat16');
    assert.deepEqual((loaded.bf as Tensor).toArray(), [3.140625]);
    assert.equal((loaded.mask as Tensor).dtype, 'bool');
    assert.deepEqual((loaded.mask as Tensor).toArray(), [1, 0]);
    const header2 = readSafetensorsHeader(path);
    assert.deepEqual(header2.metadata, { format: 'pt', epoch: '3' });
    assert.deepEqual(header2.entries.map((e) => e.name), ['ids', 'w', 'h', 'bf', 'mask'], 'entries in data order');
    const subset = loadSafetensors(path, { names: ['h'] });
    assert.deepEqual(Object.keys(subset), ['h']);
    assert.throws(() => loadSafetensors(path, { names: ['nope'] }), /no tensor named 'nope'/);
    // The same bytes parse from memory too.
    assert.deepEqual((deserializeSafetensors(readFileSync(path)).w as Tensor).toArray(), [1.5, -2, 0.25, Math.fround(1e-3)]);
  });
});

test("the writer's bytes equal a hand-assembled file (dtype-then-name order, padding)", () => {
  tidy(() => {
    const tensors: Record<string, Tensor> = {
      flag: F.tensor([1, 0, 1], { dtype: 'bool' }),
      w: F.tensor([[[0, 1, 2], [3, 4, 5]]]),
      h: F.tensor([1, -2], { dtype: 'float16' }),
      idx: F.tensor([3, -1], { dtype: 'int64' }),
      b: F.tensor([0.5]),
      B: F.tensor([0.75]),
    };
    // Descending alignment: I64, F32 (B before b before w, by bytes), F16, BOOL.
    const header =
      '{"__metadata__":{"format":"pt"},' +
      '"idx":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},' +
      '"B":{"dtype":"F32","shape":[1],"data_offsets":[16,20]},' +
      '"b":{"dtype":"F32","shape":[1],"data_offsets":[20,24]},' +
      '"w":{"dtype":"F32","shape":[1,2,3],"data_offsets":[24,48]},' +
      '"h":{"dtype":"F16","shape":[2],"data_offsets":[48,52]},' +
      '"flag":{"dtype":"BOOL","shape":[3],"data_offsets":[52,55]}}';
    const data = bytesOf(
      new BigInt64Array([3n, -1n]),
      new Float32Array([0.75, 0.5, 0, 1, 2, 3, 4, 5]),
      new Uint16Array([0x3c00, 0xc000]),
      [1, 0, 1],
    );
    const expected = assemble(header, data);
    assert.notEqual(Buffer.byteLength(header) % 8, 0, 'the header needs padding');
    assert.equal(expected.readBigUInt64LE(0) % 8n, 0n);
    const written = serializeSafetensors(tensors, { format: 'pt' });
    assert.deepEqual(written, expected);
    const path = tempPath();
    saveSafetensors(path, tensors, { format: 'pt' });
    assert.deepEqual(readFileSync(path), expected);
  });
  // The empty dict: "{}" padded to 8 bytes, with and without metadata.
  assert.deepEqual(serializeSafetensors({}), assemble('{}', new Uint8Array(0)));
  assert.equal(serializeSafetensors({}).length, 16);
  assert.deepEqual(serializeSafetensors({}, { framework: 'pt' }), assemble('{"__metadata__":{"framework":"pt"}}', new Uint8Array(0)));
});

function expectCorrupt(bytes: Uint8Array, pattern: RegExp, tensor?: string): void {
  const path = tempPath();
  writeFileSync(path, bytes);
  for (const attempt of [() => loadSafetensors(path), () => readSafetensorsHeader(path)]) {
    assert.throws(attempt, (err: unknown) => {
      assert.ok(err instanceof SafetensorsError, `SafetensorsError, got ${String(err)}`);
      assert.ok(err.message.startsWith(`${path}: `), `names the file: ${err.message}`);
      assert.match(err.message, pattern);
      if (tensor !== undefined) {
        assert.equal(err.tensorName, tensor);
        assert.ok(err.message.includes(`tensor '${tensor}'`), `names the tensor: ${err.message}`);
      }
      return true;
    });
  }
  assert.throws(() => deserializeSafetensors(bytes), pattern);
}

test('corrupt files are rejected with errors naming the file and the tensor', () => {
  const entry = (name: string, dtype: string, shape: number[], begin: number, end: number): string =>
    `"${name}":{"dtype":"${dtype}","shape":[${shape.join(',')}],"data_offsets":[${begin},${end}]}`;
  const eight = new Uint8Array(8);
  const sixteen = new Uint8Array(16);
  expectCorrupt(new Uint8Array(5), /truncated: 5 bytes, fewer than the 8-byte header length/);
  const tooLong = Buffer.alloc(16);
  tooLong.writeBigUInt64LE(1000n);
  expectCorrupt(tooLong, /truncated: header length 1000 but only 8 bytes follow/);
  const huge = Buffer.alloc(16);
  huge.writeBigUInt64LE(2n ** 40n);
  expectCorrupt(huge, /exceeds the 100000000-byte limit/);
  expectCorrupt(assemble('{"a": [1, 2', eight), /header is not valid JSON/);
  expectCorrupt(assemble('[1,2,3,4]', eight), /header does not start with '\{'/);
  expectCorrupt(assemble(`{${entry('a', 'F32', [2], 0, 8)},${entry('b', 'F32', [2], 4, 12)}}`, new Uint8Array(12)), /overlap the previous tensor/, 'b');
  expectCorrupt(assemble(`{${entry('a', 'F32', [2], 0, 8)},${entry('b', 'F32', [2], 12, 20)}}`, new Uint8Array(20)), /leave a gap after byte 8/, 'b');
  expectCorrupt(assemble(`{${entry('a', 'F32', [2], 0, 8)},${entry('big', 'F32', [4], 8, 24)}}`, sixteen), /truncated: the header describes 24 bytes of tensor data but only 16 follow/, 'big');
  expectCorrupt(assemble(`{${entry('a', 'F32', [3], 0, 8)}}`, eight), /shape \[3\] of F32 needs 12 bytes but data_offsets \[0, 8\] span 8/, 'a');
  expectCorrupt(assemble(`{${entry('a', 'I64', [2], 0, 8)}}`, eight), /shape \[2\] of I64 needs 16 bytes/, 'a');
  expectCorrupt(assemble(`{${entry('a', 'F32', [2], 8, 0)}}`, eight), /end before they begin/, 'a');
  expectCorrupt(assemble(`{${entry('q', 'U16', [4], 0, 8)}}`, eight), /dtype U16 is not supported by plsc/, 'q');
  expectCorrupt(assemble(`{${entry('q', 'F33', [2], 0, 8)}}`, eight), /unknown dtype "F33"/, 'q');
  expectCorrupt(assemble('{"s":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', eight), /shape must be an array of non-negative integers/, 's');
  expectCorrupt(assemble('{"s":{"dtype":"F32","shape":[2],"data_offsets":[0]}}', eight), /data_offsets must be \[begin, end\]/, 's');
  expectCorrupt(assemble('{"s":7}', eight), /header entry is not an object/, 's');
  expectCorrupt(assemble(`{${entry('a', 'F32', [2], 0, 8)}}`, sixteen), /8 bytes follow the last tensor's data/);
  expectCorrupt(assemble('{"__metadata__":{"k":1}}', new Uint8Array(0)), /__metadata__ 'k' is not a string/);
  const badUtf8 = assemble('{}', new Uint8Array(0));
  badUtf8[9] = 0xff;
  expectCorrupt(badUtf8, /header is not valid UTF-8/);
  // A '__proto__' tensor name is stored as a plain entry, not a prototype.
  tidy(() => {
    const loaded = deserializeSafetensors(assemble(`{${entry('__proto__', 'U8', [1], 0, 1)}}`, new Uint8Array([42])));
    assert.deepEqual(Object.keys(loaded), ['__proto__']);
    assert.deepEqual((Object.getOwnPropertyDescriptor(loaded, '__proto__')?.value as Tensor).toArray(), [42]);
  });
});

test('writer input errors name the tensor', () => {
  tidy(() => {
    const t = F.zeros([2]);
    t.dispose();
    assert.throws(() => serializeSafetensors({ gone: t }), /tensor 'gone': was already disposed/);
    assert.throws(() => serializeSafetensors({ __metadata__: F.zeros([1]) }), /'__metadata__' is reserved/);
    assert.throws(() => serializeSafetensors({}, { n: 3 as unknown as string }), /metadata 'n' must be a string/);
  });
});

test('a larger file loads with positional reads and the header alone can be read', () => {
  manualSeed(3);
  tidy(() => {
    const big = F.randn([1024, 2048]);
    const small = F.arange(0, 10, 1, { dtype: 'int32' });
    const path = tempPath();
    saveSafetensors(path, { 'fc.weight': big, 'fc.index': small });
    const header = readSafetensorsHeader(path);
    assert.deepEqual(header.entries.map((e) => [e.name, e.dtype, e.shape]), [
      ['fc.weight', 'F32', [1024, 2048]],
      ['fc.index', 'I32', [10]],
    ]);
    assert.equal(header.dataBytes, 1024 * 2048 * 4 + 40);
    assert.equal(header.dataStart % 8, 0);
    const loaded = loadSafetensors(path);
    assert.ok(F.allclose(loaded['fc.weight'] as Tensor, big, 0, 0));
    assert.deepEqual((loaded['fc.index'] as Tensor).toArray(), small.toArray());
    assert.equal(parseSafetensorsHeader(readFileSync(path)).dataBytes, header.dataBytes);
  });
});

// Cross-check with the Python library when it is installed (PLSC_PYTHON picks the interpreter).
const python = process.env.PLSC_PYTHON ?? 'python3';
const hasPythonSafetensors = spawnSync(python, ['-c', 'import safetensors.numpy, numpy'], { stdio: 'ignore' }).status === 0;

test('byte-identical with the Python safetensors library', { skip: hasPythonSafetensors ? false : 'python safetensors + numpy not installed' }, () => {
  const pyPath = tempPath();
  const script = `
import numpy as np, sys
from safetensors.numpy import save_file, load_file
save_file({
  "layer.weight": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
  "layer.bias": np.array([1.5, -2.25], dtype=np.float64),
  "steps": np.array([5, -6, 7], dtype=np.int64),
  "half": np.array([0.5, 2.0], dtype=np.float16),
  "codes": np.array([1, 250], dtype=np.uint8),
  "signed": np.array([-3, 4], dtype=np.int8),
  "shorts": np.array([-300, 300], dtype=np.int16),
  "ints": np.array([[1], [2]], dtype=np.int32),
  "mask": np.array([True, False, True]),
  "empty": np.zeros((0, 3), dtype=np.float32),
}, sys.argv[1], metadata={"format": "np"})
ours = load_file(sys.argv[2])
assert ours["layer.weight"].shape == (3, 4) and abs(float(ours["layer.weight"][2, 3]) - 11 / 7) < 1e-6, ours
assert ours["mask"].dtype == np.bool_ and ours["mask"].tolist() == [True, False, True]
assert ours["steps"].tolist() == [5, -6, 7]
`;
  const ourPath = tempPath();
  tidy(() => {
    const ours: Record<string, Tensor> = {
      'layer.weight': F.div(F.reshape(F.arange(0, 12, 1, { dtype: 'float32' }), [3, 4]), 7),
      'layer.bias': F.tensor([1.5, -2.25], { dtype: 'float64' }),
      steps: F.tensor([5, -6, 7], { dtype: 'int64' }),
      half: F.tensor([0.5, 2], { dtype: 'float16' }),
      codes: F.tensor([1, 250], { dtype: 'uint8' }),
      signed: F.tensor([-3, 4], { dtype: 'int8' }),
      shorts: F.tensor([-300, 300], { dtype: 'int16' }),
      ints: F.tensor([[1], [2]], { dtype: 'int32' }),
      mask: F.tensor([1, 0, 1], { dtype: 'bool' }),
      empty: F.zeros([0, 3]),
    };
    saveSafetensors(ourPath, ours, { format: 'np' });
    const result = spawnSync(python, ['-c', script, pyPath, ourPath], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(readFileSync(ourPath), readFileSync(pyPath));
  });
});
