// trainTime budgets (driven by an injected clock), the start-of-run summary and the smoothed speed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Trainer, resolveConfig, readMeta, listCheckpoints, type TrainConfig } from '../../src/index.js';
import { parseDuration } from '../../src/config/duration.js';
import { ThroughputMeter } from '../../src/train/throughput.js';
import { TimeBudget } from '../../src/train/time-budget.js';
import { datasetStats, formatBytes, formatRunPlan } from '../../src/train/run-summary.js';
import { ListFileSource } from '../../src/data/list-file.js';

const tinyBackbone = `${fileURLToPath(new URL('./fixtures/tiny-backbone.js', import.meta.url))}#createTinyBackbone`;

function smallConfig(dir: string, overrides: Record<string, unknown> = {}): TrainConfig {
  return resolveConfig({
    dataset: { type: 'synthetic', numClasses: 60, imagesPerClass: 6, seed: 1 },
    model: tinyBackbone,
    imageSize: 16,
    embSize: 32,
    trainBatchSize: 16,
    lr: 1.0,
    scale: 16,
    withTest: false,
    logPeriod: 5,
    checkpointDir: join(dir, 'checkpoints'),
    modelSaveDir: join(dir, 'output'),
    ...overrides,
  });
}

function captureStream(): { stream: { write(text: string): boolean; isTTY: boolean }; text: () => string } {
  let text = '';
  return { stream: { write: (chunk: string) => ((text += chunk), true), isTTY: false }, text: () => text };
}

test('durations: units, combinations and plain seconds; configs name the field on a bad one', () => {
  assert.equal(parseDuration('90s'), 90);
  assert.equal(parseDuration('10m'), 600);
  assert.equal(parseDuration('2h'), 7200);
  assert.equal(parseDuration('1h30m'), 5400);
  assert.equal(parseDuration('1.5h'), 5400);
  assert.equal(parseDuration(45), 45);
  assert.throws(() => parseDuration('10 minutes'), /must be a duration such as "90s", "10m"/);
  assert.throws(() => parseDuration('0s'), /longer than zero/);
  assert.throws(() => resolveConfig({ trainTime: 'soon' }), /trainTime: must be a duration/);
  assert.equal(resolveConfig({ trainTime: 600 }).trainTime, '600s');
  assert.equal(resolveConfig({}).trainTime, null);
});

test('the smoothed speed: a window of steps, so one stalled step barely moves it', () => {
  const meter = new ThroughputMeter(10);
  for (let i = 0; i < 10; i++) meter.record(64, 0.1);
  assert.equal(Math.round(meter.imagesPerSecond), 640);
  meter.record(64, 1.0); // one stall: a per-step rate would show 64 img/s
  assert.ok(meter.imagesPerSecond > 300, `${meter.imagesPerSecond}`);
  assert.equal(meter.medianSecondsPerStep, 0.1);
  assert.equal(meter.steps, 10);
});

test('a time budget estimates the steps that fit from the measured step time', () => {
  let now = 0;
  const budget = new TimeBudget(60, () => now / 1000);
  now = 15_000;
  assert.equal(budget.estimateTotalSteps(30, 0.5), 30 + 90);
  assert.match(budget.describe(120, 0.5), /^time budget 1m00s: ~120 steps at 0\.500 s\/step \(45s left\)$/);
  now = 60_000;
  assert.ok(budget.spent());
  assert.equal(budget.estimateTotalSteps(120, 0.5), 121);
});

test('trainTime: stops within one step of the budget with a final checkpoint, the cosine schedule reaches its end', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-budget-'));
  try {
    // Every step costs exactly 100 ms of (fake) time: 2 s fit 20 steps.
    const config = smallConfig(dir, { trainTime: '2s', lrScheduler: 'cosine', checkpointPeriod: 0 });
    const trainer = await Trainer.create(config);
    const log = captureStream();
    const result = await trainer.train({ clock: () => trainer.step * 100, logStream: log.stream });
    assert.ok(Math.abs(result.finalStep - 20) <= 1, `stopped at step ${result.finalStep}`);
    assert.equal(result.stepsRun, result.finalStep);
    assert.equal(result.losses.length, result.finalStep);
    assert.equal(trainer.totalSteps, result.finalStep);
    assert.equal(trainer.lrAt(result.finalStep), 0);
    const baseLr = trainer.lrAt(0);
    assert.ok(trainer.lrAt(result.finalStep - 1) < 0.01 * baseLr, `last lr ${trainer.lrAt(result.finalStep - 1)} of ${baseLr}`);
    // The estimate was printed once known (after the first timed steps).
    assert.match(log.text(), /time budget 2s: ~20 steps at 0\.100 s\/step \(2s left\)/);
    assert.doesNotMatch(log.text(), /time budget 2s: ~2[1-9] steps/);
    assert.match(log.text(), /schedule: 23 steps\/epoch, budget 2s/);
    const last = listCheckpoints(config.checkpointDir).pop()!;
    assert.equal(readMeta(last.path).step, result.finalStep);
    assert.ok(result.reportPath !== null && existsSync(result.reportPath));
    trainer.dispose();

    // trainSteps still caps a budgeted run.
    const capped = await Trainer.create(smallConfig(join(dir, 'capped'), { trainTime: '1h', trainSteps: 6 }));
    const cappedResult = await capped.train({ clock: () => capped.step * 100, quiet: true });
    assert.equal(cappedResult.finalStep, 6);
    capped.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('trainTime is the training\'s budget: a resumed run continues the seconds its checkpoint records', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-budget-resume-'));
  try {
    // 100 ms of (fake) time per step, counted from each run's first step: 2 s fit 20 steps in all.
    const config = smallConfig(dir, { trainTime: '2s', lrScheduler: 'cosine', checkpointPeriod: 0 });
    const first = await Trainer.create(config);
    const firstStart = first.step;
    const firstResult = await first.train({ clock: () => (first.step - firstStart) * 100, quiet: true, maxStepsThisRun: 8 });
    assert.equal(firstResult.finalStep, 8);
    first.dispose();
    const saved = listCheckpoints(config.checkpointDir).pop()!;
    assert.equal(readMeta(saved.path).step, 8);
    assert.ok(Math.abs((readMeta(saved.path).trainSeconds ?? -1) - 0.8) < 1e-9, `trainSeconds ${readMeta(saved.path).trainSeconds}`);

    const resumed = await Trainer.create({ ...config, resume: 'latest' });
    const resumedStart = resumed.step;
    const log = captureStream();
    const result = await resumed.train({ clock: () => (resumed.step - resumedStart) * 100, logStream: log.stream });
    // A fresh budget would have run to step 8 + 20.
    assert.ok(Math.abs(result.finalStep - 20) <= 1, `stopped at step ${result.finalStep}`);
    assert.match(log.text(), /time budget 2s: 1s spent before this run, 1s left/);
    const last = listCheckpoints(config.checkpointDir).pop()!;
    assert.equal(readMeta(last.path).step, result.finalStep);
    assert.ok(Math.abs((readMeta(last.path).trainSeconds ?? -1) - result.finalStep * 0.1) < 1e-9);
    resumed.dispose();

    // Resumed once more with the budget spent: no further step.
    const spent = await Trainer.create({ ...config, resume: 'latest' });
    const spentResult = await spent.train({ clock: () => 0, quiet: true });
    assert.equal(spentResult.stepsRun, 0);
    assert.equal(spentResult.finalStep, result.finalStep);
    spent.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the start of a run says what it will do: dataset, schedule, scaled lr, the head per worker', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-summary-'));
  try {
    const trainer = await Trainer.create(smallConfig(dir, { trainSteps: 2, warmupEpochs: 1, sampleRatio: 0.5 }));
    const log = captureStream();
    await trainer.train({ logStream: log.stream, noCheckpoints: true });
    const text = log.text();
    assert.match(text, /^training .*tiny-backbone\.js#createTinyBackbone \+ dist_arcface head on 1 worker\(s\)$/m);
    assert.match(text, /^dataset: synthetic 60 x 6 \(synthetic\): 360 images, 60 classes, images\/class min 6 median 6 max 6$/m);
    assert.match(text, /^schedule: 23 steps\/epoch, 2 steps = 0\.09 epochs, global batch 16 \(16 x 1\)$/m);
    // lr 1.0 per 512 images at a global batch of 16.
    assert.match(text, /^lr: 0\.0313 \(1 per 512 images, scaled to the global batch\), piecewise, 23 warmup steps$/m);
    // 60 x 32 float32 weights + as much sparse momentum.
    assert.match(text, /^head: 60 classes in 1 shard\(s\), 60 classes and 15\.0 KiB \(weights \+ optimizer state\) per worker, 50% sampled per step$/m);
    trainer.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('dataset statistics count images per class; the plan formats a budget and bytes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-stats-'));
  try {
    mkdirSync(dir, { recursive: true });
    const counts = [1, 4, 2, 7];
    const lines = counts.flatMap((n, label) => Array.from({ length: n }, (_, i) => `img_${label}_${i}.jpg ${label}`));
    writeFileSync(join(dir, 'label.txt'), lines.join('\n') + '\n');
    const stats = datasetStats(await ListFileSource.open(join(dir, 'label.txt')));
    assert.deepEqual(stats, { format: 'list', images: 14, classes: 4, imagesPerClass: { min: 1, median: 3, max: 7 } });
    assert.equal(formatBytes(3 * 1024 * 1024 * 1024), '3.00 GiB');
    const lines2 = formatRunPlan({
      model: 'mobilefacenet', lossType: 'dist_arcface', datasetName: 'photos/', dataset: stats, headClasses: 4, workers: 2, batchPerWorker: 8, globalBatch: 16,
      stepsPerEpoch: 1, totalSteps: 120, budgetSeconds: 600, lr: 0.1, scaledLr: 0.003125, lrScheduler: 'cosine', warmupSteps: 0, headShards: 2, classesPerWorker: 2, headBytesPerWorker: 2048, sampleRatio: 1,
    });
    assert.match(lines2.join('\n'), /schedule: 1 steps\/epoch, budget 10m00s/);
    assert.match(lines2.join('\n'), /lr: 0\.0031 \(0\.1 per 512 images/);
    assert.match(lines2.join('\n'), /head: 4 classes in 2 shard\(s\), 2 classes and 2\.00 KiB/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
