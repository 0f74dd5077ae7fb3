// Class centres from 16-bit class storage: exported from bfloat16 / float16 shards (a checkpoint
// resharded to that storage, or the head's tensors) they equal the float32 export within the
// storage's rounding, are exactly the normalized widened 16-bit rows, and classify the same.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  exportCenters,
  loadClassCenters,
  loadSafetensors,
  manualSeed,
  readMeta,
  reshardCheckpoint,
  saveCheckpoint,
  topKCosineScan,
  writeCheckpointCenters,
  tidy,
  ops as F,
  type Tensor,
} from '../../src/index.js';

const CLASSES = 300;
const EMB = 32;
const work = mkdtempSync(join(tmpdir(), 'plsc-centers-storage-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** A float32 one-shard checkpoint whose class 7 is a zero row. */
function fp32Checkpoint(): { dir: string; weight: Float32Array } {
  manualSeed(11);
  return tidy(() => {
    const weight = F.mul(F.randn([CLASSES, EMB]), 0.03);
    F.narrow(weight, 0, 7, 1).zero_();
    const dir = saveCheckpoint(join(work, 'fp32'), {
      rank: 0,
      shardCount: 1,
      meta: {
        numClasses: CLASSES,
        embeddingSize: EMB,
        step: 3,
        epoch: 0,
        dataOrder: { epoch: 0, position: 0 },
        samplerStep: 3,
        seed: 11,
        backbone: 'none',
        lossType: 'dist_arcface',
        shardTensors: ['weight', 'weight_momentum'],
        classStorage: 'float32',
        config: {},
      },
      backbone: { w: F.zeros([1]) },
      shard: { index: 0, tensors: { weight, weight_momentum: F.zerosLike(weight) } },
      barrier: () => {},
      keepLast: 1,
    });
    return { dir, weight: weight.dataSync() as Float32Array };
  });
}

function centersOf(path: string): Float32Array {
  return tidy(() => loadSafetensors(path).centers!.to('float32').dataSync() as Float32Array);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

/** normalize(rows widened from `storage`) computed here, the exact expectation for 16-bit shards. */
function normalizedWidened(weight: Float32Array, storage: 'bfloat16' | 'float16'): Float32Array {
  return tidy(() => F.normalize(F.tensor(weight, { shape: [CLASSES, EMB] }).to(storage).to('float32'), 2, 1).dataSync() as Float32Array);
}

// A unit-length value stored in 16 bits is off by at most half a unit in the last place: 2^-9
// (bfloat16, 8 significant bits) or 2^-12 (float16, 11) relative, plus the renormalization.
const TOLERANCE = { bfloat16: 2 ** -7, float16: 2 ** -10 } as const;

const source = fp32Checkpoint();
const reference = join(work, 'fp32-centers.safetensors');
writeCheckpointCenters(source.dir, readMeta(source.dir), reference);
const fp32Centers = centersOf(reference);

for (const storage of ['bfloat16', 'float16'] as const) {
  test(`plsc export --centers of ${storage} shards: the normalized widened rows, within ${storage} rounding of float32's, same top-1`, async () => {
    const dir = join(work, `${storage}-checkpoint`);
    reshardCheckpoint(source.dir, 3, dir, { storage });
    const path = join(work, `${storage}-centers.safetensors`);
    const result = writeCheckpointCenters(dir, readMeta(dir), path, { chunkRows: 17 });
    assert.deepEqual(result.shardRows, [100, 100, 100]);
    const centers = centersOf(path);
    assert.deepEqual(centers, normalizedWidened(source.weight, storage));
    assert.ok(maxAbsDiff(centers, fp32Centers) <= TOLERANCE[storage], `max |diff| ${maxAbsDiff(centers, fp32Centers)}`);
    assert.deepEqual(Array.from(centers.subarray(7 * EMB, 8 * EMB)), new Array<number>(EMB).fill(0));

    // Served: queries near every 10th class find the same class among either file's centres.
    const [fromFp32, fromStorage] = await Promise.all([loadClassCenters(reference), loadClassCenters(path)]);
    const queries = Array.from({ length: 30 }, (_, q) => {
      const row = fp32Centers.slice(q * 10 * EMB + EMB * 3, q * 10 * EMB + EMB * 4);
      return row.map((v, d) => v + 0.01 * Math.sin(q + d));
    });
    const top1 = (matches: { index: number }[][]): number[] => matches.map((m) => m[0]!.index);
    assert.deepEqual(top1(topKCosineScan(fromStorage, queries, 1)), top1(topKCosineScan(fromFp32, queries, 1)));
  });

  test(`exportCenters of ${storage} head tensors equals the float32 export within rounding, tile by tile`, () => {
    tidy(() => {
      const halves: Tensor[] = [F.tensor(source.weight.slice(0, 140 * EMB), { shape: [140, EMB] }), F.tensor(source.weight.slice(140 * EMB), { shape: [160, EMB] })];
      const fp32Path = join(work, `export-fp32-${storage}.safetensors`);
      const path = join(work, `export-${storage}.safetensors`);
      exportCenters(fp32Path, halves);
      const result = exportCenters(path, halves.map((h) => h.to(storage)), { tileRows: 13 });
      assert.deepEqual([result.numClasses, result.embeddingSize, result.dtype], [CLASSES, EMB, 'float32']);
      const centers = centersOf(path);
      assert.deepEqual(centersOf(fp32Path), fp32Centers);
      assert.deepEqual(centers, normalizedWidened(source.weight, storage));
      assert.ok(maxAbsDiff(centers, fp32Centers) <= TOLERANCE[storage]);
    });
  });
}
