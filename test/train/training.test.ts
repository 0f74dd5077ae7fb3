// Training end to end: Entry validation, multi-worker runs, exact resume, re-sharding.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Entry,
  Trainer,
  resolveConfig,
  loadConfigFile,
  readMeta,
  readClassRows,
  reshardCheckpoint,
  listCheckpoints,
  loadSafetensors,
  tidy,
  ops as F,
  type TrainConfig,
  type Tensor,
} from '../../src/index.js';

const tinyBackbone = `${fileURLToPath(new URL('./fixtures/tiny-backbone.js', import.meta.url))}#createTinyBackbone`;

function scratch(): string {
  return mkdtempSync(join(tmpdir(), 'plsc-train-'));
}

function smallConfig(dir: string, overrides: Partial<TrainConfig> = {}): TrainConfig {
  return resolveConfig({
    dataset: { type: 'synthetic', numClasses: 60, imagesPerClass: 6, seed: 1 },
    model: tinyBackbone,
    imageSize: 16,
    embSize: 32,
    trainBatchSize: 16,
    trainSteps: 8,
    lr: 1.0,
    scale: 16,
    withTest: false,
    logPeriod: 100,
    checkpointDir: join(dir, 'checkpoints'),
    modelSaveDir: join(dir, 'output'),
    ...overrides,
  });
}

test('Entry setters reject invalid settings at the setter, naming the field', () => {
  const entry = new Entry();
  assert.throws(() => entry.setClassNum(0), /classNum: must be a positive integer, got 0/);
  assert.throws(() => entry.setTrainBatchSize(2.5), /trainBatchSize: must be a positive integer/);
  assert.throws(() => entry.setLossType('dist_foo'), /lossType: must be one of softmax, arcface/);
  assert.throws(() => entry.setSampleRatio(0), /sampleRatio: must be in \(0, 1\]/);
  assert.throws(() => entry.setMargins(0, 0.5, 0), /margins: m1 must be positive/);
  assert.throws(() => entry.setStepBoundaries([10, 5]), /stepBoundaries: must be strictly increasing/);
  assert.throws(() => entry.setLr(-1), /lr: must be a positive number/);
  assert.throws(() => entry.setDataset({ type: 'synthetic', numClasses: 10 } as never), /dataset.imagesPerClass/);
  const config = entry.setClassNum(1000).setLossType('dist_cosface').setTrainSteps(10).config();
  assert.equal(config.classNum, 1000);
  assert.equal(config.lossType, 'dist_cosface');
  assert.equal(config.embSize, 512);
  assert.equal(config.trainBatchSize, 128);
  assert.equal(config.model, 'iresnet50');
});

test('YAML configs with --set overrides, errors naming file and field', async () => {
  const dir = scratch();
  const { writeFileSync } = await import('node:fs');
  const path = join(dir, 'train.yaml');
  writeFileSync(path, 'classNum: 100\nlossType: dist_arcface\ndataset:\n  type: synthetic\n  numClasses: 100\n  imagesPerClass: 4\ntrainSteps: 5\n');
  const config = loadConfigFile(path, ['trainBatchSize=8', 'margins=[1, 0.3, 0.2]', 'dataset.imagesPerClass=7']);
  assert.equal(config.trainBatchSize, 8);
  assert.deepEqual(config.margins, [1, 0.3, 0.2]);
  assert.equal(config.dataset.type === 'synthetic' && config.dataset.imagesPerClass, 7);
  writeFileSync(path, 'classNum: -3\n');
  assert.throws(() => loadConfigFile(path), /train\.yaml: classNum: must be a positive integer, got -3/);
  writeFileSync(path, 'nope: 1\n');
  assert.throws(() => loadConfigFile(path), /nope: unknown setting/);
  rmSync(dir, { recursive: true, force: true });
});

test('two local workers (dist_arcface over 2 shards) train on synthetic identities and the loss falls', async () => {
  const dir = scratch();
  const entry = new Entry()
    .setDataset({ type: 'synthetic', numClasses: 40, imagesPerClass: 8, seed: 2 })
    .setModel(tinyBackbone)
    .setImageSize(16)
    .setEmbSize(32)
    .setTrainBatchSize(16)
    .setTrainSteps(40)
    .setLr(2.0)
    .setScale(16)
    .setWithTest(false)
    .setWorkers(2)
    .setCheckpointDir(join(dir, 'checkpoints'))
    .setModelSaveDir(join(dir, 'output'));
  const result = await entry.train();
  assert.equal(result.worldSize, 2);
  assert.equal(result.finalStep, 40);
  const first = result.losses.slice(0, 5).reduce((a, b) => a + b) / 5;
  const last = result.losses.slice(-5).reduce((a, b) => a + b) / 5;
  assert.ok(last < first * 0.8, `loss fell from ${first.toFixed(3)} to ${last.toFixed(3)}`);
  const checkpoints = listCheckpoints(join(dir, 'checkpoints'));
  assert.ok(checkpoints.length >= 1);
  const meta = readMeta((checkpoints[checkpoints.length - 1] as { path: string }).path);
  assert.equal(meta.worldSize, 2);
  assert.equal(meta.step, 40);
  assert.ok(existsSync(join(dir, 'output', 'backbone.safetensors')));
  assert.ok(existsSync(join(dir, 'output', 'metrics.jsonl')));
  assert.ok(existsSync(join(dir, 'output', 'training-report.html')));
  rmSync(dir, { recursive: true, force: true });
});

test('resuming from a checkpoint gives the same next-step losses as an uninterrupted run', async () => {
  const dir = scratch();
  for (const sampleRatio of [1, 0.5]) {
    const config = smallConfig(dir, { sampleRatio, checkpointDir: join(dir, `ck-${sampleRatio}`) });
    const uninterrupted = await Trainer.create(config);
    const full = await uninterrupted.train({ quiet: true, noCheckpoints: true });
    uninterrupted.dispose();

    const firstHalf = await Trainer.create(config);
    await firstHalf.train({ quiet: true, maxStepsThisRun: 4 });
    firstHalf.dispose();
    const resumed = await Trainer.create({ ...config, resume: 'latest' });
    assert.equal(resumed.step, 4);
    const rest = await resumed.train({ quiet: true, noCheckpoints: true });
    resumed.dispose();
    assert.equal(rest.losses.length, 4);
    rest.losses.forEach((loss, i) => {
      const expected = full.losses[4 + i] as number;
      assert.ok(Math.abs(loss - expected) <= 1e-6 * Math.max(1, Math.abs(expected)), `sampleRatio ${sampleRatio} step ${5 + i}: ${loss} vs ${expected}`);
    });
  }
  rmSync(dir, { recursive: true, force: true });
});

test('a crash mid-write leaves the previous checkpoint intact; only the last K are kept', async () => {
  const dir = scratch();
  const config = smallConfig(dir, { trainSteps: 6, checkpointPeriod: 1, maxLastCheckpointNum: 2 });
  const trainer = await Trainer.create(config);
  await trainer.train({ quiet: true });
  trainer.dispose();
  const kept = listCheckpoints(config.checkpointDir).map((c) => c.step);
  assert.deepEqual(kept, [5, 6]);
  // A half-written save (only the tmp dir) is ignored by resume.
  const { mkdirSync, writeFileSync } = await import('node:fs');
  mkdirSync(join(config.checkpointDir, '.tmp-step-00000007'));
  writeFileSync(join(config.checkpointDir, '.tmp-step-00000007', 'fc-rank-0-of-1.safetensors'), 'garbage');
  const resumed = await Trainer.create({ ...config, resume: 'latest' });
  assert.equal(resumed.step, 6);
  resumed.dispose();
  assert.ok(readdirSync(config.checkpointDir).includes('.tmp-step-00000007'));
  rmSync(dir, { recursive: true, force: true });
});

test('re-sharding 2 -> 3 -> 1 preserves every class row and its momentum; resume re-splits automatically', async () => {
  const dir = scratch();
  const entry = new Entry()
    .setDataset({ type: 'synthetic', numClasses: 31, imagesPerClass: 4, seed: 3 })
    .setModel(tinyBackbone)
    .setImageSize(16)
    .setEmbSize(8)
    .setTrainBatchSize(8)
    .setTrainSteps(3)
    .setWithTest(false)
    .setWorkers(2)
    .setCheckpointDir(join(dir, 'checkpoints'))
    .setModelSaveDir(join(dir, 'output'));
  const result = await entry.train();
  const source = result.lastCheckpoint as string;
  const meta2 = readMeta(source);
  assert.equal(meta2.worldSize, 2);
  tidy(() => {
    const original = readClassRows(source, meta2, 0, 31);
    const three = join(dir, 'three');
    const one = join(dir, 'one');
    assert.equal(reshardCheckpoint(source, 3, three).worldSize, 3);
    const shard0 = loadSafetensors(join(three, 'fc-rank-0-of-3.safetensors'));
    assert.deepEqual((shard0.weight as Tensor).shape, [11, 8]);
    reshardCheckpoint(three, 1, one);
    const back = readClassRows(one, readMeta(one), 0, 31);
    for (const name of ['weight', 'weight_momentum']) {
      assert.ok(F.allclose(back[name] as Tensor, original[name] as Tensor, 0, 0), `${name} identical after 2 -> 3 -> 1`);
    }
    assert.ok(F.sum(F.abs(original.weight_momentum as Tensor)).item() > 0, 'momentum was trained');
  });
  // Resume the 2-worker checkpoint in one process: its head holds all 31 classes.
  const resumed = await Trainer.create({ ...entry.config(), workers: 1, resume: source, trainSteps: 4 });
  tidy(() => {
    const original = readClassRows(source, meta2, 0, 31);
    assert.ok(F.allclose(resumed.head.weight, original.weight as Tensor, 0, 0));
  });
  resumed.dispose();
  assert.throws(() => reshardCheckpoint(source, 40, join(dir, 'too-many')), /31 classes cannot be split over 40 workers/);
  rmSync(dir, { recursive: true, force: true });
});
