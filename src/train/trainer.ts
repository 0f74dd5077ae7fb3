// The training loop of one worker: data-parallel backbone + model-parallel head, SGD, lr schedule,
// periodic validation, checkpoints that resume exactly and re-shard, progress and metrics.
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Tensor } from '../torch/tensor.js';
import * as F from '../torch/ops.js';
import { tidy, tidyAsync } from '../torch/scope.js';
import { manualSeed } from '../torch/native.js';
import { noGrad } from '../torch/autograd.js';
import { SGD } from '../torch/optim/sgd.js';
import { clipGradNorm } from '../torch/optim/clip-grad.js';
import { lrAt, type LrSchedule } from '../torch/optim/lr-scheduler.js';
import { packOptimizerState, unpackOptimizerState } from '../torch/optim/checkpoint.js';
import { loadSafetensors, readSafetensorsMetadata, saveSafetensors } from '../torch/safetensors.js';
import { ProcessGroup, initProcessGroup, isProcessGroupInitialized, getProcessGroup } from '../distributed/process-group.js';
import { readDistributedEnv } from '../distributed/env.js';
import { DataParallel } from '../distributed/data-parallel.js';
import { PartialFC } from '../head/partial-fc.js';
import { marginForLossType } from '../head/margin.js';
import { DataLoader, type ImageBatch } from '../data/loader.js';
import { SyntheticFaces } from '../data/synthetic.js';
import { openDataset } from '../data/convert.js';
import type { SampleSource } from '../data/source.js';
import type { Backbone } from '../models/index.js';
import { backboneFromSpec } from './backbone-spec.js';
import { derivedSchedule, type DatasetSpec, type TrainConfig } from './config.js';
import { loadShardInto, readMeta, resolveCheckpoint, saveCheckpoint, type CheckpointMeta } from './checkpoint.js';
import { classStorageOf } from './class-storage.js';
import { ProgressReporter } from './progress.js';
import { writeTrainingReport } from './report.js';
import { validateBackboneOnTargets, type TargetResult } from './validation.js';

export interface PhaseTimes {
  data: number;
  forward: number;
  head: number;
  backward: number;
  comm: number;
  optimizer: number;
}

export interface TrainResult {
  rank: number;
  worldSize: number;
  stepsRun: number;
  finalStep: number;
  /** Loss of each step run, in order. */
  losses: number[];
  lastCheckpoint: string | null;
  modelPath: string | null;
  metricsPath: string | null;
  reportPath: string | null;
  validation: TargetResult[];
  imagesPerSecond: number;
  /** Mean ms per step of each phase. */
  phases: PhaseTimes;
}

export interface TrainOptions {
  /** Use this group instead of the torchrun environment (or a group of one). */
  group?: ProcessGroup;
  /** Build the backbone (custom models); default: the registry by config.model. */
  backboneFactory?: (config: TrainConfig) => Backbone;
  /** Stop after this many steps in this run (resume tests, benchmarks). */
  maxStepsThisRun?: number;
  /** Quiet: no progress output (metrics are still written). */
  quiet?: boolean;
  /** Skip writing checkpoints (benchmarks). */
  noCheckpoints?: boolean;
}

/** Opens the configured dataset (auto-detects a PLSC dataset directory). */
export async function openTrainingData(spec: DatasetSpec, imageSize: number): Promise<SampleSource> {
  switch (spec.type) {
    case 'synthetic':
      return new SyntheticFaces({ numClasses: spec.numClasses, imagesPerClass: spec.imagesPerClass, size: imageSize, seed: spec.seed ?? 0, ...(spec.noise === undefined ? {} : { noise: spec.noise }) });
    case 'list':
    case 'rec':
    case 'folder':
    case 'base64':
      return openDataset(spec.type, spec.path);
    case 'auto': {
      const dir = spec.path;
      if (!existsSync(dir)) throw new Error(`dataset: ${resolve(dir)} does not exist`);
      if (statSync(dir).isFile()) {
        if (dir.endsWith('.rec')) return openDataset('rec', dir);
        return openDataset('list', dir);
      }
      if (existsSync(join(dir, 'train.rec'))) return openDataset('rec', join(dir, 'train.rec'));
      if (existsSync(join(dir, 'label.txt'))) return openDataset('list', join(dir, 'label.txt'));
      if (existsSync(join(dir, 'file_list.txt'))) return openDataset('base64', join(dir, 'file_list.txt'));
      const subdirs = readdirSync(dir).filter((n) => statSync(join(dir, n)).isDirectory());
      if (subdirs.length > 0) return openDataset('folder', dir);
      throw new Error(`dataset: ${resolve(dir)} holds none of train.rec, label.txt, file_list.txt or class folders`);
    }
  }
}

async function joinGroup(options: TrainOptions): Promise<ProcessGroup> {
  if (options.group) return options.group;
  if (isProcessGroupInitialized()) return getProcessGroup();
  if (readDistributedEnv() !== null) return initProcessGroup();
  return ProcessGroup.local();
}

function scheduleOf(config: TrainConfig, derived: ReturnType<typeof derivedSchedule>): LrSchedule {
  const base = { baseLr: derived.scaledLr, warmupSteps: derived.warmupSteps };
  switch (config.lrScheduler) {
    case 'poly':
      return { ...base, decay: { kind: 'polynomial', totalSteps: Math.max(derived.totalSteps, derived.warmupSteps + 1), power: 2 } };
    case 'cosine':
      return { ...base, decay: { kind: 'cosine', totalSteps: Math.max(derived.totalSteps, derived.warmupSteps + 1) } };
    default:
      return { ...base, decay: { kind: 'piecewise', boundaries: config.stepBoundaries, factor: config.lrDecayFactor } };
  }
}

/** Images as uint8 NCHW (zero-copy) -> float32 normalized (x - 127.5) / 128. */
export function imagesToTensor(batch: ImageBatch): Tensor {
  return tidy(() => {
    const bytes = F.fromTypedArray(batch.images, batch.shape);
    const images = bytes.float();
    F.sub_(images, 127.5);
    F.div_(images, 128);
    return images;
  });
}

export class Trainer {
  readonly config: TrainConfig;
  readonly group: ProcessGroup;
  readonly backbone: Backbone;
  readonly head: PartialFC;
  readonly optimizer: SGD;
  readonly loader: DataLoader;
  readonly source: SampleSource;
  private readonly dataParallel: DataParallel | null;
  private readonly schedule: LrSchedule;
  private readonly derived: ReturnType<typeof derivedSchedule>;
  private readonly sharded: boolean;
  step = 0;

  private constructor(config: TrainConfig, group: ProcessGroup, source: SampleSource, backbone: Backbone) {
    this.config = config;
    this.group = group;
    this.source = source;
    this.backbone = backbone;
    if (source.numClasses > config.classNum) {
      throw new Error(`classNum is ${config.classNum} but the dataset has labels up to ${source.numClasses - 1}`);
    }
    const { margin, sharded } = marginForLossType(config.lossType, { scale: config.scale, ...(config.margins ? { margins: config.margins } : {}) });
    this.sharded = sharded;
    this.derived = derivedSchedule(config, group.worldSize, source.length);
    this.schedule = scheduleOf(config, this.derived);
    this.head = new PartialFC({
      embeddingSize: config.embSize,
      numClasses: config.classNum,
      sampleRate: config.sampleRatio,
      margin,
      // dist_*: one class shard per worker. Otherwise every worker holds all classes and the head
      // is data parallel like the backbone.
      group: sharded ? group : ProcessGroup.local(),
      seed: config.seed,
      ...(config.headChunkSize ? { chunkSize: config.headChunkSize } : {}),
      update: sharded ? 'fused' : 'dense',
      ...(sharded ? { fusedSgd: { lr: this.schedule.baseLr, momentum: config.momentum, weightDecay: config.weightDecay } } : {}),
      computeAccuracy: config.calcAcc,
      classStorage: config.classStorage,
    });
    const replicated = sharded ? backbone.parameters() : [...backbone.parameters(), ...this.head.parameters()];
    this.dataParallel = group.worldSize > 1 ? new DataParallel(replicated, { group }) : null;
    if (this.dataParallel && !sharded) {
      // DataParallel over a parameter list does not broadcast buffers: do the backbone's here.
      noGrad(() => {
        for (const buffer of backbone.buffers()) group.broadcast(buffer, 0).wait();
      });
    }
    this.optimizer = new SGD(replicated, { lr: this.schedule.baseLr, momentum: config.momentum, weightDecay: config.weightDecay });
    this.loader = new DataLoader(source, {
      batchSize: config.trainBatchSize,
      imageSize: config.imageSize,
      seed: config.seed,
      rank: group.rank,
      worldSize: group.worldSize,
      randomFlip: true,
      dropLastBatch: true,
      onBadSample: 'skip',
      prefetchBatches: config.prefetchBatches,
    });
  }

  static async create(config: TrainConfig, options: TrainOptions = {}): Promise<Trainer> {
    const group = await joinGroup(options);
    manualSeed(config.seed);
    const source = await openTrainingData(config.dataset, config.imageSize);
    const backbone = options.backboneFactory ? options.backboneFactory(config) : await backboneFromSpec(config);
    backbone.train();
    const trainer = new Trainer(config, group, source, backbone);
    if (config.resume !== null) trainer.resumeFrom(resolveCheckpoint(config.resume, config.checkpointDir));
    return trainer;
  }

  get totalSteps(): number {
    return this.derived.totalSteps;
  }
  get globalBatch(): number {
    return this.derived.globalBatch;
  }
  lrAt(step: number): number {
    return lrAt(this.schedule, step);
  }

  /** Restores everything a step depends on; the FC shards are re-split if the world size changed. */
  resumeFrom(dir: string): CheckpointMeta {
    const meta = readMeta(dir);
    if (meta.numClasses !== this.config.classNum || meta.embeddingSize !== this.config.embSize) {
      throw new Error(`resume: checkpoint ${dir} has ${meta.numClasses} classes x ${meta.embeddingSize}, the config ${this.config.classNum} x ${this.config.embSize}`);
    }
    tidy(() => {
      this.backbone.loadStateDict(loadSafetensors(join(dir, 'backbone.safetensors')));
      const optimizerFile = join(dir, 'optimizer.safetensors');
      if (existsSync(optimizerFile)) {
        this.optimizer.loadStateDict(unpackOptimizerState(loadSafetensors(optimizerFile), readSafetensorsMetadata(optimizerFile)));
      }
      // Streamed into the head's own tensors, converted to its class storage dtype tile by tile.
      if (this.sharded) loadShardInto(dir, meta, this.group.rank, this.group.worldSize, this.head.stateDict());
      else loadShardInto(dir, meta, 0, 1, this.head.stateDict());
    });
    this.step = meta.step;
    this.head.samplerStep = meta.samplerStep;
    this.loader.setState(meta.dataOrder);
    return meta;
  }

  /** Saves a checkpoint (every rank must call it). */
  saveCheckpoint(epoch: number): string {
    const rank = this.group.rank;
    return tidy(() => {
      const headState = this.head.stateDict();
      // A dist_* head has one shard per rank; a replicated head is saved once, as a single shard.
      const holdsShard = this.sharded || rank === 0;
      return saveCheckpoint(this.config.checkpointDir, {
        rank,
        shardCount: this.sharded ? this.group.worldSize : 1,
        meta: {
          numClasses: this.config.classNum,
          embeddingSize: this.config.embSize,
          step: this.step,
          epoch,
          dataOrder: this.loader.state,
          samplerStep: this.head.samplerStep,
          seed: this.config.seed,
          backbone: this.config.model,
          lossType: this.config.lossType,
          shardTensors: Object.keys(headState),
          classStorage: classStorageOf(this.head.weight.dtype) ?? 'float32',
          config: { ...this.config } as Record<string, unknown>,
        },
        ...(rank === 0 ? { backbone: this.backbone.stateDict(), optimizer: packOptimizerState(this.optimizer.stateDict()) } : {}),
        shard: holdsShard ? { index: this.sharded ? rank : 0, tensors: headState } : null,
        barrier: () => void this.group.barrier().wait(),
        keepLast: this.config.maxLastCheckpointNum,
      });
    });
  }

  /** One optimizer step on one batch; returns the loss and phase times. */
  trainStep(batch: ImageBatch): { loss: number; accuracy: number | null; phases: PhaseTimes } {
    const now = (): number => performance.now();
    const phases: PhaseTimes = { data: 0, forward: 0, head: 0, backward: 0, comm: 0, optimizer: 0 };
    const lr = this.lrAt(this.step);
    for (const group of this.optimizer.paramGroups) group.lr = lr;
    if (this.sharded) this.head.setFusedSgd({ lr, momentum: this.config.momentum, weightDecay: this.config.weightDecay });
    const result = tidy(() => {
      let t = now();
      const images = imagesToTensor(batch);
      const labels = F.tensor(batch.labels, { dtype: 'int64' });
      const embeddings = this.backbone.forward(images);
      phases.forward = now() - t;
      t = now();
      const { loss, accuracy } = this.head.forward(embeddings, labels);
      phases.head = now() - t;
      t = now();
      loss.backward();
      phases.backward = now() - t;
      t = now();
      this.dataParallel?.syncGradients();
      phases.comm = now() - t;
      t = now();
      if (this.config.gradClip !== null) clipGradNorm(this.backbone.parameters(), this.config.gradClip);
      this.optimizer.step();
      this.optimizer.zeroGrad();
      phases.optimizer = now() - t;
      return { loss: loss.item(), accuracy };
    });
    this.step++;
    return { ...result, phases };
  }

  /** Runs until totalSteps (or maxStepsThisRun) with logging, validation and checkpoints. */
  async train(options: TrainOptions = {}): Promise<TrainResult> {
    const config = this.config;
    const rank = this.group.rank;
    const outputDir = config.modelSaveDir;
    const metricsPath = rank === 0 ? join(outputDir, 'metrics.jsonl') : null;
    const stopAt = Math.min(this.totalSteps, options.maxStepsThisRun === undefined ? Infinity : this.step + options.maxStepsThisRun);
    // A run from step 0 starts a new metrics file (a resumed run appends to its predecessor's).
    if (metricsPath !== null && this.step === 0) rmSync(metricsPath, { force: true });
    const progress =
      rank === 0
        ? new ProgressReporter({ totalSteps: this.totalSteps, startStep: this.step, logPeriod: config.logPeriod, ...(metricsPath ? { metricsPath } : {}), ...(options.quiet ? { stream: nullStream() } : {}) })
        : null;
    if (rank === 0 && !options.quiet) {
      progress?.log(
        `training ${config.model} + ${config.lossType} head: ${config.classNum} classes over ${this.sharded ? this.group.worldSize : 1} shard(s), ` +
          `${this.group.worldSize} worker(s), global batch ${this.globalBatch}, ${this.totalSteps} steps, lr ${this.schedule.baseLr.toFixed(4)}`,
      );
    }
    const losses: number[] = [];
    const totals: PhaseTimes = { data: 0, forward: 0, head: 0, backward: 0, comm: 0, optimizer: 0 };
    let lastCheckpoint: string | null = null;
    let validation: TargetResult[] = [];
    let lastValidationStep = -1;
    let imagesSeen = 0;
    const started = performance.now();
    const stepsPerEpoch = Math.max(1, this.loader.batchesPerEpoch);
    const shouldValidate = (): boolean => config.withTest && config.valTargets.length > 0;

    while (this.step < stopAt) {
      const epoch = this.loader.state.epoch;
      let dataStart = performance.now();
      for await (const batch of this.loader) {
        const dataMs = performance.now() - dataStart;
        const stepStart = performance.now();
        const { loss, accuracy, phases } = this.trainStep(batch);
        const stepMs = performance.now() - stepStart;
        phases.data = dataMs;
        for (const key of Object.keys(totals) as (keyof PhaseTimes)[]) totals[key] += phases[key];
        losses.push(loss);
        if (!Number.isFinite(loss)) throw new Error(`step ${this.step}: the loss is ${loss} (diverged); lower the lr or check the data`);
        imagesSeen += batch.labels.length * this.group.worldSize;
        progress?.update({
          step: this.step,
          epoch,
          loss,
          lr: this.lrAt(this.step - 1),
          imagesPerSecond: (batch.labels.length * this.group.worldSize * 1000) / Math.max(stepMs + dataMs, 1e-3),
          accuracy,
        });
        const periodic = (period: number): boolean => period > 0 && this.step % period === 0;
        if (!options.noCheckpoints && periodic(config.checkpointPeriod)) lastCheckpoint = this.saveCheckpoint(epoch);
        if (shouldValidate() && periodic(config.testPeriod)) {
          validation = await this.validate(progress);
          lastValidationStep = this.step;
        }
        if (this.step >= stopAt) break;
        dataStart = performance.now();
      }
      const epochDone = this.loader.state.epoch > epoch || this.step >= this.totalSteps;
      if (epochDone && this.step < stopAt) {
        if (!options.noCheckpoints && config.checkpointPeriod === 0) lastCheckpoint = this.saveCheckpoint(epoch);
        if (shouldValidate() && config.testPeriod === 0) {
          validation = await this.validate(progress);
          lastValidationStep = this.step;
        }
      }
      if (stepsPerEpoch === 0) break;
    }
    const finalEpoch = this.loader.state.epoch;
    if (!options.noCheckpoints && (lastCheckpoint === null || !lastCheckpoint.endsWith(String(this.step).padStart(8, '0')))) {
      lastCheckpoint = this.saveCheckpoint(finalEpoch);
    }
    // The final model is always validated (unless the last periodic validation was at this very step).
    const finishedTraining = this.step >= this.totalSteps;
    if (finishedTraining && shouldValidate() && lastValidationStep !== this.step) validation = await this.validate(progress);
    const elapsed = (performance.now() - started) / 1000;
    let modelPath: string | null = null;
    let reportPath: string | null = null;
    if (rank === 0) {
      mkdirSync(outputDir, { recursive: true });
      modelPath = join(outputDir, 'backbone.safetensors');
      tidy(() =>
        saveSafetensors(modelPath as string, this.backbone.stateDict(), { model: config.model, embeddingSize: String(config.embSize), imageSize: String(config.imageSize) }),
      );
      progress?.finish();
      if (metricsPath && existsSync(metricsPath)) reportPath = await writeTrainingReport(metricsPath, join(outputDir, 'training-report.html'));
    }
    const stepsRun = losses.length;
    const mean = (v: number): number => (stepsRun === 0 ? 0 : v / stepsRun);
    return {
      rank,
      worldSize: this.group.worldSize,
      stepsRun,
      finalStep: this.step,
      losses,
      lastCheckpoint,
      modelPath,
      metricsPath,
      reportPath,
      validation,
      imagesPerSecond: elapsed > 0 ? imagesSeen / elapsed : 0,
      phases: {
        data: mean(totals.data),
        forward: mean(totals.forward),
        head: mean(totals.head),
        backward: mean(totals.backward),
        comm: mean(totals.comm),
        optimizer: mean(totals.optimizer),
      },
    };
  }

  /** Verification on the configured .bin targets (rank 0 computes; others wait at a barrier). */
  async validate(progress: ProgressReporter | null): Promise<TargetResult[]> {
    let results: TargetResult[] = [];
    if (this.group.rank === 0) {
      results = await tidyAsync(() => validateBackboneOnTargets(this.backbone, this.config.valTargets, {
        datasetDir: this.config.dataset.type === 'synthetic' ? null : this.config.dataset.path,
        batchSize: this.config.testBatchSize,
        imageSize: this.config.imageSize,
      }));
      progress?.logValidation(this.step, results);
    }
    this.group.barrier().wait();
    return results;
  }

  dispose(): void {
    this.dataParallel?.dispose?.();
    this.optimizer.dispose();
    this.head.dispose();
    this.backbone.dispose();
  }
}

function nullStream(): NodeJS.WritableStream {
  return { write: () => true, isTTY: false } as unknown as NodeJS.WritableStream;
}
