// What one worker of `plsc bench train` measures: the full training step through the Trainer
// (synthetic identities, dist_arcface head, PLSC defaults) and, in the same process, the
// backbone-only step (forward, a simple loss on the embeddings, backward, SGD momentum) that the
// PyTorch peer (bench/torch_train.py) times too.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ops as F, tidy, optim, manualSeed, getNumThreads, createBackbone, resolveConfig, Trainer, type PhaseTimes } from '../src/index.js';
import { median } from './peer.js';
import { ProcessGroup, initProcessGroup } from '../src/distributed/process-group.js';
import { readDistributedEnv } from '../src/distributed/env.js';

export interface TrainBenchSettings {
  model: string;
  /** Images per worker per step. */
  batch: number;
  imageSize: number;
  classes: number;
  warmupSteps: number;
  steps: number;
  /** Workers in the run (used to size the synthetic dataset). */
  nproc: number;
  /** Only the backbone-only step (a later round of the plsc/PyTorch alternation). */
  backboneOnly?: boolean;
}

/** One round of the backbone-only step: the median ms averaged over the workers, and by rank. */
export interface BackboneRoundNumbers {
  backboneStepMs: number;
  backboneStepMsPerRank: number[];
}

export interface WorkerTrainNumbers {
  worldSize: number;
  /** libtorch threads of this worker. */
  threads: number;
  /** Images per second of the whole group (all workers), measured steps only. */
  imagesPerSecond: number;
  /** Mean ms per measured step of each trainer phase (rank 0's). */
  phases: PhaseTimes;
  /** Median ms of the backbone-only step, averaged over the workers. */
  backboneStepMs: number;
  /** Each worker's median backbone-only step ms, by rank. */
  backboneStepMsPerRank: number[];
  losses: number[];
}

/** Enough synthetic images per class that one epoch covers every step of every worker. */
function imagesPerClass(settings: TrainBenchSettings): number {
  const needed = settings.batch * settings.nproc * (settings.warmupSteps + settings.steps + 1);
  return Math.max(2, Math.ceil(needed / settings.classes));
}

async function measureTrainer(settings: TrainBenchSettings, scratch: string): Promise<{ trainer: Trainer; imagesPerSecond: number; phases: PhaseTimes; losses: number[] }> {
  const config = resolveConfig({
    model: settings.model,
    dataset: { type: 'synthetic', numClasses: settings.classes, imagesPerClass: imagesPerClass(settings), seed: 0 },
    classNum: settings.classes,
    imageSize: settings.imageSize,
    trainBatchSize: settings.batch,
    trainSteps: settings.warmupSteps + settings.steps,
    lossType: 'dist_arcface',
    withTest: false,
    logPeriod: 1_000_000,
    checkpointDir: join(scratch, 'checkpoints'),
    modelSaveDir: join(scratch, 'output'),
  });
  const trainer = await Trainer.create(config, { quiet: true });
  const runOptions = { quiet: true, noCheckpoints: true } as const;
  if (settings.warmupSteps > 0) await trainer.train({ ...runOptions, maxStepsThisRun: settings.warmupSteps });
  const measured = await trainer.train({ ...runOptions, maxStepsThisRun: settings.steps });
  return { trainer, imagesPerSecond: measured.imagesPerSecond, phases: measured.phases, losses: measured.losses };
}

/** Median ms of forward + mean(e^2) + backward + SGD step of a fresh backbone on random images. */
function measureBackboneStep(settings: TrainBenchSettings, beforeTiming: () => void): number {
  manualSeed(0);
  const backbone = createBackbone(settings.model, { embeddingSize: 512, inputSize: settings.imageSize });
  backbone.train();
  const optimizer = new optim.SGD(backbone.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
  const images = F.randn([settings.batch, 3, settings.imageSize, settings.imageSize]);
  const step = (): void => {
    tidy(() => {
      const embeddings = backbone.call(images);
      F.mean(F.mul(embeddings, embeddings)).backward();
    });
    optimizer.step();
    optimizer.zeroGrad();
  };
  try {
    for (let i = 0; i < settings.warmupSteps; i++) step();
    beforeTiming();
    const samples: number[] = [];
    for (let i = 0; i < settings.steps; i++) {
      const start = process.hrtime.bigint();
      step();
      samples.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
    return median(samples);
  } finally {
    images.dispose();
    optimizer.dispose();
    backbone.dispose();
  }
}

// The backbone-only step on every rank at once; allGather over a [1] tensor: every rank learns
// every rank's median.
function backboneStepOnRanks(settings: TrainBenchSettings, group: ProcessGroup): BackboneRoundNumbers {
  const backboneStepMs = measureBackboneStep(settings, () => group.barrier().wait());
  const perRank = tidy(() => group.allGather(F.tensor([backboneStepMs], { dtype: 'float64' })).wait().toArray());
  return { backboneStepMs: perRank.reduce((a, b) => a + b, 0) / perRank.length, backboneStepMsPerRank: perRank };
}

/** The backbone-only step alone, in this worker (every rank calls it at once). */
export async function measureBackboneRound(settings: TrainBenchSettings): Promise<BackboneRoundNumbers> {
  const group = readDistributedEnv() === null ? ProcessGroup.local() : await initProcessGroup();
  return backboneStepOnRanks(settings, group);
}

/**
 * Runs both measurements in this worker. With several workers (joined from the torchrun
 * environment), every rank must call it; the backbone-only steps of all ranks run at the same time.
 */
export async function measureWorker(settings: TrainBenchSettings): Promise<WorkerTrainNumbers> {
  const scratch = mkdtempSync(join(tmpdir(), 'plsc-bench-train-'));
  try {
    const { trainer, imagesPerSecond, phases, losses } = await measureTrainer(settings, scratch);
    const group = trainer.group;
    trainer.dispose();
    return {
      worldSize: group.worldSize,
      threads: getNumThreads(),
      imagesPerSecond,
      phases,
      ...backboneStepOnRanks(settings, group),
      losses,
    };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
