// Quality of 16-bit class storage: a 2-worker dist_arcface run whose head stores its class weights
// and momentum in bfloat16 reaches the held-out verification accuracy of the same run in float32
// within 0.5 points, and its final loss within 2% (same seed, same data order, same steps).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  SyntheticFaces,
  loadCheckpointBackbone,
  makeVerificationBin,
  readMeta,
  readSafetensorsHeader,
  resolveConfig,
  shardFileName,
  trainInLocalWorkers,
  verifyBin,
} from '../../src/index.js';
import type { ClassStorage } from '../../src/config/class-storage.js';

const work = mkdtempSync(join(tmpdir(), 'plsc-storage-quality-'));
after(() => rmSync(work, { recursive: true, force: true }));
const tinyBackbone = `${fileURLToPath(new URL('./fixtures/tiny-backbone.js', import.meta.url))}#createTinyBackbone`;

const IMAGE = 16;
const STEPS = 60;

interface Outcome {
  accuracy: number;
  finalLoss: number;
  storedAs: string;
}

async function run(storage: ClassStorage, binPath: string): Promise<Outcome> {
  const dir = join(work, storage);
  const config = resolveConfig({
    dataset: { type: 'synthetic', numClasses: 600, imagesPerClass: 4, seed: 3 },
    lossType: 'dist_arcface',
    model: tinyBackbone,
    imageSize: IMAGE,
    embSize: 32,
    trainBatchSize: 32,
    trainSteps: STEPS,
    lr: 0.4,
    lrScheduler: 'cosine',
    withTest: false,
    valTargets: [],
    logPeriod: 1000,
    checkpointDir: join(dir, 'checkpoints'),
    modelSaveDir: dir,
    workers: 2,
    seed: 0,
    classStorage: storage,
  });
  const summary = await trainInLocalWorkers(config);
  assert.ok(summary.lastCheckpoint !== null);
  const meta = readMeta(summary.lastCheckpoint);
  const backbone = await loadCheckpointBackbone(summary.lastCheckpoint, meta);
  try {
    const result = await verifyBin(backbone, binPath, { batchSize: 64 });
    const tail = summary.losses.slice(-Math.max(1, Math.floor(STEPS / 10)));
    return {
      accuracy: result.accuracy,
      finalLoss: tail.reduce((a, b) => a + b, 0) / tail.length,
      storedAs: readSafetensorsHeader(join(summary.lastCheckpoint, shardFileName(1, 2))).entries.find((e) => e.name === 'weight')?.dtype ?? 'none',
    };
  } finally {
    backbone.dispose();
  }
}

test('bfloat16 class storage: held-out verification accuracy within 0.5 points of float32, final loss within 2%', async (t) => {
  const heldOut = new SyntheticFaces({ numClasses: 400, imagesPerClass: 4, size: IMAGE, seed: 1_000_003 });
  const bin = await makeVerificationBin({ source: heldOut, pairs: 800, out: join(work, 'held-out.bin'), size: IMAGE, format: 'png', seed: 0 });
  const fp32 = await run('float32', bin.path);
  const bf16 = await run('bfloat16', bin.path);
  t.diagnostic(`float32: accuracy ${(100 * fp32.accuracy).toFixed(2)}%, final loss ${fp32.finalLoss.toFixed(4)}`);
  t.diagnostic(`bfloat16: accuracy ${(100 * bf16.accuracy).toFixed(2)}%, final loss ${bf16.finalLoss.toFixed(4)}`);
  assert.equal(fp32.storedAs, 'F32');
  assert.equal(bf16.storedAs, 'BF16');
  // Training must have learned something for the comparison to mean anything.
  assert.ok(fp32.accuracy > 0.6, `float32 accuracy ${fp32.accuracy}`);
  assert.ok(Math.abs(bf16.accuracy - fp32.accuracy) <= 0.005, `accuracy ${bf16.accuracy} vs ${fp32.accuracy}`);
  assert.ok(Math.abs(bf16.finalLoss - fp32.finalLoss) <= 0.02 * fp32.finalLoss, `final loss ${bf16.finalLoss} vs ${fp32.finalLoss}`);
});
