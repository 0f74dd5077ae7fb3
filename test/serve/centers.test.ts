import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { classCentersFromArray, loadClassCenters, topKCosineScan, type ClassCenters, type ClassMatch } from '../../src/centers/centers.js';
import { exportCenters } from '../../src/models/export-centers.js';
import { fromTypedArray } from '../../src/torch/ops.js';
import { CenterSearchEngine } from '../../src/centers/center-search.js';
import { halfToFloat32 } from '../../src/centers/float16.js';
import { randomArray, rng } from './fixtures/reference-ops.js';

/** Score every class in float64 and sort: the obvious reference. */
function bruteForce(centers: ClassCenters, query: Float32Array, k: number): ClassMatch[] {
  const rows = centers.rows instanceof Uint16Array ? halfToFloat32(centers.rows) : centers.rows;
  const qNorm = Math.sqrt(query.reduce((s, v) => s + v * v, 0));
  const scores: ClassMatch[] = [];
  for (let c = 0; c < centers.count; c++) {
    let dot = 0;
    let norm = 0;
    for (let d = 0; d < centers.dim; d++) {
      dot += query[d]! * rows[c * centers.dim + d]!;
      norm += rows[c * centers.dim + d]! ** 2;
    }
    scores.push({ index: c, score: norm > 0 ? dot / (Math.sqrt(norm) * qNorm) : 0 });
  }
  return scores.sort((a, b) => b.score - a.score || a.index - b.index).slice(0, k);
}

function assertSameMatches(actual: ClassMatch[], expected: ClassMatch[], tolerance: number, what: string): void {
  assert.deepEqual(actual.map((m) => m.index), expected.map((m) => m.index), what);
  actual.forEach((m, i) => assert.ok(Math.abs(m.score - expected[i]!.score) < tolerance, `${what}: score ${i} ${m.score} vs ${expected[i]!.score}`));
}

/** Writes a [count, dim] matrix through the one centres writer (rows L2-normalized on the way). */
function writeClassCenters(path: string, rows: Float32Array, count: number, dim: number, options: { dtype?: 'float32' | 'float16'; metadata?: Record<string, string> } = {}): void {
  const matrix = fromTypedArray(rows, [count, dim]);
  try {
    exportCenters(path, matrix, { fp16: options.dtype === 'float16', ...(options.metadata ? { metadata: options.metadata } : {}) });
  } finally {
    matrix.dispose();
  }
}

async function withTempDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'plsc-centers-'));
  try {
    return await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('safetensors centres round-trip in float32 and float16, normalized on write', () =>
  withTempDir(async (dir) => {
    const [count, dim] = [37, 12];
    const rows = randomArray(count * dim, rng(2), 3);
    for (const dtype of ['float32', 'float16'] as const) {
      const path = join(dir, `${dtype}.safetensors`);
      writeClassCenters(path, rows, count, dim, { dtype, metadata: { source: 'test' } });
      const bytes = await readFile(path);
      const headerLength = Number(bytes.readBigUInt64LE(0));
      assert.equal((8 + headerLength) % 8, 0, 'data starts 8-byte aligned');
      const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString()) as Record<string, { dtype: string; shape: number[] }>;
      assert.deepEqual(header.centers!.shape, [count, dim]);
      assert.equal(header.centers!.dtype, dtype === 'float32' ? 'F32' : 'F16');
      const loaded = await loadClassCenters(path);
      assert.equal(loaded.count, count);
      assert.equal(loaded.dim, dim);
      assert.equal(loaded.dtype, dtype);
      const values = loaded.rows instanceof Uint16Array ? halfToFloat32(loaded.rows) : loaded.rows;
      for (let c = 0; c < count; c++) {
        const norm = Math.hypot(...rows.subarray(c * dim, (c + 1) * dim));
        for (let d = 0; d < dim; d++) assert.ok(Math.abs(values[c * dim + d]! - rows[c * dim + d]! / norm) < (dtype === 'float16' ? 1e-3 : 1e-6));
        assert.ok(Math.abs(loaded.inverseNorms[c]! - 1) < 2e-3);
      }
    }
  }));

test('loading bad centre files fails with a message naming the file and the problem', () =>
  withTempDir(async (dir) => {
    const good = join(dir, 'good.safetensors');
    writeClassCenters(good, randomArray(8, rng(1)), 2, 4);
    const bytes = await readFile(good);
    const cases: [string, Buffer | string, RegExp][] = [
      ['short', Buffer.alloc(3), /truncated: 3 bytes, fewer than the 8-byte header length/],
      ['huge-header', Buffer.concat([Buffer.from([255, 255, 255, 255, 0, 0, 0, 0]), Buffer.alloc(8)]), /header length \d+ exceeds the \d+-byte limit/],
      ['truncated', bytes.subarray(0, bytes.length - 4), /truncated/],
      ['not-json', Buffer.concat([Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{{{{')]), /not valid JSON/],
    ];
    const header = (entry: unknown, dataBytes: number) => {
      const text = JSON.stringify(entry);
      const prefix = Buffer.alloc(8);
      prefix.writeBigUInt64LE(BigInt(text.length));
      return Buffer.concat([prefix, Buffer.from(text), Buffer.alloc(dataBytes)]);
    };
    cases.push(['other-name', header({ weight: { dtype: 'F32', shape: [2, 4], data_offsets: [0, 32] } }, 32), /no tensor 'centers' \(tensors: weight\)/]);
    cases.push(['bad-dtype', header({ centers: { dtype: 'I64', shape: [2, 4], data_offsets: [0, 64] } }, 64), /dtype I64 is not supported/]);
    cases.push(['bad-shape', header({ centers: { dtype: 'F32', shape: [8], data_offsets: [0, 32] } }, 32), /shape \[8\] must be \[classes, dim\]/]);
    cases.push(['bad-span', header({ centers: { dtype: 'F32', shape: [2, 4], data_offsets: [0, 16] } }, 16), /shape \[2, 4\] of F32 needs 32 bytes but data_offsets \[0, 16\] span 16/]);
    cases.push(['trailing-bytes', header({ centers: { dtype: 'F32', shape: [2, 4], data_offsets: [0, 32] } }, 40), /8 bytes follow the last tensor's data/]);
    const withNaN = Buffer.from(bytes);
    withNaN.writeFloatLE(Number.NaN, withNaN.length - 4 * 3); // row 1 of the [2, 4] centres
    cases.push(['nan-row', withNaN, /tensor 'centers': row 1 \(class 1\) holds NaN or infinity/]);
    for (const [name, content, pattern] of cases) {
      const path = join(dir, `${name}.safetensors`);
      await writeFile(path, content);
      await assert.rejects(loadClassCenters(path), (error: Error) => error.message.includes(path) && pattern.test(error.message), name);
    }
    await assert.rejects(loadClassCenters(join(dir, 'missing.safetensors')), /cannot open \(ENOENT\)/);
  }));

test('chunked top-k (TypeScript scan and onnxruntime engine) equals brute force with chunks smaller than C', async () => {
  const random = rng(9);
  const [count, dim] = [5003, 24];
  // Rows deliberately not normalized: scores must still be cosines.
  const rows = randomArray(count * dim, random, 2);
  const queries = Array.from({ length: 5 }, () => randomArray(dim, random, 4));
  const centers = classCentersFromArray(rows, count, dim);
  const engine = await CenterSearchEngine.create(centers, { chunkRows: 777 });
  try {
    for (const k of [1, 7, 50]) {
      const scan = topKCosineScan(centers, queries, k, { chunkRows: 500 });
      const engineResult = await engine.search(queries, k);
      queries.forEach((query, q) => {
        const expected = bruteForce(centers, query, k);
        assertSameMatches(scan[q]!, expected, 1e-5, `scan k=${k} q=${q}`);
        assertSameMatches(engineResult[q]!, expected, 1e-5, `engine k=${k} q=${q}`);
      });
    }
    const all = topKCosineScan(centers, [queries[0]!], count, { chunkRows: 1000 })[0]!;
    assert.equal(all.length, count);
    assert.throws(() => topKCosineScan(centers, queries, 0), /k must be an integer in \[1, 5003\], got 0/);
    await assert.rejects(engine.search(queries, count + 1), /k must be an integer/);
  } finally {
    await engine.release();
  }
});

test('float16 centres are searched chunk by chunk with the same results as brute force', () =>
  withTempDir(async (dir) => {
    const random = rng(4);
    const [count, dim] = [3001, 16];
    const path = join(dir, 'c.safetensors');
    writeClassCenters(path, randomArray(count * dim, random), count, dim, { dtype: 'float16' });
    const centers = await loadClassCenters(path);
    assert.ok(centers.rows instanceof Uint16Array);
    const queries = Array.from({ length: 3 }, () => randomArray(dim, random));
    const engine = await CenterSearchEngine.create(centers, { chunkRows: 1024 });
    try {
      const fromEngine = await engine.search(queries, 10);
      const fromScan = topKCosineScan(centers, queries, 10, { chunkRows: 333 });
      queries.forEach((query, q) => {
        const expected = bruteForce(centers, query, 10);
        assertSameMatches(fromEngine[q]!, expected, 1e-5, `engine q=${q}`);
        assertSameMatches(fromScan[q]!, expected, 1e-5, `scan q=${q}`);
      });
    } finally {
      await engine.release();
    }
  }));

test('one million classes: chunked search finds the planted nearest classes', async () => {
  const [count, dim] = [1_000_000, 16];
  const random = rng(21);
  const rows = randomArray(count * dim, random);
  const query = randomArray(dim, random);
  // Plant scaled, increasingly perturbed copies of the query at known rows (best first).
  const planted = [999_999, 7, 123_456];
  planted.forEach((row, i) => {
    for (let d = 0; d < dim; d++) rows[row * dim + d] = (query[d]! + (d === 0 ? 0.2 * (i + 1) : 0)) * (3 - i);
  });
  const centers = classCentersFromArray(rows, count, dim);
  const engine = await CenterSearchEngine.create(centers, { chunkRows: 65536 });
  try {
    const [matches] = await engine.search([query], 5);
    const expected = bruteForce(centers, query, 5);
    assertSameMatches(matches!, expected, 1e-5, '1M classes');
    assert.deepEqual(matches!.slice(0, 3).map((m) => m.index), planted);
  } finally {
    await engine.release();
  }
});
