// PLSC's Entry API: setters (validated where they are called), then train(), test(), embed().
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch, type LaunchOptions } from '../distributed/launcher.js';
import { readDistributedEnv } from '../distributed/env.js';
import { loadSafetensors } from '../torch/safetensors.js';
import { tidy } from '../torch/scope.js';
import * as F from '../torch/ops.js';
import { noGrad } from '../torch/autograd.js';
import type { ClassStorage } from '../config/class-storage.js';
import type { Backbone } from '../models/index.js';
import { backboneFromSpec, type ConfigBackboneFactory } from '../checkpoint/backbone-spec.js';
import { decodeToRgb } from '../data/image.js';
import { resolveConfig, validateField, ConfigError, type DatasetSpec, type TrainConfig, type ValDatasetSpec } from '../config/train-config.js';
import { Trainer, type TrainResult } from './trainer.js';
import { validateBackboneOnTargets, type TargetResult } from '../eval/backbone-verification.js';

/** Serializable part of a TrainResult (what worker processes report back). */
export type TrainSummary = Omit<TrainResult, 'validation'> & { validation: Omit<TargetResult, 'detail'>[] };

export function summarize(result: TrainResult): TrainSummary {
  return { ...result, validation: result.validation.map(({ detail: _detail, ...rest }) => rest) };
}

export class Entry {
  private readonly settings: Record<string, unknown> = {};
  private modelFactory: ConfigBackboneFactory | null = null;
  private trainedBackbone: Backbone | null = null;

  private set<K extends keyof TrainConfig>(key: K, value: unknown): this {
    this.settings[key] = validateField(key, value);
    return this;
  }

  setClassNum(classNum: number): this {
    return this.set('classNum', classNum);
  }
  setTrainBatchSize(batchSize: number): this {
    return this.set('trainBatchSize', batchSize);
  }
  setTestBatchSize(batchSize: number): this {
    return this.set('testBatchSize', batchSize);
  }
  setEmbSize(embSize: number): this {
    return this.set('embSize', embSize);
  }
  /** softmax, arcface, cosface, dist_softmax, dist_arcface (default), dist_cosface, combined, dist_combined */
  setLossType(lossType: string): this {
    return this.set('lossType', lossType);
  }
  setMargins(m1: number, m2: number, m3: number): this {
    return this.set('margins', [m1, m2, m3]);
  }
  setScale(scale: number): this {
    return this.set('scale', scale);
  }
  setSampleRatio(ratio: number): this {
    return this.set('sampleRatio', ratio);
  }
  /**
   * A backbone: a registry name (iresnet18/34/50/100, mobilefacenet, feature-mlp), a module spec
   * 'path/to/file.js#factory' (works with several workers), or a factory function (one process).
   */
  setModel(model: string | ConfigBackboneFactory): this {
    if (typeof model === 'function') {
      this.modelFactory = model;
      return this.set('model', 'custom');
    }
    this.modelFactory = null;
    return this.set('model', model);
  }
  /** A PLSC dataset directory (label.txt + images/, train.rec, file_list.txt or class folders). */
  setDatasetDir(dir: string): this {
    return this.set('dataset', { type: 'auto', path: dir });
  }
  setDataset(spec: DatasetSpec): this {
    return this.set('dataset', spec);
  }
  setImageSize(size: number): this {
    return this.set('imageSize', size);
  }
  setTrainEpochs(epochs: number): this {
    return this.set('trainEpochs', epochs);
  }
  setTrainSteps(steps: number): this {
    return this.set('trainSteps', steps);
  }
  setWarmupEpochs(epochs: number): this {
    return this.set('warmupEpochs', epochs);
  }
  setStepBoundaries(boundaries: number[]): this {
    return this.set('stepBoundaries', boundaries);
  }
  setLrDecayFactor(factor: number): this {
    return this.set('lrDecayFactor', factor);
  }
  setLrScheduler(kind: 'piecewise' | 'poly' | 'cosine'): this {
    return this.set('lrScheduler', kind);
  }
  /** Learning rate per global batch of 512 (scaled linearly with the actual global batch). */
  setLr(lr: number): this {
    return this.set('lr', lr);
  }
  /** SGD settings (momentum 0.9, weight decay 5e-4 by default). */
  setOptimizer(options: { momentum?: number; weightDecay?: number; gradClip?: number | null }): this {
    if (options.momentum !== undefined) this.set('momentum', options.momentum);
    if (options.weightDecay !== undefined) this.set('weightDecay', options.weightDecay);
    if (options.gradClip !== undefined) this.set('gradClip', options.gradClip);
    return this;
  }
  setLogPeriod(steps: number): this {
    return this.set('logPeriod', steps);
  }
  setValTargets(targets: string[]): this {
    return this.set('valTargets', targets);
  }
  setWithTest(withTest: boolean): this {
    return this.set('withTest', withTest);
  }
  setTestPeriod(steps: number): this {
    return this.set('testPeriod', steps);
  }
  setCheckpointDir(dir: string): this {
    return this.set('checkpointDir', dir);
  }
  setCheckpointPeriod(steps: number): this {
    return this.set('checkpointPeriod', steps);
  }
  setModelSaveDir(dir: string): this {
    return this.set('modelSaveDir', dir);
  }
  setMaxLastCheckpointNum(count: number): this {
    return this.set('maxLastCheckpointNum', count);
  }
  setCalcAcc(calcAcc: boolean): this {
    return this.set('calcAcc', calcAcc);
  }
  setSeed(seed: number): this {
    return this.set('seed', seed);
  }
  /** Worker processes to start on this machine (ignored under plsc launch / torchrun, which decide). */
  setWorkers(workers: number): this {
    return this.set('workers', workers);
  }
  /**
   * With setWorkers(n > 1): after a worker fails, stop the workers and start them again up to this
   * many times; each restart resumes from the newest verified checkpoint in the checkpoint dir.
   */
  setMaxRestarts(restarts: number): this {
    return this.set('maxRestarts', restarts);
  }
  /** Continue from a checkpoint directory, or 'latest' in the checkpoint dir. */
  setResume(checkpoint: string | null): this {
    return this.set('resume', checkpoint);
  }
  setHeadChunkSize(classes: number | null): this {
    return this.set('headChunkSize', classes);
  }
  /** A sample that cannot be read or decoded: 'skip' it (default; reported, counted) or 'fail' the run. */
  setBadSamples(mode: 'fail' | 'skip'): this {
    return this.set('badSamples', mode);
  }
  /** With badSamples 'skip': stop once more than this fraction of a worker's epoch is bad (default 0.001). */
  setMaxBadSampleFraction(fraction: number): this {
    return this.set('maxBadSampleFraction', fraction);
  }
  /** Seconds without a finished step after which training fails (0: never). */
  setStallTimeout(seconds: number): this {
    return this.set('stallTimeout', seconds);
  }
  /** Train for a wall-clock budget ("10m", "2h", "1h30m" or seconds) instead of a step count. */
  setTrainTime(budget: string | number | null): this {
    return this.set('trainTime', budget);
  }
  /** Labelled held-out datasets scored by top-1/top-5 classification accuracy at each validation. */
  setValDatasets(datasets: Array<string | { name?: string; path: string; format?: ValDatasetSpec['format'] }>): this {
    return this.set('valDatasets', datasets);
  }
  /** Store the head's class weights and momentum as float32 (default), bfloat16 or float16. */
  setClassStorage(storage: ClassStorage): this {
    return this.set('classStorage', storage);
  }

  /** The complete, validated configuration. */
  config(): TrainConfig {
    return resolveConfig(this.settings);
  }

  /**
   * Trains. Under `plsc launch` or a torchrun-style environment this process joins the group; else with
   * setWorkers(n > 1) it starts n local workers (like torch.multiprocessing.spawn) and waits for them.
   */
  async train(): Promise<TrainSummary> {
    const config = this.config();
    if (config.workers > 1 && readDistributedEnv() === null) return this.trainInWorkers(config);
    const trainer = await Trainer.create(config, this.modelFactory ? { backboneFactory: this.modelFactory } : {});
    const result = await trainer.train();
    this.trainedBackbone = trainer.backbone;
    return summarize(result);
  }

  private async trainInWorkers(config: TrainConfig): Promise<TrainSummary> {
    if (this.modelFactory !== null) {
      throw new ConfigError('model', 'a model given as a function cannot be sent to worker processes: use a module spec "file.js#factory" with setWorkers(n)');
    }
    return trainInLocalWorkers(config);
  }

  /** The trained backbone: from this process's train(), else loaded from modelSaveDir. */
  async backbone(): Promise<Backbone> {
    if (this.trainedBackbone) return this.trainedBackbone;
    const config = this.config();
    const backbone = this.modelFactory ? this.modelFactory(config) : await backboneFromSpec(config);
    tidy(() => backbone.loadStateDict(loadSafetensors(join(config.modelSaveDir, 'backbone.safetensors'))));
    backbone.eval();
    this.trainedBackbone = backbone;
    return backbone;
  }

  /** Verification on the configured targets (or the given ones). */
  async test(targets?: string[]): Promise<Omit<TargetResult, 'detail'>[]> {
    const config = this.config();
    const results = await validateBackboneOnTargets(await this.backbone(), targets ?? config.valTargets, {
      datasetDir: config.dataset.type === 'synthetic' ? null : config.dataset.path,
      batchSize: config.testBatchSize,
      imageSize: config.imageSize,
    });
    return results.map(({ detail: _detail, ...rest }) => rest);
  }

  /** L2-normalized embeddings of encoded images (JPEG/PNG/BMP bytes), one Float32Array each. */
  async embed(images: Uint8Array[]): Promise<Float32Array[]> {
    const config = this.config();
    const backbone = await this.backbone();
    const size = config.imageSize;
    const pixels = await Promise.all(images.map((bytes) => decodeToRgb(bytes, size, size)));
    const wasTraining = backbone.training;
    backbone.eval();
    try {
      return tidy(() =>
        noGrad(() => {
          const batch = F.stack(pixels.map((p) => F.permute(F.reshape(F.fromTypedArray(p), [size, size, 3]), [2, 0, 1])));
          const input = F.div(F.sub(batch.float(), 127.5), 128);
          const embeddings = F.normalize(backbone.forward(input), 2, 1);
          const flat = embeddings.dataSync() as Float32Array;
          const dim = embeddings.shape[1] as number;
          return images.map((_, i) => flat.slice(i * dim, (i + 1) * dim));
        }),
      );
    } finally {
      backbone.train(wasTraining);
    }
  }
}

/** Local workers were stopped by a signal to this process (`exitCode`: 128 + its number, 130 for SIGINT). */
export class TrainingStopped extends Error {
  constructor(
    readonly signal: NodeJS.Signals,
    readonly exitCode: number,
  ) {
    super(`training stopped by ${signal}${signal === 'SIGINT' ? ' (the workers saved a checkpoint of their last step)' : ''}`);
    this.name = 'TrainingStopped';
  }
}

export interface LocalWorkersOptions {
  /** Receives every output line of every worker (default: printed with a `[rank R]` prefix). */
  onOutput?: LaunchOptions['onOutput'];
  /** Aborting stops the workers (SIGTERM, then SIGKILL). */
  signal?: AbortSignal;
}

/**
 * Trains `config` in local worker processes started like torch.multiprocessing.spawn (each joins the
 * group from a torchrun-style environment) and returns rank 0's summary. Used by Entry.train(),
 * `plsc train --nproc N` and `plsc demo`.
 */
export async function trainInLocalWorkers(config: TrainConfig, options: LocalWorkersOptions = {}): Promise<TrainSummary> {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-train-'));
  const configPath = join(dir, 'config.json');
  const resultPath = join(dir, 'result.json');
  writeFileSync(configPath, JSON.stringify(config));
  try {
    const worker = fileURLToPath(new URL('./worker.js', import.meta.url));
    const outcome = await launch({
      nprocPerNode: config.workers,
      maxRestarts: config.maxRestarts,
      command: worker,
      env: { PLSC_TRAIN_CONFIG: configPath, PLSC_TRAIN_RESULT: resultPath },
      ...(options.onOutput ? { onOutput: options.onOutput } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (outcome.aborted !== null) throw new TrainingStopped(outcome.aborted, outcome.exitCode);
    if (outcome.exitCode !== 0) {
      const failure = outcome.failure;
      const restarts = outcome.restarts.length > 0 ? ` after ${outcome.restarts.length} restart${outcome.restarts.length > 1 ? 's' : ''} (no restarts left)` : '';
      throw new Error(`training failed${failure ? ` on rank ${failure.rank} (exit ${failure.exitCode ?? failure.signal})` : ''}${restarts}`);
    }
    return JSON.parse(readFileSync(resultPath, 'utf8')) as TrainSummary;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
