import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeBmp } from '../../src/data/bmp.js';
import { RecordIOSource, RecordIOWriter, packRecord, unpackRecord } from '../../src/data/recordio.js';
import { BadSampleError, DataFormatError } from '../../src/data/source.js';
import { gradientPixels, makeTempDir, solidImage } from './helpers.js';

// --- A RecordIO encoder written independently of src/, straight from the format description. ---
const MAGIC = 0xced7230a;

function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value >>> 0, 0);
  return b;
}

/** IRHeader {uint32 flag, float32 label, uint64 id, uint64 id2} followed by extra float32 labels. */
function irHeader(flag: number, label: number, id: number, extraLabels: number[] = []): Buffer {
  const b = Buffer.alloc(24 + 4 * extraLabels.length);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  view.setUint32(0, flag, true);
  view.setFloat32(4, label, true);
  view.setBigUint64(8, BigInt(id), true);
  view.setBigUint64(16, 0n, true);
  extraLabels.forEach((v, i) => view.setFloat32(24 + 4 * i, v, true));
  return b;
}

/** One part: magic, lrecord = cflag << 29 | length, data, zero padding to a multiple of 4. */
function part(cflag: number, data: Buffer): Buffer {
  const pad = (4 - (data.length % 4)) % 4;
  return Buffer.concat([u32(MAGIC), u32(((cflag << 29) | data.length) >>> 0), data, Buffer.alloc(pad)]);
}

interface HandBuilt {
  rec: Buffer;
  offsets: Map<number, number>;
  images: Map<number, Buffer>;
}

/**
 * insightface layout: key 0 header (flag 2, [first=4, end=6]), images 1..3, identity records 4 and 5.
 * Image 2 is a BMP whose bytes contain the magic twice at 4-aligned payload positions, so it is
 * stored as three parts (cflag 1, 2, 3) with the magic words removed.
 */
async function buildInsightfaceRec(): Promise<HandBuilt> {
  const imgA = await solidImage([250, 10, 10], 12, 'jpeg');
  const bmp = encodeBmp(gradientPixels(10, 4), 10, 4); // 54-byte header + 4 rows * 32 bytes
  const magicBytes = u32(MAGIC);
  // Payload offset of bmp byte k is 24 + k; 24 + 58 = 82 is not aligned, 24 + 56 = 80 is.
  magicBytes.copy(bmp, 56);
  magicBytes.copy(bmp, 100); // payload position 124, aligned
  const imgC = await solidImage([10, 10, 250], 12, 'png');
  const records: Array<[number, Buffer]> = [];
  records.push([0, part(0, irHeader(2, 0, 0, [4, 6]))]);
  records.push([1, part(0, Buffer.concat([irHeader(0, 0, 1), imgA]))]);
  const payloadB = Buffer.concat([irHeader(0, 0, 2), bmp]);
  assert.equal(payloadB.readUInt32LE(80), MAGIC);
  assert.equal(payloadB.readUInt32LE(124), MAGIC);
  records.push([2, Buffer.concat([part(1, payloadB.subarray(0, 80)), part(2, payloadB.subarray(84, 124)), part(3, payloadB.subarray(128))])]);
  records.push([3, part(0, Buffer.concat([irHeader(2, 0, 3, [1, 7]), imgC]))]);
  records.push([4, part(0, irHeader(2, 0, 4, [1, 3]))]);
  records.push([5, part(0, irHeader(2, 0, 5, [3, 4]))]);
  const offsets = new Map<number, number>();
  let pos = 0;
  for (const [key, bytes] of records) {
    offsets.set(key, pos);
    pos += bytes.length;
  }
  return {
    rec: Buffer.concat(records.map(([, b]) => b)),
    offsets,
    images: new Map([
      [1, imgA],
      [2, bmp],
      [3, imgC],
    ]),
  };
}

async function writeHandBuilt(dir: string, built: HandBuilt, keyOrder = [3, 0, 5, 1, 4, 2]): Promise<string> {
  const recPath = join(dir, 'train.rec');
  await writeFile(recPath, built.rec);
  await writeFile(join(dir, 'train.idx'), keyOrder.map((k) => `${k}\t${built.offsets.get(k)}\n`).join(''));
  return recPath;
}

test('RecordIO: insightface header, identity records and a three-part record, read from hand-written bytes', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const built = await buildInsightfaceRec();
    const source = await RecordIOSource.open(await writeHandBuilt(dir, built));
    assert.deepEqual(source.headerRange, [4, 6]);
    assert.equal(source.labelOrigin, 'identity-records');
    assert.equal(source.length, 3);
    assert.equal(source.numClasses, 2);
    assert.deepEqual([0, 1, 2].map((i) => source.key(i)), [1, 2, 3]);
    assert.deepEqual([0, 1, 2].map((i) => source.label(i)), [0, 0, 1]);
    for (let i = 0; i < 3; i++) {
      const payload = await source.read(i);
      assert.equal(payload.kind, 'encoded');
      if (payload.kind === 'encoded') assert.deepEqual(Buffer.from(payload.bytes), built.images.get(i + 1));
    }
    const multi = await source.readRecord(2);
    assert.equal(multi.header.flag, 2);
    assert.deepEqual([...multi.header.labels], [1, 7]);
    assert.match(source.describe(1), /^record 2 of .*train\.rec$/);
    await source.close();
  } finally {
    await cleanup();
  }
});

test('RecordIO: header "none" treats every key as an image and scans labels from record headers', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const source = await RecordIOSource.open(await writeHandBuilt(dir, await buildInsightfaceRec()), { header: 'none' });
    assert.equal(source.length, 6);
    assert.equal(source.labelOrigin, 'record-headers');
    assert.deepEqual(Array.from({ length: 6 }, (_, i) => source.label(i)), [4, 0, 0, 1, 1, 3]);
    assert.equal(source.numClasses, 5);
    await source.close();
  } finally {
    await cleanup();
  }
});

test('RecordIO: without a header record all idx keys are images; labels come from each IRHeader', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const imgs = [await solidImage([1, 1, 1], 8, 'png'), await solidImage([2, 2, 2], 8, 'png'), await solidImage([3, 3, 3], 8, 'png')];
    const parts = [
      part(0, Buffer.concat([irHeader(0, 2, 0), imgs[0]!])),
      part(0, Buffer.concat([irHeader(0, 0, 1), imgs[1]!])),
      part(0, Buffer.concat([irHeader(0, 1, 2), imgs[2]!])),
    ];
    await writeFile(join(dir, 'plain.rec'), Buffer.concat(parts));
    await writeFile(join(dir, 'plain.idx'), `0\t0\n1\t${parts[0]!.length}\n2\t${parts[0]!.length + parts[1]!.length}\n`);
    const source = await RecordIOSource.open(join(dir, 'plain.rec'));
    assert.equal(source.headerRange, undefined);
    assert.deepEqual([0, 1, 2].map((i) => source.label(i)), [2, 0, 1]);
    assert.equal(source.numClasses, 3);
    const p = await source.read(2);
    assert.deepEqual(p.kind === 'encoded' ? Buffer.from(p.bytes) : undefined, imgs[2]);
    await source.close();
    await assert.rejects(RecordIOSource.open(join(dir, 'plain.rec'), { numClasses: 2 }), /record 0 of .*plain\.rec: label 2 out of range \[0, 2\)/);
  } finally {
    await cleanup();
  }
});

test('RecordIO: bad magic names the record key and byte offset (at open when scanning, at read otherwise)', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const built = await buildInsightfaceRec();
    const offset = built.offsets.get(2)!;
    built.rec.writeUInt32LE(0xdeadbeef, offset);
    const recPath = await writeHandBuilt(dir, built);
    // Header + identity records give the labels, so open succeeds and reading record 2 fails.
    const source = await RecordIOSource.open(recPath);
    await assert.rejects(source.read(1), (error: unknown) => {
      assert.ok(error instanceof BadSampleError);
      assert.equal(error.index, 1);
      assert.match(error.message, new RegExp(`record 2: at byte offset ${offset}: bad magic 0xdeadbeef \\(expected 0xced7230a\\)`));
      return true;
    });
    await source.close();
    // Scanning every IRHeader at open hits the corrupt record.
    await assert.rejects(RecordIOSource.open(recPath, { header: 'none' }), (error: unknown) => {
      assert.ok(error instanceof DataFormatError);
      assert.match(error.message, new RegExp(`train\\.rec: record 2: at byte offset ${offset}: bad magic`));
      return true;
    });
  } finally {
    await cleanup();
  }
});

test('RecordIO: truncated files, broken part sequences, bad idx lines and missing keys are reported', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const built = await buildInsightfaceRec();
    // Truncate inside the last image record's data (record 3).
    const cut = built.offsets.get(3)! + 20;
    const truncated = { ...built, rec: built.rec.subarray(0, cut) };
    const recPath = join(dir, 'train.rec');
    await writeFile(recPath, truncated.rec);
    await writeFile(join(dir, 'train.idx'), [0, 1, 2, 3].map((k) => `${k}\t${built.offsets.get(k)}\n`).join(''));
    await assert.rejects(RecordIOSource.open(recPath, { header: 'none' }), /record 3: at byte offset \d+: record length \d+ runs past the end of the file/);

    // A continuation part where a record should start.
    const broken = Buffer.from(built.rec);
    broken.writeUInt32LE(((2 << 29) | broken.readUInt32LE(built.offsets.get(1)! + 4)) >>> 0, built.offsets.get(1)! + 4);
    await writeHandBuilt(dir, { ...built, rec: broken });
    const source = await RecordIOSource.open(recPath);
    await assert.rejects(source.read(0), /record 1: at byte offset 0*\d+: unexpected part flag 2 in part 0/);
    await source.close();

    await writeFile(join(dir, 'train.idx'), '0\t0\nthree\t12\n');
    await assert.rejects(RecordIOSource.open(recPath), (error: unknown) => error instanceof DataFormatError && error.line === 2 && /train\.idx line 2/.test(error.message));

    await writeFile(join(dir, 'train.idx'), '1\t0\n0\t8\n1\t16\n');
    await assert.rejects(RecordIOSource.open(recPath), /train\.idx: duplicate key 1/);

    await writeHandBuilt(dir, built, [0, 1, 3, 4, 5]); // header promises images 1..3, key 2 absent
    await assert.rejects(RecordIOSource.open(recPath), /key 2 is missing from the index/);

    await writeFile(join(dir, 'train.idx'), `0\t${built.rec.length + 8}\n`);
    await assert.rejects(RecordIOSource.open(recPath), /past the end/);
  } finally {
    await cleanup();
  }
});

test('RecordIO: inconsistent identity records fall back to scanning image headers', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const built = await buildInsightfaceRec();
    // Identity 1 claims [2, 4), overlapping identity 0's [1, 3).
    const idOffset = built.offsets.get(5)!;
    built.rec.writeFloatLE(2, idOffset + 8 + 24);
    const source = await RecordIOSource.open(await writeHandBuilt(dir, built));
    assert.equal(source.labelOrigin, 'record-headers');
    assert.deepEqual([0, 1, 2].map((i) => source.label(i)), [0, 0, 1]);
    assert.equal(source.numClasses, 2);
    await source.close();
  } finally {
    await cleanup();
  }
});

test('RecordIOWriter reproduces the hand-written bytes exactly, including the multi-part split', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const built = await buildInsightfaceRec();
    const writer = await RecordIOWriter.create(join(dir, 'w.rec'));
    await writer.writeImage(0, [4, 6], new Uint8Array(0), { id: 0 });
    await writer.writeImage(1, 0, built.images.get(1)!);
    await writer.writeImage(2, 0, built.images.get(2)!);
    await writer.writeImage(3, [1, 7], built.images.get(3)!);
    await writer.writeImage(4, [1, 3], new Uint8Array(0));
    await writer.writeImage(5, [3, 4], new Uint8Array(0));
    await writer.close();
    assert.deepEqual(await readFile(join(dir, 'w.rec')), built.rec);
    const idx = await readFile(join(dir, 'w.idx'), 'utf8');
    assert.equal(idx, [0, 1, 2, 3, 4, 5].map((k) => `${k}\t${built.offsets.get(k)}\n`).join(''));
    await assert.rejects(writer.write(6, new Uint8Array(4)), /closed/);
  } finally {
    await cleanup();
  }
});

test('RecordIOWriter: payloads that are only magic words, or start/end with one, round-trip', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const magic = u32(MAGIC);
    const payloads = [
      Buffer.concat([magic]),
      Buffer.concat([magic, magic, magic]),
      Buffer.concat([magic, Buffer.from([1, 2, 3])]),
      Buffer.concat([Buffer.from([9, 9, 9, 9]), magic]),
      Buffer.concat([Buffer.from([1]), magic, Buffer.from([2, 3, 4])]), // unaligned: not split
      Buffer.alloc(0),
    ];
    const writer = await RecordIOWriter.create(join(dir, 'm.rec'));
    for (let i = 0; i < payloads.length; i++) await writer.write(i, payloads[i]!);
    await writer.close();
    const rec = await readFile(join(dir, 'm.rec'));
    assert.equal(rec.length % 4, 0);
    const { RecordIOFile, readRecordIndex } = await import('../../src/data/recordio.js');
    const file = await RecordIOFile.open(join(dir, 'm.rec'));
    const index = await readRecordIndex(join(dir, 'm.idx'));
    for (let i = 0; i < payloads.length; i++) {
      assert.deepEqual(await file.readAt(index.offsets[i]!, i), payloads[i], `payload ${i}`);
    }
    await file.close();
    // The aligned magic inside payload 2 really was split out of the stream.
    assert.equal(rec.readUInt32LE(index.offsets[2]! + 4) >>> 29, 1);
  } finally {
    await cleanup();
  }
});

test('packRecord/unpackRecord round trip and reject short payloads', () => {
  const image = Buffer.from([1, 2, 3, 4, 5]);
  const single = unpackRecord(packRecord({ label: 42, id: 7 }, image));
  assert.equal(single.header.flag, 0);
  assert.equal(single.header.label, 42);
  assert.equal(single.header.id, 7);
  assert.deepEqual(single.image, image);
  const multi = unpackRecord(packRecord({ label: [3, 1.5, 2] }, image));
  assert.equal(multi.header.flag, 3);
  assert.deepEqual([...multi.header.labels], [3, 1.5, 2]);
  assert.equal(multi.header.label, 3);
  assert.deepEqual(multi.image, image);
  assert.throws(() => unpackRecord(Buffer.alloc(10)), /shorter than the 24-byte IRHeader/);
  const lying = packRecord({ label: 1 });
  lying.writeUInt32LE(50, 0);
  assert.throws(() => unpackRecord(lying), /announces 50 labels/);
});
