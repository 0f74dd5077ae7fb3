// `plsc demo`: the whole product in a few minutes on a small machine. Trains a real backbone with
// local workers on synthetic identities (dist_arcface, sharded head), builds a verification .bin from
// held-out identities, verifies the backbone before and after training, and exports ONNX plus the
// class centres for `plsc serve`.
import { appendFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { getNumThreads, manualSeed, setNumThreads } from '../torch/native.js';
import { SyntheticFaces } from '../data/synthetic.js';
import { makeVerificationBin } from '../data/verification-pairs.js';
import { exportCheckpoint, loadCheckpointBackbone, type ParityResult } from '../export/export-checkpoint.js';
import { backboneFromSpec } from '../checkpoint/backbone-spec.js';
import { readMeta } from '../checkpoint/format.js';
import { resolveConfig, type TrainConfig } from '../config/train-config.js';
import type { ClassStorage } from '../config/class-storage.js';
import { trainInLocalWorkers, type LocalWorkersOptions, type TrainSummary } from './entry.js';
import type { ValidationMetricsRecord } from './progress.js';
import { writeTrainingReport } from './report.js';
import { verifyBin, type TargetResult } from '../eval/backbone-verification.js';

export interface DemoOptions {
  /** Where everything goes (default output/demo). */
  out: string;
  /** Training identities (default 10,000). */
  classes: number;
  imagesPerClass: number;
  /** Optimizer steps. */
  steps: number;
  /** Local worker processes (default 2). */
  workers: number;
  /** A backbone name from src/models (or a module spec `file.js#factory`). */
  model: string;
  imageSize: number;
  /** Images per worker per step. */
  batchSize: number;
  embSize: number;
  /** Learning rate per global batch of 512 (PLSC's convention; scaled to the actual global batch). */
  lr: number;
  /** Linear lr warmup from 0 over this many steps, then cosine decay to 0. */
  warmupSteps: number;
  /** Pairs of the held-out verification .bin (half same-identity). */
  verificationPairs: number;
  /** Identities of the held-out verification set (never seen in training). */
  heldOutClasses: number;
  logPeriod: number;
  seed: number;
  /** dtype of the head's class weights and momentum (default float32). */
  classStorage?: ClassStorage;
}

/** The default demo: a few minutes with 2 workers on a 2-core machine. */
export const DEMO_DEFAULTS: DemoOptions = {
  out: 'output/demo',
  classes: 10000,
  imagesPerClass: 4,
  steps: 200,
  workers: 2,
  model: 'mobilefacenet',
  imageSize: 32,
  batchSize: 64,
  embSize: 128,
  lr: 0.1,
  warmupSteps: 0,
  verificationPairs: 400,
  heldOutClasses: 400,
  logPeriod: 10,
  seed: 0,
};

/**
 * `--quick`: the same pipeline, small enough for tests (under a minute). 60 steps is about the
 * fewest after which MobileFaceNet's BatchNorm running statistics (momentum 0.1, starting at var 1
 * while its depthwise convolutions' outputs have var ~5e-3) let the eval-mode network tell images apart.
 */
export const QUICK_DEMO: Partial<DemoOptions> = {
  classes: 2000,
  imagesPerClass: 2,
  steps: 60,
  batchSize: 8,
  verificationPairs: 100,
  heldOutClasses: 100,
};

export interface DemoResult {
  options: DemoOptions;
  config: TrainConfig;
  training: TrainSummary;
  /** Loss of the first and last step, and the means of the first and last tenth of the steps. */
  loss: { first: number; last: number; firstMean: number; lastMean: number; window: number };
  verification: { path: string; pairs: number; identities: number; before: TargetResult; after: TargetResult };
  export: { modelPath: string; centersPath: string; parity: ParityResult; inputShape: number[]; modelBytes: number; centersBytes: number };
  checkpointDir: string;
  checkpoint: string;
  modelPath: string;
  metricsPath: string;
  reportPath: string;
  /** Seconds spent in each phase. */
  seconds: { training: number; verificationBin: number; verification: number; export: number; total: number };
}

export interface DemoHooks extends Pick<LocalWorkersOptions, 'onOutput' | 'signal'> {
  /** Progress of the demo's own phases (default: nothing). */
  log?: (line: string) => void;
}

/** The training config the demo runs. */
export function demoTrainConfig(options: DemoOptions): TrainConfig {
  const out = resolve(options.out);
  return resolveConfig({
    dataset: { type: 'synthetic', numClasses: options.classes, imagesPerClass: options.imagesPerClass, seed: options.seed },
    classNum: options.classes,
    lossType: 'dist_arcface',
    model: options.model,
    imageSize: options.imageSize,
    embSize: options.embSize,
    trainBatchSize: options.batchSize,
    trainSteps: options.steps,
    lr: options.lr,
    lrScheduler: 'cosine',
    // Config warmup is in epochs; this many epochs is warmupSteps steps.
    warmupEpochs: options.warmupSteps / Math.max(1, Math.ceil((options.classes * options.imagesPerClass) / (options.batchSize * options.workers))),
    logPeriod: options.logPeriod,
    withTest: false,
    valTargets: [],
    checkpointDir: join(out, 'checkpoints'),
    checkpointPeriod: Math.max(1, Math.ceil(options.steps / 2)),
    maxLastCheckpointNum: 2,
    modelSaveDir: out,
    workers: options.workers,
    seed: options.seed,
    ...(options.classStorage === undefined ? {} : { classStorage: options.classStorage }),
  });
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

/** Files of an earlier demo run in `out` that this run replaces (nothing else there is touched). */
function removeEarlierRun(out: string): void {
  for (const name of ['checkpoints', 'metrics.jsonl', 'training-report.html', 'backbone.safetensors', 'verification.bin', 'model.onnx', 'centers.safetensors']) {
    rmSync(join(out, name), { recursive: true, force: true });
  }
}

/** Runs the demo end to end. */
export async function runDemo(options: DemoOptions, hooks: DemoHooks = {}): Promise<DemoResult> {
  const log = hooks.log ?? (() => {});
  const out = resolve(options.out);
  const config = demoTrainConfig(options);
  if (options.heldOutClasses < 2) throw new RangeError(`held-out identities must be at least 2, got ${options.heldOutClasses}`);
  removeEarlierRun(out);
  const started = performance.now();
  const seconds = (since: number): number => (performance.now() - since) / 1000;
  const stopIfAborted = (): void => {
    if (hooks.signal?.aborted) throw new Error(`stopped by ${String(hooks.signal.reason)}`);
  };

  log(
    `training ${options.model} (${options.imageSize}x${options.imageSize}, ${options.embSize}-d) + dist_arcface on ${options.classes} synthetic identities ` +
      `x ${options.imagesPerClass} images with ${options.workers} workers: ${options.steps} steps of ${options.batchSize} images per worker`,
  );
  let phase = performance.now();
  const training = await trainInLocalWorkers(config, {
    ...(hooks.onOutput ? { onOutput: hooks.onOutput } : {}),
    ...(hooks.signal ? { signal: hooks.signal } : {}),
  });
  const trainingSeconds = seconds(phase);
  if (training.lastCheckpoint === null || training.modelPath === null || training.metricsPath === null) {
    throw new Error('training ended without a checkpoint, model or metrics file');
  }
  const losses = training.losses;
  if (losses.length === 0) throw new Error('training ran no steps');
  const window = Math.max(1, Math.floor(losses.length / 10));
  const loss = {
    first: losses[0] as number,
    last: losses[losses.length - 1] as number,
    firstMean: mean(losses.slice(0, window)),
    lastMean: mean(losses.slice(-window)),
    window,
  };

  stopIfAborted();
  // Held-out identities: another generator seed draws identities the training set never had.
  phase = performance.now();
  const heldOut = new SyntheticFaces({ numClasses: options.heldOutClasses, imagesPerClass: 4, size: options.imageSize, seed: options.seed + 1_000_003 });
  log(`building ${options.verificationPairs} verification pairs from ${options.heldOutClasses} held-out identities`);
  const bin = await makeVerificationBin({ source: heldOut, pairs: options.verificationPairs, out: join(out, 'verification.bin'), size: options.imageSize, format: 'png', seed: options.seed });
  const binSeconds = seconds(phase);

  stopIfAborted();
  phase = performance.now();
  log('verifying the backbone before and after training');
  // One libtorch thread unless the user chose a count: on a machine shared with other work, a
  // 2-thread pool measured 5-10x slower than one thread here (its threads wait on each other).
  const threadsBefore = getNumThreads();
  if (process.env.PLSC_NUM_THREADS === undefined && process.env.OMP_NUM_THREADS === undefined) setNumThreads(1);
  let before: TargetResult;
  let after: TargetResult;
  try {
    // Trainer.create seeds libtorch with config.seed before building the backbone: the same seed here
    // rebuilds the exact initial weights, so "before" is the network training started from.
    manualSeed(config.seed);
    const initial = await backboneFromSpec(config);
    try {
      before = await verifyBin(initial, bin.path, { batchSize: 64 });
    } finally {
      initial.dispose();
    }
    const trained = await loadCheckpointBackbone(training.lastCheckpoint, readMeta(training.lastCheckpoint));
    try {
      after = await verifyBin(trained, bin.path, { batchSize: 64 });
    } finally {
      trained.dispose();
    }
  } finally {
    setNumThreads(threadsBefore);
  }
  const verificationSeconds = seconds(phase);
  // The held-out result goes into the metrics and the HTML report next to the loss curve.
  const record: ValidationMetricsRecord = {
    type: 'validation',
    step: training.finalStep,
    epoch: null,
    results: [{ target: 'held-out synthetic', accuracy: after.accuracy, std: after.std, xnorm: after.xnorm }],
    time: new Date().toISOString(),
  };
  appendFileSync(training.metricsPath, `${JSON.stringify(record)}\n`);
  const reportPath = await writeTrainingReport(training.metricsPath, join(out, 'training-report.html'));

  stopIfAborted();
  phase = performance.now();
  log('exporting ONNX (with the onnxruntime parity check) and the class centres');
  const exported = await exportCheckpoint({
    checkpoint: training.lastCheckpoint,
    out: join(out, 'model.onnx'),
    dynamicBatch: true,
    centers: join(out, 'centers.safetensors'),
  });
  if (exported.centers === null) throw new Error('export wrote no class centres');
  const exportSeconds = seconds(phase);

  return {
    options,
    config,
    training,
    loss,
    verification: { path: bin.path, pairs: bin.pairs.length, identities: options.heldOutClasses, before, after },
    export: {
      modelPath: exported.modelPath,
      centersPath: exported.centers.path,
      parity: exported.parity,
      inputShape: exported.inputShape,
      modelBytes: exported.modelBytes,
      centersBytes: exported.centers.bytes,
    },
    checkpointDir: config.checkpointDir,
    checkpoint: training.lastCheckpoint,
    modelPath: training.modelPath,
    metricsPath: training.metricsPath,
    reportPath,
    seconds: { training: trainingSeconds, verificationBin: binSeconds, verification: verificationSeconds, export: exportSeconds, total: seconds(started) },
  };
}

