// Class-centre export: shards concatenated in order, rows L2-normalized, written as safetensors
// tensor `centers` (float32 or float16) that the serving module's loader reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CentersWriter, exportCenters, loadClassCenters, loadSafetensors, manualSeed, ops as F, readSafetensorsHeader, readSafetensorsMetadata, tidy, type Tensor } from '../../src/index.js';
import { halfToFloat32 } from '../../src/centers/float16.js';

function withDir<T>(body: (dir: string) => Promise<T> | T): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-centers-'));
  return Promise.resolve()
    .then(() => body(dir))
    .finally(() => rmSync(dir, { recursive: true, force: true }));
}

/** Row-normalizes a row-major [rows, dim] array in float64. */
function normalizedRows(data: Float32Array, dim: number): Float64Array {
  const out = new Float64Array(data.length);
  for (let r = 0; r < data.length / dim; r++) {
    let sq = 0;
    for (let d = 0; d < dim; d++) sq += data[r * dim + d]! ** 2;
    const inv = sq > 0 ? 1 / Math.sqrt(sq) : 0;
    for (let d = 0; d < dim; d++) out[r * dim + d] = data[r * dim + d]! * inv;
  }
  return out;
}

test('three uneven shards (as a 3-rank head holds them) become one normalized [C, D] matrix in class order', async () => {
  manualSeed(31);
  await withDir(async (dir) => {
    const shards = [F.mul(F.randn([4, 8]), 3), F.randn([3, 8]), F.randn([3, 8])];
    // A class that never trained (zero row) must stay a zero row, not NaN.
    tidy(() => F.narrow(shards[2]!, 0, 1, 1).zero_());
    const raw = new Float32Array(10 * 8);
    let offset = 0;
    for (const shard of shards) {
      raw.set(shard.dataSync() as Float32Array, offset);
      offset += shard.numel;
    }
    const file = join(dir, 'centers.safetensors');
    const result = exportCenters(file, shards);
    assert.deepEqual(result, { numClasses: 10, embeddingSize: 8, dtype: 'float32' });

    const header = readSafetensorsHeader(file);
    assert.deepEqual(header.entries.map((e) => e.name), ['centers']);
    const meta = readSafetensorsMetadata(file);
    assert.equal(meta['num_classes'], '10');
    assert.equal(meta['normalized'], 'l2');

    const loaded = loadSafetensors(file);
    const centers = loaded['centers'] as Tensor;
    assert.deepEqual(centers.shape, [10, 8]);
    assert.equal(centers.dtype, 'float32');
    const values = centers.dataSync() as Float32Array;
    const expected = normalizedRows(raw, 8);
    for (let i = 0; i < values.length; i++) assert.ok(Math.abs(values[i]! - expected[i]!) < 1e-6, `element ${i}: ${values[i]} vs ${expected[i]}`);
    for (let r = 0; r < 10; r++) {
      const norm = Math.hypot(...values.subarray(r * 8, r * 8 + 8));
      assert.ok(r === 8 ? norm === 0 : Math.abs(norm - 1) < 1e-6, `row ${r} norm ${norm}`);
    }
    centers.dispose();

    // The serving loader reads the same file.
    const served = await loadClassCenters(file);
    assert.equal(served.count, 10);
    assert.equal(served.dim, 8);
    assert.equal(served.dtype, 'float32');
    for (const shard of shards) shard.dispose();
  });
});

test('fp16 export halves the data and keeps rows normalized to fp16 precision', async () => {
  manualSeed(32);
  await withDir(async (dir) => {
    const weight = F.randn([6, 16]);
    const file = join(dir, 'centers-fp16.safetensors');
    assert.equal(exportCenters(file, weight, { fp16: true, metadata: { source: 'test' } }).dtype, 'float16');
    assert.equal(readSafetensorsHeader(file).entries.find((e) => e.name === 'centers')?.dtype, 'F16');
    assert.equal(readSafetensorsMetadata(file)['source'], 'test');
    const served = await loadClassCenters(file);
    assert.equal(served.dtype, 'float16');
    const rows = halfToFloat32(served.rows as Uint16Array);
    const expected = normalizedRows(weight.dataSync() as Float32Array, 16);
    for (let i = 0; i < rows.length; i++) assert.ok(Math.abs(rows[i]! - expected[i]!) < 1e-3, `element ${i}`);
    weight.dispose();
  });
});

test('bad shards are rejected with the shard index', () => {
  const file = join(tmpdir(), 'never-written.safetensors');
  const a = F.randn([3, 4]);
  const b = F.randn([2, 5]);
  const v = F.randn([4]);
  const ints = F.zeros([2, 4], { dtype: 'int64' });
  try {
    assert.throws(() => exportCenters(file, []), /no weight shards/);
    assert.throws(() => exportCenters(file, [a, b]), /shard 1 has dimension 5 but shard 0 has 4/);
    assert.throws(() => exportCenters(file, [a, v]), /shard 1 has shape \[4\], expected \[classes, dim\]/);
    assert.throws(() => exportCenters(file, [ints]), /shard 0 has dtype int64/);
  } finally {
    for (const t of [a, b, v, ints]) t.dispose();
  }
});

test('CentersWriter: rows appended in any pieces give the bytes exportCenters writes; an unfinished file never appears', async () => {
  manualSeed(32);
  await withDir(async (dir) => {
    const weight = F.mul(F.randn([9, 6]), 2);
    const whole = join(dir, 'whole.safetensors');
    const pieces = join(dir, 'pieces.safetensors');
    exportCenters(whole, weight, { metadata: { source: 'test' } });
    const writer = new CentersWriter(pieces, 9, 6, { metadata: { source: 'test' } });
    for (const [first, count] of [[0, 2], [2, 5], [7, 2]] as const) tidy(() => writer.append(F.narrow(weight, 0, first, count)));
    writer.finish();
    assert.deepEqual(readFileSync(pieces), readFileSync(whole));
    assert.deepEqual(readSafetensorsMetadata(pieces), { num_classes: '9', embedding_size: '6', normalized: 'l2', source: 'test' });

    const partial = join(dir, 'partial.safetensors');
    const unfinished = new CentersWriter(partial, 9, 6);
    tidy(() => unfinished.append(F.narrow(weight, 0, 0, 4)));
    assert.throws(() => unfinished.finish(), /finished with 4 of 9 rows written/);
    assert.equal(existsSync(partial), false);
    assert.deepEqual(readdirSync(dir).sort(), ['pieces.safetensors', 'whole.safetensors']);
    weight.dispose();
  });
});
