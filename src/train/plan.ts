// `plsc plan`: the memory one worker of a dist_* (sharded, fused-update) run needs, part by part, and
// whether the workers of this machine fit in it. The head's parts follow the head step's tensors
// (src/head/partial-fc.ts); the backbone's parameter count comes from building it; its activation
// memory per sample is measured (measured-activations.ts, or now for a model not recorded there).
import { totalmem } from 'node:os';
import { sampledClassCount } from '../head/class-sampler.js';
import { backboneFromSpec } from '../checkpoint/backbone-spec.js';
import { configForBackbone } from './config-adapter.js';
import { measureActivationBytesPerSample, recordedActivation } from './activation-memory.js';
import { inRange, nonNegativeNumber, oneOf, positiveInteger } from '../util/validate.js';

export type PlanStorage = 'float32' | 'bfloat16' | 'float16';

export interface PlanOptions {
  classes: number;
  emb: number;
  /** Images per worker per step. */
  batch: number;
  sampleRate: number;
  storage?: PlanStorage;
  /** Workers of the whole job (the class shards). Default 1. */
  workers?: number;
  /** Workers on this machine (default: all of them). */
  workersHere?: number;
  /** Backbone name or `file.js#factory` (default iresnet50). */
  model?: string;
  /** Input side (default 112). */
  imageSize?: number;
  /** Activation bytes per sample, when known (else the recorded measurement, or one taken now). */
  activationBytesPerSample?: number;
}

export interface MemoryPlan {
  classes: number;
  emb: number;
  batch: number;
  sample_rate: number;
  storage: PlanStorage;
  workers: number;
  workers_here: number;
  model: string;
  image_size: number;
  /** Classes of the largest shard. */
  classes_per_worker: number;
  /** Of them, used per step. */
  active_classes_per_worker: number;
  /** Bytes per worker, by part. */
  parts: {
    class_weights: number;
    class_momentum: number;
    /** exp(logits) of the active classes x the global batch, kept from forward to backward. */
    logits: number;
    /** Per active class: inverse centre norms; with sampling, the sampled indices and the sampler's arrays. */
    class_bookkeeping: number;
    /** One tile's gathered weights, gradients and logits (the head works a tile at a time). */
    head_tile: number;
    backbone_parameters: number;
    backbone_gradients: number;
    /** SGD momentum of the backbone. */
    backbone_optimizer: number;
    /** Data-parallel gradient buckets (multi-worker only). */
    gradient_buckets: number;
    activations: number;
  };
  /** The head's bytes (every class-proportional part plus its tile) per class of the shard: what `plsc bench head` reports. */
  bytes_per_class: number;
  per_worker_bytes: number;
  backbone_parameter_count: number;
  activation_bytes_per_sample: number;
  /** Where the activation figure came from. */
  activation_source: string;
  machine_bytes: number;
  total_memory_bytes: number;
  fits: boolean;
}

const STORAGE_BYTES: Record<PlanStorage, number> = { float32: 4, bfloat16: 2, float16: 2 };
const FLOAT32 = 4;
const INT64 = 8;
const INT32 = 4;
/** PartialFC's default updateBlockRows: classes per tile. */
const HEAD_TILE_ROWS = 4096;
const DEFAULT_IMAGE_SIZE = 112;

/** The head's parts for one worker (no libtorch needed). */
export function planHead(options: Pick<PlanOptions, 'classes' | 'emb' | 'batch' | 'sampleRate' | 'storage' | 'workers'>): {
  rows: number;
  active: number;
  parts: Pick<MemoryPlan['parts'], 'class_weights' | 'class_momentum' | 'logits' | 'class_bookkeeping' | 'head_tile'>;
  bytesPerClass: number;
} {
  const workers = options.workers ?? 1;
  positiveInteger(options.classes, 'classes');
  positiveInteger(options.emb, 'emb');
  positiveInteger(options.batch, 'batch');
  positiveInteger(workers, 'workers');
  inRange(options.sampleRate, 'sample rate', { min: 0, max: 1, minExclusive: true });
  if (options.classes < workers) throw new RangeError(`${options.classes} classes cannot be split over ${workers} workers`);
  const storage = options.storage ?? 'float32';
  oneOf(storage, 'storage', Object.keys(STORAGE_BYTES));
  const rows = Math.ceil(options.classes / workers);
  const active = sampledClassCount(rows, options.sampleRate);
  const sampling = active < rows;
  const globalBatch = options.batch * workers;
  const D = options.emb;
  const tile = Math.min(HEAD_TILE_ROWS, active);
  const parts = {
    class_weights: rows * D * STORAGE_BYTES[storage],
    class_momentum: rows * D * STORAGE_BYTES[storage],
    logits: active * globalBatch * FLOAT32,
    // 1/|w| and 1/|w|^2 per active class; with sampling the sampler's taken-flags (1 byte) and pool
    // (int32) per shard class, and the sampled index as int32 (JS) and int64 (tensor) per active class.
    class_bookkeeping: active * 2 * FLOAT32 + (sampling ? rows * (1 + INT32) + active * (INT32 + INT64) : 0),
    // Per tile: gathered weights (sampling), the weight gradient and the momentum rows in float32,
    // and the tile's logit gradient and probabilities.
    head_tile: tile * (D * FLOAT32 * (sampling ? 3 : 2) + 2 * globalBatch * FLOAT32),
  };
  const headBytes = Object.values(parts).reduce((a, b) => a + b, 0);
  return { rows, active, parts, bytesPerClass: headBytes / rows };
}

/** The whole plan: head and backbone of one worker, and whether this machine's workers fit. */
export async function planMemory(options: PlanOptions): Promise<MemoryPlan> {
  const workers = options.workers ?? 1;
  const workersHere = options.workersHere ?? workers;
  positiveInteger(workersHere, 'workers here');
  if (workersHere > workers) throw new RangeError(`workers on this machine (${workersHere}) cannot exceed the job's workers (${workers})`);
  const model = options.model ?? 'iresnet50';
  const imageSize = options.imageSize ?? DEFAULT_IMAGE_SIZE;
  positiveInteger(imageSize, 'image size');
  const head = planHead(options);

  const backbone = await backboneFromSpec(configForBackbone({ model, embeddingSize: options.emb, imageSize }));
  let parameterCount = 0;
  try {
    for (const p of backbone.parameters()) parameterCount += p.numel;
  } finally {
    backbone.dispose();
  }
  const recorded = recordedActivation(model);
  let perSample: number;
  let source: string;
  if (options.activationBytesPerSample !== undefined) {
    nonNegativeNumber(options.activationBytesPerSample, 'activation bytes per sample');
    perSample = options.activationBytesPerSample;
    source = 'given';
  } else if (recorded !== undefined) {
    // Convolutional activations scale with the pixel count.
    perSample = Math.round(recorded.bytesPerSample * ((imageSize * imageSize) / (recorded.imageSize * recorded.imageSize)));
    source = `measured at ${recorded.imageSize}x${recorded.imageSize} (src/train/measured-activations.ts)${recorded.imageSize === imageSize ? '' : ', scaled by the pixel count'}`;
  } else {
    perSample = measureActivationBytesPerSample({ model, imageSize, embeddingSize: options.emb }).bytesPerSample;
    source = `measured now at ${imageSize}x${imageSize}`;
  }
  const parameterBytes = parameterCount * FLOAT32;
  const parts: MemoryPlan['parts'] = {
    ...head.parts,
    backbone_parameters: parameterBytes,
    backbone_gradients: parameterBytes,
    backbone_optimizer: parameterBytes,
    gradient_buckets: workers > 1 ? parameterBytes : 0,
    activations: perSample * options.batch,
  };
  const perWorker = Object.values(parts).reduce((a, b) => a + b, 0);
  const total = totalmem();
  return {
    classes: options.classes,
    emb: options.emb,
    batch: options.batch,
    sample_rate: options.sampleRate,
    storage: options.storage ?? 'float32',
    workers,
    workers_here: workersHere,
    model,
    image_size: imageSize,
    classes_per_worker: head.rows,
    active_classes_per_worker: head.active,
    parts,
    bytes_per_class: head.bytesPerClass,
    per_worker_bytes: perWorker,
    backbone_parameter_count: parameterCount,
    activation_bytes_per_sample: perSample,
    activation_source: source,
    machine_bytes: perWorker * workersHere,
    total_memory_bytes: total,
    fits: perWorker * workersHere <= total,
  };
}
