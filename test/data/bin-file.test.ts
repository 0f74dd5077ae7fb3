import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  encodeVerificationBin,
  parseVerificationBin,
  readVerificationBin,
  VerificationBinError,
  writeVerificationBin,
} from '../../src/data/bin-file.js';
import { dumpPickle } from '../../src/data/pickle-writer.js';
import { PickleError } from '../../src/data/pickle.js';
import { bytes, u32, u64 } from './helpers.js';

const put = (i: number) => (i < 256 ? ['q'.charCodeAt(0), i] : ['r'.charCodeAt(0), ...u32(i)]);

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'plsc-eval-bin-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const ab = Buffer.from('ab');
const cd = Buffer.from('cd');

test('writer emits the bytes Python writes (protocol 2 as Python 2, 3 and 4 as Python 3)', () => {
  assert.deepEqual(
    encodeVerificationBin([ab, cd], [true], { protocol: 2 }),
    bytes(0x80, 2, ']', 'q', 0, '(', 'U', 2, 'ab', 'q', 1, 'U', 2, 'cd', 'q', 2, 'e', ']', 'q', 3, 0x88, 'a', 0x86, 'q', 4, '.'),
  );
  assert.deepEqual(
    encodeVerificationBin([ab, cd], [false], { protocol: 3 }),
    bytes(0x80, 3, ']', 'q', 0, '(', 'C', 2, 'ab', 'q', 1, 'C', 2, 'cd', 'q', 2, 'e', ']', 'q', 3, 0x89, 'a', 0x86, 'q', 4, '.'),
  );
  const body = bytes(']', 0x94, '(', 'C', 2, 'ab', 0x94, 'C', 2, 'cd', 0x94, 'e', ']', 0x94, 0x88, 'a', 0x86, 0x94, '.');
  assert.deepEqual(encodeVerificationBin([ab, cd], [true]), bytes(0x80, 4, 0x95, u64(body.length), body), 'protocol 4 is the default');
});

test('protocol 4 framing: payloads >= 64 KiB leave the frame, frames under 4 bytes get no FRAME header', () => {
  const A = Buffer.alloc(70000, 'A');
  const C = Buffer.alloc(70000, 'C');
  const b = Buffer.alloc(10, 'b');
  const d = Buffer.alloc(10, 'd');
  const tail = bytes(0x94, 'C', 10, d, 0x94, 'e', ']', 0x94, '(', 0x88, 0x89, 'e', 0x86, 0x94, '.');
  const expected = bytes(
    0x80, 4,
    ']', 0x94, '(', // 3-byte frame: written without a header
    'B', u32(70000), A, // outside any frame
    0x95, u64(14), 0x94, 'C', 10, b, 0x94,
    'B', u32(70000), C,
    0x95, u64(tail.length), tail,
  );
  assert.ok(encodeVerificationBin([A, b, C, d], [true, false], { protocol: 4 }).equals(expected));
});

test('protocol 4 framing: a frame is committed at the first save once it holds >= 64 KiB', () => {
  const big = Buffer.alloc(40000, 1);
  const big2 = Buffer.alloc(40000, 2);
  const first = bytes(']', 0x94, '(', 'B', u32(40000), big, 0x94, 'B', u32(40000), big2, 0x94, 'e');
  const second = bytes(']', 0x94, 0x88, 'a', 0x86, 0x94, '.');
  const expected = bytes(0x80, 4, 0x95, u64(first.length), first, 0x95, u64(second.length), second);
  assert.ok(encodeVerificationBin([big, big2], [true], { protocol: 4 }).equals(expected));
});

test('lists over 1000 items: batches of 1000, LONG_BINPUT past memo 255; Python 2 ends a 1-item batch with APPEND', () => {
  const images = Array.from({ length: 2002 }, (_, i) => Buffer.from([i & 0xff, i >> 8]));
  const issame = Array.from({ length: 1001 }, (_, i) => i % 3 === 0);
  const expect = (protocol: 2 | 3) => {
    const parts: (number | string | number[] | Uint8Array)[] = [0x80, protocol, ']', put(0)];
    let memo = 1;
    const item = (img: Buffer) => [protocol === 2 ? 'U' : 'C', 2, img, put(memo++)];
    for (const [start, end] of [[0, 1000], [1000, 2000], [2000, 2002]] as const) {
      parts.push('(');
      for (let i = start; i < end; i++) parts.push(...item(images[i]!));
      parts.push('e');
    }
    parts.push(']', put(memo++), '(');
    for (let i = 0; i < 1000; i++) parts.push(issame[i] ? 0x88 : 0x89);
    parts.push('e');
    // the 1001st label is a batch of one
    if (protocol === 2) parts.push(issame[1000] ? 0x88 : 0x89, 'a');
    else parts.push('(', issame[1000] ? 0x88 : 0x89, 'e');
    parts.push(0x86, put(memo++), '.');
    return bytes(...parts);
  };
  assert.ok(encodeVerificationBin(images, issame, { protocol: 2 }).equals(expect(2)));
  assert.ok(encodeVerificationBin(images, issame, { protocol: 3 }).equals(expect(3)));
});

test('the same Buffer object twice is written once and fetched from the memo (BINGET)', () => {
  assert.deepEqual(
    encodeVerificationBin([ab, ab, cd, ab], [true, false], { protocol: 3 }),
    bytes(0x80, 3, ']', 'q', 0, '(', 'C', 2, 'ab', 'q', 1, 'h', 1, 'C', 2, 'cd', 'q', 2, 'h', 1, 'e', ']', 'q', 3, '(', 0x88, 0x89, 'e', 0x86, 'q', 4, '.'),
  );
});

test('write -> read round trip for every protocol, through a file', async () => {
  await withTempDir(async (dir) => {
    const images = Array.from({ length: 40 }, (_, i) => Buffer.alloc(i === 7 ? 70000 : 100 + i * 37, i));
    const issame = Array.from({ length: 20 }, (_, i) => i % 2 === 0);
    for (const protocol of [2, 3, 4, 5] as const) {
      const path = join(dir, `p${protocol}.bin`);
      await writeVerificationBin(path, images, issame, { protocol });
      const back = await readVerificationBin(path);
      assert.equal(back.images.length, 40);
      back.images.forEach((img, i) => assert.ok(img.equals(images[i]!), `protocol ${protocol} image ${i}`));
      assert.deepEqual(back.issame, issame);
    }
  });
});

test('reader accepts numpy bool arrays and 0/1 ints as labels', () => {
  const numpyArray = bytes(
    0x80, 2, ']', '(', 'U', 1, 'a', 'U', 1, 'b', 'U', 1, 'c', 'U', 1, 'd', 'e',
    'c', 'numpy.core.multiarray\n_reconstruct\n', 'c', 'numpy\nndarray\n', 'K', 0, 0x85, 'U', 1, 'b', 0x87, 'R',
    '(', 'K', 1, 'K', 2, 0x85, 'c', 'numpy\ndtype\n', 'U', 2, 'b1', 'K', 0, 'K', 1, 0x87, 'R',
    '(', 'K', 3, 'U', 1, '|', 'N', 'N', 'N', 'J', u32(0xffffffff), 'J', u32(0xffffffff), 'K', 0, 't', 'b',
    0x89, 'U', 2, [0, 1], 't', 'b',
    0x86, '.',
  );
  assert.deepEqual(parseVerificationBin(numpyArray).issame, [false, true]);
  assert.deepEqual(parseVerificationBin(dumpPickle(Object.freeze([[ab, cd, ab, cd], [1, 0]]), 3)).issame, [true, false]);
});

test('bad files get errors that name the file (and the byte offset for pickle errors)', async () => {
  await withTempDir(async (dir) => {
    const write = async (name: string, data: Buffer) => {
      const path = join(dir, name);
      await writeFile(path, data);
      return path;
    };
    const mismatch = await write('mismatch.bin', dumpPickle(Object.freeze([[ab, cd, ab], [true]]), 3));
    await assert.rejects(readVerificationBin(mismatch), (e: unknown) => {
      assert.ok(e instanceof VerificationBinError);
      assert.equal(e.message, `${mismatch}: 3 images but 1 issame labels (a .bin needs exactly 2 images per label)`);
      return true;
    });
    const strImage = await write('str.bin', dumpPickle(Object.freeze([[ab, 'not bytes'], [true]]), 3));
    await assert.rejects(readVerificationBin(strImage), new RegExp(`^VerificationBinError: ${strImage.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: bins\\[1\\] is string`));
    const badLabel = await write('label.bin', dumpPickle(Object.freeze([[ab, cd], [2]]), 3));
    await assert.rejects(readVerificationBin(badLabel), /label\.bin: issame_list\[0\] is 2, expected a boolean/);
    const notTuple = await write('list.bin', dumpPickle([ab, cd, ab], 3));
    await assert.rejects(readVerificationBin(notTuple), /list\.bin: expected the pickled tuple \(bins, issame_list\)/);
    const empty = await write('empty.bin', dumpPickle(Object.freeze([[], []]), 3));
    await assert.rejects(readVerificationBin(empty), /empty\.bin: issame_list is empty/);
    const emptyImage = await write('emptyimg.bin', dumpPickle(Object.freeze([[ab, Buffer.alloc(0)], [true]]), 3));
    await assert.rejects(readVerificationBin(emptyImage), /emptyimg\.bin: bins\[1\] is empty/);
    const truncatedBytes = encodeVerificationBin([ab, cd], [true], { protocol: 3 }).subarray(0, 12);
    const truncated = await write('truncated.bin', truncatedBytes);
    await assert.rejects(readVerificationBin(truncated), (e: unknown) => {
      assert.ok(e instanceof VerificationBinError);
      assert.match(e.message, /truncated\.bin: .*at byte \d+/);
      assert.ok((e as Error & { cause?: unknown }).cause instanceof PickleError);
      return true;
    });
    const evil = await write('evil.bin', bytes(0x80, 2, 'c', 'os\nsystem\n', 'X', u32(2), 'id', 0x85, 'R', '.'));
    await assert.rejects(readVerificationBin(evil), /evil\.bin: refusing global os\.system at byte 2/);
    await assert.rejects(readVerificationBin(join(dir, 'missing.bin')), /missing\.bin: cannot read/);
  });
});

test('writer rejects inconsistent input', () => {
  assert.throws(() => encodeVerificationBin([ab], [true]), /1 images for 1 labels/);
  assert.throws(() => encodeVerificationBin([], []), /at least one pair/);
  assert.throws(() => encodeVerificationBin([ab, Buffer.alloc(0)], [true]), /images\[1\] is empty/);
  assert.throws(() => encodeVerificationBin([ab, cd], [true], { protocol: 1 as 2 }), /unsupported pickle protocol 1/);
});
