// The training loop of one worker: data-parallel backbone + model-parallel head, SGD, lr schedule,
// periodic validation, checkpoints that resume exactly and re-shard, progress and metrics.
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor } from '../torch/tensor.js';
import * as F from '../torch/ops.js';
import { tidy, tidyAsync } from '../torch/scope.js';
import { manualSeed } from '../torch/native.js';
import { noGrad } from '../torch/autograd.js';
import { SGD } from '../torch/optim/sgd.js';
import { clipGradNorm } from '../torch/optim/clip-grad.js';
import { lrAt, type LrSchedule } from '../torch/optim/lr-scheduler.js';
import { packOptimizerState, unpackOptimizerState } from '../torch/optim/checkpoint.js';
import { readSafetensorsMetadata } from '../torch/safetensors.js';
import { ProcessGroup, initProcessGroup, isProcessGroupInitialized, getProcessGroup } from '../distributed/process-group.js';
import { readDistributedEnv } from '../distributed/env.js';
import { DataParallel } from '../distributed/data-parallel.js';
import { PartialFC } from '../head/partial-fc.js';
import { headSettings } from './config-adapter.js';
import { DataLoader, type BadSampleReport, type ImageBatch } from '../data/loader.js';
import { openTrainingData } from '../data/dataset-spec.js';
import type { SampleSource } from '../data/source.js';
import type { Backbone } from '../models/index.js';
import { backboneFromSpec } from '../checkpoint/backbone-spec.js';
import { derivedSchedule, type TrainConfig } from '../config/train-config.js';
import { loadShardInto, resolveCheckpoint, saveCheckpoint } from './checkpoint.js';
import { readMeta, type CheckpointDataInfo, type CheckpointMeta } from '../checkpoint/format.js';
import { classStorageOf } from '../config/class-storage.js';
import { BadSampleMonitor, formatEpochCount } from './bad-samples.js';
import { checkLabelsFitClassNum, checkResumeData, checkStepsPerEpoch, checkpointDataInfo } from './dataset-checks.js';
import { ProgressReporter, formatDuration, type ProgressStream } from './progress.js';
import { validateBackboneOnTargets, type TargetResult } from '../eval/backbone-verification.js';
import { claimOutputDirectories } from './output-claim.js';
import type { DirectoryLock } from './checkpoint-lock.js';
import { loadVerifiedCheckpointFile } from '../checkpoint/integrity.js';
import { collapsedEmbeddingsWarning } from '../eval/collapse.js';
import { RunGuard } from './run-guard.js';
import { classifyValDataset, openValDataset, type ClassificationTargetResult } from './classification-validation.js';
import { datasetStats, formatRunPlan } from './run-summary.js';
import { ThroughputMeter } from './throughput.js';
import { STEPS_BEFORE_ESTIMATE, TimeBudget } from './time-budget.js';
import { parseDuration } from '../config/duration.js';
import type { TrainEndState, TrainEpochEndState, TrainHook, TrainStepState } from './hooks/train-hook.js';
import { ProgressLogger } from './hooks/progress-logger.js';
import { CheckpointSaver } from './hooks/checkpoint-saver.js';
import { PeriodicValidation } from './hooks/periodic-validation.js';
import { FinalModelWriter } from './hooks/final-model.js';
import { RunReport } from './hooks/run-report.js';
import { resumeAfterRestart } from './restart-resume.js';
import { describeWorldSizeChange, worldSizeChange } from './world-size-change.js';

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
  /** Classification accuracy on the valDatasets at the last validation. */
  classification: ClassificationTargetResult[];
  imagesPerSecond: number;
  /** Mean ms per step of each phase. */
  phases: PhaseTimes;
  /** Samples this worker skipped because they could not be read or decoded, and the first few. */
  badSamples: { skipped: number; first: BadSampleReport[] };
  /** Stopped early by SIGINT: a checkpoint of the last step was saved, the final model was not. */
  interrupted: boolean;
  /** The reason a training hook gave when it stopped the run (TrainStepState.requestStop), else null. */
  stoppedBy: string | null;
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
  /** Where rank 0's progress and run summary go (default process.stderr; quiet wins). */
  logStream?: ProgressStream;
  /** Monotonic milliseconds for the trainTime budget (tests drive time with it). Default performance.now. */
  clock?: () => number;
  /** Callbacks run after the built-in ones (progress, checkpoints, validation, final model, report) at every step, epoch end and the end. */
  hooks?: readonly TrainHook[];
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
  private readonly dataInfo: CheckpointDataInfo;
  private badSampleMonitor: BadSampleMonitor | null = null;
  /** Locks of checkpointDir and modelSaveDir (rank 0 holds them; [] on other ranks); null when released. */
  private outputLocks: DirectoryLock[] | null = null;
  /** Steps the schedule spans: the config's, or the latest estimate under a trainTime budget. */
  private plannedSteps: number;
  step = 0;
  /** Training seconds of the runs before this one (from the checkpoint resumed), and the running run's clock. */
  private trainSecondsBefore = 0;
  private runClock: { clock: () => number; startedAt: number } | null = null;

  private constructor(config: TrainConfig, group: ProcessGroup, source: SampleSource, backbone: Backbone) {
    this.config = config;
    this.group = group;
    this.source = source;
    this.backbone = backbone;
    const head = headSettings(config);
    checkLabelsFitClassNum(source, head.numClasses);
    checkStepsPerEpoch(source, config.dataset, config.trainBatchSize, group.worldSize);
    this.dataInfo = checkpointDataInfo(source, config.imageSize);
    const sharded = head.sharded;
    this.sharded = sharded;
    this.derived = derivedSchedule(config, group.worldSize, source.length);
    this.plannedSteps = this.derived.totalSteps;
    this.schedule = scheduleOf(config, this.derived);
    this.head = new PartialFC({
      embeddingSize: head.embeddingSize,
      numClasses: head.numClasses,
      sampleRate: head.sampleRate,
      margin: head.margin,
      // dist_*: one class shard per worker. Otherwise every worker holds all classes and the head
      // is data parallel like the backbone.
      group: sharded ? group : ProcessGroup.local(),
      seed: head.seed,
      ...(head.chunkSize ? { chunkSize: head.chunkSize } : {}),
      update: sharded ? 'fused' : 'dense',
      ...(sharded ? { fusedSgd: { lr: this.schedule.baseLr, momentum: config.momentum, weightDecay: config.weightDecay } } : {}),
      computeAccuracy: head.computeAccuracy,
      classStorage: head.classStorage,
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
      onSkip: (report) => this.badSampleMonitor?.record(report),
      prefetchBatches: config.prefetchBatches,
    });
  }

  static async create(config: TrainConfig, options: TrainOptions = {}): Promise<Trainer> {
    const group = await joinGroup(options);
    // Before anything is written or `resume: latest` is resolved: writable output directories, owned by this job.
    const locks = claimOutputDirectories(config, group);
    try {
      manualSeed(config.seed);
      const source = await openTrainingData(config.dataset, config.imageSize);
      const backbone = options.backboneFactory ? options.backboneFactory(config) : await backboneFromSpec(config);
      backbone.train();
      const trainer = new Trainer(config, group, source, backbone);
      trainer.outputLocks = locks;
      // A restarted group (TORCHELASTIC_RESTART_COUNT > 0) resumes from its newest verified checkpoint.
      const resume = resumeAfterRestart(config.checkpointDir, config.resume, group);
      if (resume !== null) {
        const meta = trainer.resumeFrom(resolveCheckpoint(resume, config.checkpointDir));
        const change = worldSizeChange(config, meta, group.worldSize, source.length);
        if (change !== null && group.rank === 0 && options.quiet !== true) console.error(describeWorldSizeChange(change));
      }
      return trainer;
    } catch (error) {
      for (const lock of locks) lock.release();
      throw error;
    }
  }

  get totalSteps(): number {
    return this.plannedSteps;
  }

  /** Under a time budget: the steps the schedule spans now (poly/cosine decay ends there). */
  private replanSteps(totalSteps: number): void {
    const planned = Math.max(totalSteps, this.step);
    this.plannedSteps = this.config.trainSteps === null ? planned : Math.min(planned, this.config.trainSteps);
    const decay = this.schedule.decay;
    if (decay.kind === 'polynomial' || decay.kind === 'cosine') decay.totalSteps = Math.max(this.plannedSteps, this.derived.warmupSteps + 1);
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
    if (meta.numClasses !== this.head.numClasses || meta.embeddingSize !== this.head.embeddingSize) {
      throw new Error(`resume: checkpoint ${dir} has ${meta.numClasses} classes x ${meta.embeddingSize}, the config ${this.head.numClasses} x ${this.head.embeddingSize}`);
    }
    checkResumeData(dir, meta, this.dataInfo);
    tidy(() => {
      this.backbone.loadStateDict(loadVerifiedCheckpointFile(dir, meta, 'backbone.safetensors'));
      const optimizerFile = join(dir, 'optimizer.safetensors');
      if (existsSync(optimizerFile)) {
        this.optimizer.loadStateDict(unpackOptimizerState(loadVerifiedCheckpointFile(dir, meta, 'optimizer.safetensors'), readSafetensorsMetadata(optimizerFile)));
      }
      // Streamed into the head's own tensors, converted to its class storage dtype tile by tile.
      if (this.sharded) loadShardInto(dir, meta, this.group.rank, this.group.worldSize, this.head.stateDict());
      else loadShardInto(dir, meta, 0, 1, this.head.stateDict());
    });
    this.step = meta.step;
    this.trainSecondsBefore = meta.trainSeconds ?? 0;
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
          numClasses: this.head.numClasses,
          embeddingSize: this.head.embeddingSize,
          workers: this.group.worldSize,
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
          trainSeconds: this.trainSeconds(),
          data: this.dataInfo,
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
    // One schedule for the backbone's SGD and the sharded head's row-sparse SGD.
    for (const optimizer of [this.optimizer, this.head.optimizer]) for (const group of optimizer?.paramGroups ?? []) group.lr = lr;
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

  /**
   * Runs until totalSteps (or maxStepsThisRun): the step loop, with logging, checkpoints, validation,
   * the final model and the report as built-in hooks (src/train/hooks), then options.hooks. Fails when
   * no step finishes for config.stallTimeout seconds; a first SIGINT stops after the current step
   * with a checkpoint (result.interrupted), a second exits the process at once.
   */
  async train(options: TrainOptions = {}): Promise<TrainResult> {
    // Every rank calls this (the claim is collective); the directories are released when the run ends, however it ends.
    this.outputLocks ??= claimOutputDirectories(this.config, this.group);
    const guard = new RunGuard(this.group, this.config.stallTimeout);
    try {
      return await this.trainGuarded(options, guard);
    } finally {
      this.trainSecondsBefore = this.trainSeconds();
      this.runClock = null;
      guard.dispose();
      this.releaseOutputLocks();
    }
  }

  /** Wall-clock seconds of training so far: earlier runs (resumed from) plus the running one. */
  trainSeconds(): number {
    const run = this.runClock;
    return this.trainSecondsBefore + (run === null ? 0 : (run.clock() - run.startedAt) / 1000);
  }

  private releaseOutputLocks(): void {
    for (const lock of this.outputLocks ?? []) lock.release();
    this.outputLocks = null;
  }

  private async trainGuarded(options: TrainOptions, guard: RunGuard): Promise<TrainResult> {
    const config = this.config;
    const rank = this.group.rank;
    const outputDir = config.modelSaveDir;
    const metricsPath = rank === 0 ? join(outputDir, 'metrics.jsonl') : null;
    const clock = options.clock ?? (() => performance.now());
    // The budget reads the training's seconds: a resumed run continues its checkpoint's budget.
    const budget = config.trainTime === null ? null : new TimeBudget(parseDuration(config.trainTime), () => this.trainSeconds());
    // A time budget stops the run by the clock; trainSteps, when also set, still caps it.
    const stepCap = budget === null ? this.totalSteps : (config.trainSteps ?? Infinity);
    const stopAt = Math.min(stepCap, options.maxStepsThisRun === undefined ? Infinity : this.step + options.maxStepsThisRun);
    // A run from step 0 starts a new metrics file (a resumed run appends to its predecessor's).
    if (metricsPath !== null && this.step === 0) rmSync(metricsPath, { force: true });
    const progress =
      rank === 0
        ? new ProgressReporter({ totalSteps: this.totalSteps, startStep: this.step, logPeriod: config.logPeriod, ...(metricsPath ? { metricsPath } : {}), ...(options.quiet ? { stream: nullStream() } : options.logStream ? { stream: options.logStream } : {}) })
        : null;
    if (rank === 0 && !options.quiet) for (const line of this.runPlan(budget)) progress?.log(line);
    const builtIn = this.builtInHooks(options, progress, metricsPath);
    const hooks: TrainHook[] = [...builtIn.list, ...(options.hooks ?? [])];
    const losses: number[] = [];
    const totals: PhaseTimes = { data: 0, forward: 0, head: 0, backward: 0, comm: 0, optimizer: 0 };
    const meter = new ThroughputMeter();
    const stepsAtStart = this.step;
    let announcedSteps = 0;
    this.runClock = { clock, startedAt: clock() };
    // A resumed run whose budget is already spent trains no further step (rank 0's clock decides, as below).
    let budgetSpent = budget !== null && this.agreeOnStop(budget.spent());
    if (budget !== null && this.trainSecondsBefore > 0) progress?.log(`time budget ${formatDuration(budget.seconds)}: ${formatDuration(this.trainSecondsBefore)} spent before this run, ${formatDuration(budget.remainingSeconds())} left`);
    let imagesSeen = 0;
    const started = performance.now();
    const stepsPerEpoch = Math.max(1, this.loader.batchesPerEpoch);
    const warn = (line: string): void => {
      if (options.quiet) return;
      if (progress !== null) progress.log(line);
      else process.stderr.write(`${line}\n`);
    };
    const badSamples = new BadSampleMonitor({
      mode: config.badSamples,
      maxFraction: config.maxBadSampleFraction,
      samplesPerEpoch: this.loader.batchesPerEpoch * this.loader.batchSize,
      rank,
      worldSize: this.group.worldSize,
      print: warn,
    });
    this.badSampleMonitor = badSamples;
    let interrupted = false;
    // This worker's hooks' stop request, and whether the workers agreed to stop on one.
    let stopReason: string | null = null;
    let stoppedByHook = false;

    while (this.step < stopAt && !budgetSpent && !interrupted && !stoppedByHook) {
      const epoch = this.loader.state.epoch;
      let dataStart = performance.now();
      let clockAtData = clock();
      for await (const batch of this.loader) {
        const dataMs = performance.now() - dataStart;
        badSamples.afterBatch(batch);
        const stepStart = performance.now();
        const { loss, accuracy, phases } = this.trainStep(batch);
        const stepMs = performance.now() - stepStart;
        phases.data = dataMs;
        for (const key of Object.keys(totals) as (keyof PhaseTimes)[]) totals[key] += phases[key];
        losses.push(loss);
        if (!Number.isFinite(loss)) throw new Error(`step ${this.step}: the loss is ${loss} (diverged); lower the lr or check the data`);
        imagesSeen += batch.labels.length * this.group.worldSize;
        // The first step (one-off allocations) stays out of the speed measurements.
        if (this.step - stepsAtStart > 1) meter.record(batch.labels.length * this.group.worldSize, (clock() - clockAtData) / 1000);
        if (budget !== null) {
          // All workers must stop at the same step: rank 0's clock decides.
          budgetSpent = this.agreeOnStop(budget.spent());
          const done = this.step - stepsAtStart;
          if (budgetSpent) {
            this.replanSteps(this.step);
            progress?.setTotalSteps(this.step);
          } else if (done === STEPS_BEFORE_ESTIMATE + 1 || (done > STEPS_BEFORE_ESTIMATE && this.step % config.logPeriod === 0)) {
            this.replanSteps(budget.estimateTotalSteps(this.step, meter.medianSecondsPerStep));
            progress?.setTotalSteps(this.totalSteps);
            // Printed when first known and whenever it moves by more than 2%.
            if (Math.abs(this.totalSteps - announcedSteps) > 0.02 * announcedSteps) {
              announcedSteps = this.totalSteps;
              progress?.log(budget.describe(this.totalSteps, meter.medianSecondsPerStep));
            }
          }
        }
        const stepState: TrainStepState = {
          step: this.step,
          epoch,
          loss,
          lr: this.lrAt(this.step - 1),
          accuracy,
          imagesPerSecond: meter.steps > 0 ? meter.imagesPerSecond : (batch.labels.length * this.group.worldSize * 1000) / Math.max(stepMs + dataMs, 1e-3),
          totalSteps: this.totalSteps,
          rank,
          worldSize: this.group.worldSize,
          requestStop: (reason: string) => {
            stopReason ??= reason;
          },
        };
        for (const hook of hooks) await hook.onStepEnd?.(stepState);
        guard.progress(this.step);
        // (Every rank has the same step, stopAt and budget decision, so all of them take part in stopRequested.)
        if (this.step < stopAt && !budgetSpent) {
          const stop = guard.stopRequested(stopReason !== null);
          if (stop === 'interrupt') {
            interrupted = true;
            progress?.log(`interrupted: stopping after step ${this.step}`);
            break;
          }
          if (stop === 'hook') {
            stoppedByHook = true;
            stopReason ??= 'a training hook on another worker asked to stop';
            progress?.log(`stopping after step ${this.step}: ${stopReason}`);
            break;
          }
        }
        if (this.step >= stopAt || budgetSpent) break;
        dataStart = performance.now();
        clockAtData = clock();
      }
      this.reportBadSamples(badSamples, epoch, progress);
      const epochDone = this.loader.state.epoch > epoch || this.step >= this.totalSteps;
      if (epochDone) {
        const epochState: TrainEpochEndState = { epoch, step: this.step, last: this.step >= stopAt || interrupted || stoppedByHook };
        for (const hook of hooks) await hook.onEpochEnd?.(epochState);
      }
      if (stepsPerEpoch === 0) break;
    }
    const endState: TrainEndState = {
      step: this.step,
      epoch: this.loader.state.epoch,
      interrupted,
      finished: this.step >= this.totalSteps || budgetSpent || stoppedByHook,
      stoppedBy: stoppedByHook ? stopReason : null,
    };
    for (const hook of hooks) {
      await hook.onTrainEnd?.(endState);
      guard.progress(this.step);
    }
    const elapsed = (performance.now() - started) / 1000;
    const stepsRun = losses.length;
    const mean = (v: number): number => (stepsRun === 0 ? 0 : v / stepsRun);
    return {
      rank,
      worldSize: this.group.worldSize,
      stepsRun,
      finalStep: this.step,
      losses,
      lastCheckpoint: builtIn.checkpoints?.lastCheckpoint ?? null,
      modelPath: builtIn.model?.modelPath ?? null,
      metricsPath,
      reportPath: builtIn.report?.reportPath ?? null,
      validation: builtIn.validation?.latest.targets ?? [],
      classification: builtIn.validation?.latest.classification ?? [],
      imagesPerSecond: elapsed > 0 ? imagesSeen / elapsed : 0,
      phases: {
        data: mean(totals.data),
        forward: mean(totals.forward),
        head: mean(totals.head),
        backward: mean(totals.backward),
        comm: mean(totals.comm),
        optimizer: mean(totals.optimizer),
      },
      badSamples: badSamples.totals,
      interrupted,
      stoppedBy: endState.stoppedBy,
    };
  }

  /**
   * The built-in hooks in the order they run: progress (rank 0), checkpoints and validation (every
   * rank: both are collective), then the final model and the run report (rank 0).
   */
  private builtInHooks(options: TrainOptions, progress: ProgressReporter | null, metricsPath: string | null) {
    const config = this.config;
    const progressLogger = progress === null ? null : new ProgressLogger(progress);
    const checkpoints = options.noCheckpoints ? null : new CheckpointSaver(config.checkpointPeriod, (epoch) => this.saveCheckpoint(epoch));
    const validates = config.withTest && (config.valTargets.length > 0 || config.valDatasets.length > 0);
    const validation = validates ? new PeriodicValidation(config.testPeriod, () => this.validate(progress)) : null;
    const model = this.group.rank === 0 ? new FinalModelWriter(config.modelSaveDir, this.backbone, { model: config.model, embeddingSize: String(this.head.embeddingSize), imageSize: String(config.imageSize) }) : null;
    const report = progress === null ? null : new RunReport(progress, metricsPath, config.modelSaveDir);
    const list: TrainHook[] = [];
    for (const hook of [progressLogger, checkpoints, validation, model, report]) if (hook !== null) list.push(hook);
    return { list, checkpoints, validation, model, report };
  }

  /** The epoch's bad-sample count summed over the workers (every rank calls this), logged and recorded by rank 0. */
  private reportBadSamples(monitor: BadSampleMonitor, epoch: number, progress: ProgressReporter | null): void {
    const local = monitor.epochCount(epoch);
    let [bad, samples] = [local.bad, local.samples];
    if (this.group.worldSize > 1) {
      [bad, samples] = tidy(() => {
        const counts = F.tensor(Float64Array.of(bad, samples));
        this.group.allReduce(counts, 'sum').wait();
        return Array.from(counts.dataSync() as Float64Array);
      }) as [number, number];
    }
    if (bad === 0) return;
    const count = { epoch, bad, samples };
    progress?.logBadSamples(formatEpochCount(count, this.group.worldSize), { step: this.step, ...count, first: monitor.epochReports(epoch) });
  }

  /**
   * Verification on the configured .bin targets (rank 0 computes; others wait at a barrier), then
   * classification accuracy on the valDatasets (every worker ranks against its own FC shard).
   */
  async validate(progress: ProgressReporter | null): Promise<{ targets: TargetResult[]; classification: ClassificationTargetResult[] }> {
    let results: TargetResult[] = [];
    if (this.group.rank === 0 && this.config.valTargets.length > 0) {
      results = await tidyAsync(() => validateBackboneOnTargets(this.backbone, this.config.valTargets, {
        datasetDir: this.config.dataset.type === 'synthetic' ? null : this.config.dataset.path,
        batchSize: this.config.testBatchSize,
        imageSize: this.config.imageSize,
      }));
      progress?.logValidation(this.step, results);
      for (const warning of results.map((r) => collapsedEmbeddingsWarning(r.detail, r.target))) if (warning) progress?.log(warning);
    }
    this.group.barrier().wait();
    const classification: ClassificationTargetResult[] = [];
    const layout = this.head.layout;
    for (const spec of this.config.valDatasets) {
      const source = await openValDataset(spec, (path) => openTrainingData({ type: 'auto', path }, this.config.imageSize));
      try {
        const centers = { weight: this.head.weight, firstClass: this.sharded ? layout.classOffset : 0, classes: this.head.numClasses };
        classification.push(await classifyValDataset(this.backbone, source, spec, centers, this.sharded ? this.group : ProcessGroup.local(), { batchSize: this.config.testBatchSize }));
      } finally {
        await source.close?.();
      }
    }
    if (classification.length > 0) progress?.logClassification(this.step, classification);
    return { targets: results, classification };
  }

  /** Rank 0's decision, broadcast (so every worker stops at the same step). */
  private agreeOnStop(stop: boolean): boolean {
    if (this.group.worldSize === 1) return stop;
    return tidy(() => this.group.broadcast(F.tensor([stop ? 1 : 0]), 0).wait().item() === 1);
  }

  /** The start-of-run summary lines. */
  private runPlan(budget: TimeBudget | null): string[] {
    const headState = [...this.head.parameters(), ...this.head.buffers()];
    const elementBytes = (t: Tensor): number => (t.dtype === 'float64' || t.dtype === 'int64' ? 8 : t.dtype === 'float16' || t.dtype === 'bfloat16' ? 2 : 4);
    let headBytes = headState.reduce((sum, t) => sum + t.numel * elementBytes(t), 0);
    // A replicated (non-dist) head is stepped by the SGD optimizer, whose momentum doubles its parameters.
    if (!this.sharded && this.config.momentum > 0) headBytes += this.head.parameters().reduce((sum, t) => sum + t.numel * elementBytes(t), 0);
    const spec = this.config.dataset;
    return formatRunPlan({
      model: this.config.model,
      lossType: this.config.lossType,
      datasetName: spec.type === 'synthetic' ? `synthetic ${spec.numClasses} x ${spec.imagesPerClass}` : spec.path,
      dataset: datasetStats(this.source),
      headClasses: this.head.numClasses,
      workers: this.group.worldSize,
      batchPerWorker: this.config.trainBatchSize,
      globalBatch: this.globalBatch,
      stepsPerEpoch: this.derived.stepsPerEpoch,
      totalSteps: this.totalSteps,
      budgetSeconds: budget === null ? null : budget.seconds,
      lr: this.config.lr,
      scaledLr: this.schedule.baseLr,
      lrScheduler: this.config.lrScheduler,
      warmupSteps: this.derived.warmupSteps,
      headShards: this.sharded ? this.group.worldSize : 1,
      classesPerWorker: this.head.layout.numLocalClasses,
      headBytesPerWorker: headBytes,
      sampleRatio: this.head.sampleRate,
    });
  }

  dispose(): void {
    this.releaseOutputLocks();
    this.dataParallel?.dispose?.();
    this.optimizer.dispose();
    this.head.dispose();
    this.backbone.dispose();
  }
}

function nullStream(): NodeJS.WritableStream {
  return { write: () => true, isTTY: false } as unknown as NodeJS.WritableStream;
}
