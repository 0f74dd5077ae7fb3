// Training configuration: PLSC's settings (camelCase), their defaults, validation that names the
// field, YAML files and `key=value` overrides.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { LOSS_TYPES } from '../head/margin.js';
import { unknownSettingMessage } from './suggest.js';
import { parseDuration } from './duration.js';
import { CLASS_STORAGES, type ClassStorage } from './class-storage.js';
import type { DatasetSpec } from '../data/dataset-spec.js';
import * as validate from '../util/validate.js';

export type { DatasetSpec };

/** A labelled held-out dataset scored by classification accuracy at each validation. */
export interface ValDatasetSpec {
  /** Name in logs, metrics and the report (default: the path's base name). */
  name: string;
  path: string;
  /** list | rec | folder | base64 | auto (detected as for the training dataset; the default). */
  format: 'list' | 'rec' | 'folder' | 'base64' | 'auto';
}

export interface TrainConfig {
  /** Number of classes (identities). */
  classNum: number;
  /** Images per worker per step. */
  trainBatchSize: number;
  testBatchSize: number;
  embSize: number;
  /** softmax | arcface | cosface | dist_softmax | dist_arcface | dist_cosface | combined | dist_combined */
  lossType: string;
  /** (m1, m2, m3) of the combined margin; null = the loss type's default. */
  margins: [number, number, number] | null;
  /** Logit scale s. */
  scale: number;
  /** Partial FC sample rate (1 = every class each step). */
  sampleRatio: number;
  /** Backbone name (iresnet18/34/50/100, mobilefacenet, feature-mlp) or a module path `file.js#export`. */
  model: string;
  dataset: DatasetSpec;
  imageSize: number;
  /** Epochs to train (used when trainSteps is null). */
  trainEpochs: number;
  /** Steps to train; overrides trainEpochs when set. */
  trainSteps: number | null;
  /** Wall-clock budget ("10m", "2h", "1h30m" or seconds): stop there; poly/cosine decay spans it. */
  trainTime: string | null;
  warmupEpochs: number;
  /** lr decay: 'piecewise' (at stepBoundaries), 'poly' or 'cosine'. */
  lrScheduler: 'piecewise' | 'poly' | 'cosine';
  /** Steps at which the lr is multiplied by lrDecayFactor. */
  stepBoundaries: number[];
  lrDecayFactor: number;
  /** Learning rate per global batch of 512 (scaled linearly with the global batch). */
  lr: number;
  momentum: number;
  weightDecay: number;
  /** Clip the backbone gradient's global norm to this (null: no clipping). */
  gradClip: number | null;
  logPeriod: number;
  /** Validation .bin files (paths, or names resolved in the dataset directory: lfw -> lfw.bin). */
  valTargets: string[];
  /** Labelled held-out datasets: top-1/top-5 classification accuracy with the head's class centres. */
  valDatasets: ValDatasetSpec[];
  withTest: boolean;
  /** Steps between validations (0: at the end of each epoch). */
  testPeriod: number;
  checkpointDir: string;
  /** Steps between checkpoints (0: at the end of each epoch and of training). */
  checkpointPeriod: number;
  modelSaveDir: string;
  maxLastCheckpointNum: number;
  calcAcc: boolean;
  seed: number;
  /** Worker processes on this machine when not started by a launcher. */
  workers: number;
  /** With workers > 1: times the local workers are started again after one failed (resuming from the newest checkpoint). */
  maxRestarts: number;
  /** Class chunk for the head (null: the whole shard at once). */
  headChunkSize: number | null;
  /** dtype of the head's class weights and momentum: float32, or bfloat16/float16 (half the bytes per class). */
  classStorage: ClassStorage;
  /** Resume from this checkpoint directory ('latest' = the newest in checkpointDir; null = fresh). */
  resume: string | null;
  /** Decode threads etc. are sized by the loader; this bounds prefetched batches. */
  prefetchBatches: number;
  /** A sample that cannot be read or decoded: 'skip' it (reported and counted) or 'fail' the run. */
  badSamples: 'fail' | 'skip';
  /** With badSamples 'skip': the run stops once more than this fraction of a worker's epoch is bad. */
  maxBadSampleFraction: number;
  /** Seconds without a finished step (or checkpoint, or validation) after which the run fails; 0: never. */
  stallTimeout: number;
}

export const DEFAULT_CONFIG: TrainConfig = {
  classNum: 85742,
  trainBatchSize: 128,
  testBatchSize: 120,
  embSize: 512,
  lossType: 'dist_arcface',
  margins: null,
  scale: 64,
  sampleRatio: 1,
  model: 'iresnet50',
  dataset: { type: 'auto', path: './train_data' },
  imageSize: 112,
  trainEpochs: 120,
  trainSteps: null,
  trainTime: null,
  warmupEpochs: 0,
  lrScheduler: 'piecewise',
  stepBoundaries: [100000, 160000, 220000],
  lrDecayFactor: 0.1,
  lr: 0.1,
  momentum: 0.9,
  weightDecay: 5e-4,
  gradClip: 5,
  logPeriod: 200,
  valTargets: ['lfw'],
  valDatasets: [],
  withTest: true,
  testPeriod: 0,
  checkpointDir: 'output/checkpoints',
  checkpointPeriod: 0,
  modelSaveDir: 'output',
  maxLastCheckpointNum: 5,
  calcAcc: false,
  seed: 0,
  workers: 1,
  maxRestarts: 0,
  headChunkSize: null,
  classStorage: 'float32',
  resume: null,
  prefetchBatches: 2,
  badSamples: 'skip',
  maxBadSampleFraction: 0.001,
  stallTimeout: 1800,
};

export class ConfigError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'ConfigError';
  }
}

type Validator = (value: unknown, field: string) => unknown;

const configError = (field: string, problem: string): ConfigError => new ConfigError(field, problem);
const positiveInt: Validator = (v, f) => validate.positiveInteger(v, f, configError);
const nonNegativeInt: Validator = (v, f) => validate.nonNegativeInteger(v, f, configError);
const nonNegativeNumber: Validator = (v, f) => validate.nonNegativeNumber(v, f, configError);
const positiveNumber: Validator = (v, f) => validate.positiveNumber(v, f, configError);
const bool: Validator = (v, f) => {
  if (typeof v !== 'boolean') throw new ConfigError(f, `must be true or false, got ${JSON.stringify(v)}`);
  return v;
};
const string: Validator = (v, f) => {
  if (typeof v !== 'string' || v.length === 0) throw new ConfigError(f, `must be a non-empty string, got ${JSON.stringify(v)}`);
  return v;
};
const nullable =
  (inner: Validator): Validator =>
  (v, f) =>
    v === null ? null : inner(v, f);
const oneOf =
  (choices: readonly string[]): Validator =>
  (v, f) =>
    validate.oneOf(v, f, choices, configError);

const VALIDATORS: { [K in keyof TrainConfig]: Validator } = {
  classNum: positiveInt,
  trainBatchSize: positiveInt,
  testBatchSize: positiveInt,
  embSize: positiveInt,
  lossType: oneOf([...LOSS_TYPES, 'combined', 'dist_combined']),
  margins: nullable((v, f) => {
    if (!Array.isArray(v) || v.length !== 3 || !v.every((m) => typeof m === 'number' && Number.isFinite(m))) {
      throw new ConfigError(f, `must be three numbers [m1, m2, m3], got ${JSON.stringify(v)}`);
    }
    if ((v[0] as number) <= 0) throw new ConfigError(f, `m1 must be positive, got ${v[0]}`);
    return v;
  }),
  scale: positiveNumber,
  sampleRatio: (v, f) => validate.inRange(v, f, { min: 0, max: 1, minExclusive: true }, configError),
  model: string,
  dataset: (v, f) => validateDataset(v, f),
  imageSize: positiveInt,
  trainEpochs: positiveInt,
  trainSteps: nullable(positiveInt),
  trainTime: nullable((v, f) => {
    try {
      parseDuration(v);
    } catch (err) {
      throw new ConfigError(f, (err as Error).message);
    }
    return typeof v === 'number' ? `${v}s` : v;
  }),
  warmupEpochs: nonNegativeNumber,
  lrScheduler: oneOf(['piecewise', 'poly', 'cosine']),
  stepBoundaries: (v, f) => {
    if (!Array.isArray(v)) throw new ConfigError(f, `must be a list of steps, got ${JSON.stringify(v)}`);
    v.forEach((b, i) => nonNegativeInt(b, `${f}[${i}]`));
    for (let i = 1; i < v.length; i++) if ((v[i] as number) <= (v[i - 1] as number)) throw new ConfigError(f, `must be strictly increasing (${v[i - 1]} then ${v[i]})`);
    return v;
  },
  lrDecayFactor: nonNegativeNumber,
  lr: positiveNumber,
  momentum: nonNegativeNumber,
  weightDecay: nonNegativeNumber,
  gradClip: nullable(positiveNumber),
  logPeriod: positiveInt,
  valTargets: (v, f) => {
    if (!Array.isArray(v) || !v.every((t) => typeof t === 'string' && t.length > 0)) throw new ConfigError(f, `must be a list of names or paths, got ${JSON.stringify(v)}`);
    return v;
  },
  valDatasets: (v, f) => {
    if (!Array.isArray(v)) throw new ConfigError(f, `must be a list of { name, path, format }, got ${JSON.stringify(v)}`);
    return v.map((entry, i) => validateValDataset(entry, `${f}[${i}]`));
  },
  withTest: bool,
  testPeriod: nonNegativeInt,
  checkpointDir: string,
  checkpointPeriod: nonNegativeInt,
  modelSaveDir: string,
  maxLastCheckpointNum: positiveInt,
  calcAcc: bool,
  seed: nonNegativeInt,
  workers: positiveInt,
  maxRestarts: nonNegativeInt,
  headChunkSize: nullable(positiveInt),
  classStorage: oneOf(CLASS_STORAGES),
  resume: nullable(string),
  prefetchBatches: nonNegativeInt,
  badSamples: oneOf(['fail', 'skip']),
  maxBadSampleFraction: (v, f) => {
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw new ConfigError(f, `must be a fraction in [0, 1], got ${JSON.stringify(v)}`);
    return v;
  },
  stallTimeout: nonNegativeNumber,
};

/** The keys each dataset type takes (besides `type`). */
const DATASET_KEYS: { [T in DatasetSpec['type']]: readonly string[] } = {
  synthetic: ['type', 'numClasses', 'imagesPerClass', 'seed', 'noise'],
  list: ['type', 'path'],
  rec: ['type', 'path'],
  folder: ['type', 'path'],
  base64: ['type', 'path'],
  auto: ['type', 'path'],
};

function checkDatasetKeys(spec: Record<string, unknown>, type: DatasetSpec['type'], f: string): void {
  const known = DATASET_KEYS[type];
  for (const key of Object.keys(spec)) {
    if (!known.includes(key)) throw new ConfigError(`${f}.${key}`, unknownSettingMessage(key, known, `setting of a ${type} dataset`));
  }
}

function validateDataset(v: unknown, f: string): DatasetSpec {
  if (typeof v === 'string') return { type: 'auto', path: v };
  if (typeof v !== 'object' || v === null) throw new ConfigError(f, `must be a path or { type, ... }, got ${JSON.stringify(v)}`);
  const spec = v as Record<string, unknown>;
  if (typeof spec.type === 'string' && Object.hasOwn(DATASET_KEYS, spec.type)) checkDatasetKeys(spec, spec.type as DatasetSpec['type'], f);
  switch (spec.type) {
    case 'synthetic':
      positiveInt(spec.numClasses, `${f}.numClasses`);
      positiveInt(spec.imagesPerClass, `${f}.imagesPerClass`);
      if (spec.seed !== undefined) nonNegativeInt(spec.seed, `${f}.seed`);
      if (spec.noise !== undefined) nonNegativeNumber(spec.noise, `${f}.noise`);
      return spec as DatasetSpec;
    case 'list':
    case 'rec':
    case 'folder':
    case 'base64':
    case 'auto':
      string(spec.path, `${f}.path`);
      return spec as DatasetSpec;
    default:
      throw new ConfigError(`${f}.type`, `must be one of synthetic, list, rec, folder, base64, auto, got ${JSON.stringify(spec.type)}`);
  }
}

const VAL_DATASET_FORMATS = ['list', 'rec', 'folder', 'base64', 'auto'] as const;

function validateValDataset(v: unknown, f: string): ValDatasetSpec {
  const entry = typeof v === 'string' ? { path: v } : v;
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new ConfigError(f, `must be a path or { name, path, format }, got ${JSON.stringify(v)}`);
  const { name, path, format, ...rest } = entry as Record<string, unknown>;
  const unknownKeys = Object.keys(rest);
  if (unknownKeys.length > 0) throw new ConfigError(`${f}.${unknownKeys[0]}`, 'unknown key (known: name, path, format)');
  string(path, `${f}.path`);
  if (name !== undefined) string(name, `${f}.name`);
  if (format !== undefined) oneOf(VAL_DATASET_FORMATS)(format, `${f}.format`);
  const base = (path as string).replace(/\/+$/, '').split('/').pop() as string;
  return { name: (name as string | undefined) ?? base.replace(/\.(txt|rec)$/, ''), path: path as string, format: (format as ValDatasetSpec['format'] | undefined) ?? 'auto' };
}

/** Checks one field; returns the validated value or throws a ConfigError naming the field. */
export function validateField<K extends keyof TrainConfig>(key: K, value: unknown): TrainConfig[K] {
  const validator = VALIDATORS[key];
  if (!Object.hasOwn(VALIDATORS, key)) throw new ConfigError(String(key), unknownSettingMessage(String(key), Object.keys(VALIDATORS)));
  return validator(value, String(key)) as TrainConfig[K];
}

/** Defaults overlaid with `partial`, every field validated, plus the cross-field checks. */
export function resolveConfig(partial: Partial<Record<string, unknown>>): TrainConfig {
  const config: Record<string, unknown> = { ...DEFAULT_CONFIG };
  for (const [key, value] of Object.entries(partial)) {
    if (value === undefined) continue;
    config[key] = validateField(key as keyof TrainConfig, value);
  }
  const resolved = config as unknown as TrainConfig;
  if (resolved.dataset.type === 'synthetic' && partial.classNum === undefined) resolved.classNum = resolved.dataset.numClasses;
  if (resolved.classStorage !== 'float32' && !resolved.lossType.startsWith('dist_')) {
    throw new ConfigError('classStorage', `${resolved.classStorage} needs a dist_* lossType (the sharded head's sparse update; a dense gradient cannot be stored in 16 bits), got lossType ${resolved.lossType}`);
  }
  if (resolved.dataset.type === 'synthetic' && resolved.dataset.numClasses !== resolved.classNum) {
    throw new ConfigError('classNum', `is ${resolved.classNum} but the synthetic dataset has ${resolved.dataset.numClasses} classes`);
  }
  return resolved;
}

/** Parses `key=value` (value as YAML: numbers, booleans, lists, null) into a nested assignment. */
export function applyOverride(target: Record<string, unknown>, assignment: string): void {
  const eq = assignment.indexOf('=');
  if (eq <= 0) throw new ConfigError(assignment, 'overrides take the form key=value');
  const path = assignment.slice(0, eq).trim().split('.');
  const name = assignment.slice(0, eq).trim();
  if (path.some((part) => part === '' || part === '__proto__' || part === 'constructor' || part === 'prototype')) {
    throw new ConfigError(name, 'is not a setting name');
  }
  const value = parseYaml(assignment.slice(eq + 1)) as unknown;
  let node = target;
  path.slice(0, -1).forEach((part, depth) => {
    const next = Object.hasOwn(node, part) ? node[part] : undefined;
    if (next !== undefined && (typeof next !== 'object' || next === null || Array.isArray(next))) {
      const parent = path.slice(0, depth + 1).join('.');
      throw new ConfigError(name, `${parent} is ${JSON.stringify(next)}, not a group of settings`);
    }
    if (next === undefined) node[part] = {};
    node = node[part] as Record<string, unknown>;
  });
  node[path[path.length - 1] as string] = value;
}

/** Reads a YAML config file (the same keys as the Entry setters) and applies overrides. */
export function loadConfigFile(path: string, overrides: string[] = []): TrainConfig {
  let parsed: unknown;
  try {
    parsed = parseYaml(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError(path, `cannot read config: ${(err as Error).message}`);
  }
  // An empty (or comment-only) file is almost always the wrong file: all defaults would train on ./train_data.
  if (parsed === null || parsed === undefined) throw new ConfigError(path, 'the config file holds no settings (it is empty or only comments)');
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(path, 'a config file must hold a mapping of settings');
  const raw = { ...(parsed as Record<string, unknown>) };
  if (typeof raw.dataset === 'object' && raw.dataset !== null) raw.dataset = { ...(raw.dataset as object) };
  for (const assignment of overrides) applyOverride(raw, assignment);
  try {
    return resolveConfig(raw);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`${path}: ${err.field}`, err.message.slice(err.field.length + 2));
    throw err;
  }
}

/** Global batch, scaled lr and step counts derived from a config for a world size. */
export function derivedSchedule(config: TrainConfig, worldSize: number, samplesPerEpoch: number): {
  globalBatch: number;
  stepsPerEpoch: number;
  totalSteps: number;
  warmupSteps: number;
  scaledLr: number;
} {
  const globalBatch = config.trainBatchSize * worldSize;
  const stepsPerEpoch = Math.max(1, Math.ceil(samplesPerEpoch / globalBatch));
  const totalSteps = config.trainSteps ?? stepsPerEpoch * config.trainEpochs;
  return {
    globalBatch,
    stepsPerEpoch,
    totalSteps,
    warmupSteps: Math.round(config.warmupEpochs * stepsPerEpoch),
    scaledLr: (config.lr * globalBatch) / 512,
  };
}
