// A training checkpoint to deployable files: the backbone rebuilt from meta.json with its trained
// weights, written as ONNX and checked against the libtorch forward in onnxruntime, and optionally
// the normalized class centres for `plsc serve --centers`.
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import '../onnx/ort-telemetry.js';
import ort from 'onnxruntime-node';
import * as F from '../torch/ops.js';
import { noGrad } from '../torch/autograd.js';
import { tidy } from '../torch/scope.js';
import type { Tensor } from '../torch/tensor.js';
import { exportOnnx, ONNX_INPUT_NAME, ONNX_OUTPUT_NAME } from '../models/export-onnx.js';
import type { Backbone } from '../models/backbone.js';
import { readMeta, resolveCheckpointDir, type CheckpointMeta } from '../checkpoint/format.js';
import { resolveConfig } from '../config/train-config.js';
import { backboneFromSpec } from '../checkpoint/backbone-spec.js';
import { loadVerifiedCheckpointFile } from '../checkpoint/integrity.js';
import { writeCheckpointCenters, type CheckpointCentersResult } from '../checkpoint/centers.js';

/** The largest max-abs difference between onnxruntime and libtorch that the export accepts. */
export const EXPORT_PARITY_TOLERANCE = 1e-4;


/**
 * Builds the checkpoint's backbone (as training did, from meta.json's config), loads
 * backbone.safetensors into it and puts it in eval mode. The caller disposes it.
 */
export async function loadCheckpointBackbone(dir: string, meta: CheckpointMeta): Promise<Backbone> {
  const metaFile = join(dir, 'meta.json');
  const storedConfig = meta.config !== null && typeof meta.config === 'object' ? meta.config : {};
  const model = typeof storedConfig.model === 'string' ? storedConfig.model : meta.backbone;
  if (typeof model !== 'string' || model === '') throw new Error(`${metaFile}: names no backbone (config.model and backbone are both missing)`);
  let backbone: Backbone;
  try {
    const config = resolveConfig({ ...storedConfig, model, embSize: storedConfig.embSize ?? meta.embeddingSize });
    backbone = await backboneFromSpec(config);
  } catch (error) {
    throw new Error(`${metaFile}: cannot build backbone '${model}': ${(error as Error).message}`);
  }
  try {
    if (backbone.embeddingSize !== meta.embeddingSize) {
      throw new Error(`${metaFile}: backbone '${model}' gives ${backbone.embeddingSize}-d embeddings but the checkpoint's embeddingSize is ${meta.embeddingSize}`);
    }
    const weightsFile = join(dir, 'backbone.safetensors');
    if (!existsSync(weightsFile)) throw new Error(`checkpoint ${dir}: missing backbone.safetensors`);
    const weights = loadVerifiedCheckpointFile(dir, meta, 'backbone.safetensors');
    try {
      backbone.loadStateDict(weights);
    } catch (error) {
      throw new Error(`${weightsFile}: does not fit backbone '${model}': ${(error as Error).message}`);
    } finally {
      for (const tensor of Object.values(weights)) tensor.dispose();
    }
    backbone.eval();
    return backbone;
  } catch (error) {
    backbone.dispose();
    throw error;
  }
}

export interface ParityResult {
  /** Largest |onnxruntime - libtorch| over every output element. */
  maxAbsDiff: number;
  /** Largest |libtorch| output element, for scale. */
  maxAbsOutput: number;
  batch: number;
}

/**
 * Deterministic samples uniform in [-1, 1), the range of preprocessed pixels ((x - 127.5) / 128),
 * independent of libtorch's RNG.
 */
function uniformSamples(count: number, seed: number): Float32Array {
  let state = seed >>> 0;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

/**
 * Runs `onnxBytes` in onnxruntime (default session options, as `plsc serve` does) and `backbone`
 * in libtorch (eval mode, no grad) on the same `batch` random inputs in [-1, 1) and compares the
 * outputs.
 * A model with a fixed batch dimension is run in zero-padded batches of that size.
 */
export async function checkOnnxParity(backbone: Backbone, onnxBytes: Uint8Array, options: { batch?: number; seed?: number } = {}): Promise<ParityResult> {
  const batch = options.batch ?? 2;
  const sampleSize = backbone.inputShape.reduce((a, b) => a * b, 1);
  const inputs = uniformSamples(batch * sampleSize, options.seed ?? 7);
  const wasTraining = backbone.training;
  backbone.eval();
  let expected: Float32Array;
  try {
    expected = noGrad(() =>
      tidy(() => {
        const device = backbone.parameters()[0]?.device ?? 'cpu';
        let x: Tensor = F.tensor(inputs, { shape: [batch, ...backbone.inputShape] });
        if (device !== 'cpu') x = x.to(device);
        let y = backbone.call(x);
        if (y.dtype !== 'float32') y = y.to('float32');
        return y.dataSync() as Float32Array;
      }),
    );
  } finally {
    backbone.train(wasTraining);
  }
  const dim = backbone.embeddingSize;
  if (expected.length !== batch * dim) throw new Error(`parity check: libtorch gave ${expected.length} values, expected ${batch} x ${dim}`);

  const session = await ort.InferenceSession.create(onnxBytes);
  const actual = new Float32Array(batch * dim);
  try {
    const meta = session.inputMetadata?.[0];
    const declared = meta && meta.isTensor ? meta.shape[0] : undefined;
    const step = typeof declared === 'number' && declared > 0 ? declared : batch;
    for (let first = 0; first < batch; first += step) {
      const rows = Math.min(step, batch - first);
      const feed = new Float32Array(step * sampleSize);
      feed.set(inputs.subarray(first * sampleSize, (first + rows) * sampleSize));
      const result = await session.run({ [ONNX_INPUT_NAME]: new ort.Tensor('float32', feed, [step, ...backbone.inputShape]) });
      const output = result[ONNX_OUTPUT_NAME] as ort.Tensor | undefined;
      if (output === undefined || output.type !== 'float32' || output.dims.length !== 2 || Number(output.dims[0]) !== step || Number(output.dims[1]) !== dim) {
        throw new Error(`parity check: onnxruntime output '${ONNX_OUTPUT_NAME}' is ${output ? `${output.type} [${output.dims.join(', ')}]` : 'missing'}, expected float32 [${step}, ${dim}]`);
      }
      actual.set((output.data as Float32Array).subarray(0, rows * dim), first * dim);
    }
  } finally {
    await session.release();
  }
  let maxAbsDiff = 0;
  let maxAbsOutput = 0;
  for (let i = 0; i < expected.length; i++) {
    const difference = Math.abs(actual[i]! - expected[i]!);
    // NaN anywhere must fail the check rather than vanish in Math.max.
    maxAbsDiff = Number.isNaN(difference) ? NaN : Number.isNaN(maxAbsDiff) ? NaN : Math.max(maxAbsDiff, difference);
    maxAbsOutput = Math.max(maxAbsOutput, Math.abs(expected[i]!));
  }
  return { maxAbsDiff, maxAbsOutput, batch };
}

export interface ExportCheckpointOptions {
  /** A step directory, or a checkpoint root (its newest step is used). */
  checkpoint: string;
  /** Where the .onnx goes. */
  out: string;
  opset?: number;
  /** Symbolic batch dimension (default false: fixed to `batchSize`). */
  dynamicBatch?: boolean;
  /** The fixed batch size when not dynamic (default 1). */
  batchSize?: number;
  /** Also write the normalized class centres here. */
  centers?: string;
  /** Centres as float16. */
  fp16?: boolean;
  /** Rows per centres chunk (default about 16 MiB). */
  centersChunkRows?: number;
  /** Parity tolerance (default EXPORT_PARITY_TOLERANCE). */
  tolerance?: number;
}

export interface ExportCheckpointResult {
  checkpointDir: string;
  meta: CheckpointMeta;
  modelPath: string;
  modelBytes: number;
  inputShape: number[];
  embeddingSize: number;
  dynamicBatch: boolean;
  parity: ParityResult;
  centers: CheckpointCentersResult | null;
}

/** Thrown when the exported graph disagrees with libtorch; nothing is written then. */
export class ExportParityError extends Error {
  constructor(
    readonly parity: ParityResult,
    readonly tolerance: number,
  ) {
    const relative = parity.maxAbsDiff / Math.max(parity.maxAbsOutput, Number.MIN_VALUE);
    // Outputs far above 1 (an untrained network's BN statistics, say) carry float32 rounding of that
    // size, which different kernel orders legitimately disagree on; say so rather than leave a puzzle.
    const hint =
      parity.maxAbsOutput > 1 && relative < 1e-5
        ? `; relative to the outputs (up to ${parity.maxAbsOutput.toPrecision(4)}) that is ${relative.toExponential(2)}, float32 rounding: if the outputs are this large on purpose, raise --tolerance`
        : '';
    super(
      `ONNX parity check failed: max |onnxruntime - libtorch| = ${parity.maxAbsDiff.toExponential(3)} over batch ${parity.batch} exceeds ${tolerance} ` +
        `(largest output magnitude ${parity.maxAbsOutput.toPrecision(4)})${hint}; the model was not written`,
    );
    this.name = 'ExportParityError';
  }
}

function writeAtomically(path: string, bytes: Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, bytes);
    renameSync(tmp, path);
  } catch (error) {
    rmSync(tmp, { force: true });
    throw error;
  }
}

/**
 * Exports a checkpoint: ONNX model (written only after it matches libtorch to `tolerance` on 2
 * random inputs) and, with `centers`, the normalized class-centre matrix of every class.
 */
export async function exportCheckpoint(options: ExportCheckpointOptions): Promise<ExportCheckpointResult> {
  const tolerance = options.tolerance ?? EXPORT_PARITY_TOLERANCE;
  const dynamicBatch = options.dynamicBatch ?? false;
  if (options.centers !== undefined && resolve(options.centers) === resolve(options.out)) throw new Error('--centers and --out must be different files');
  const checkpointDir = resolveCheckpointDir(options.checkpoint);
  // The class centres come from the FC shards; the model alone needs only the backbone.
  const meta = readMeta(checkpointDir, { requireShards: options.centers !== undefined });
  const backbone = await loadCheckpointBackbone(checkpointDir, meta);
  let modelBytes: number;
  let parity: ParityResult;
  const inputShape = [...backbone.inputShape];
  try {
    const onnx = exportOnnx(backbone, {
      ...(options.opset !== undefined ? { opset: options.opset } : {}),
      dynamicBatch,
      ...(options.batchSize !== undefined ? { batchSize: options.batchSize } : {}),
      metadata: { 'plsc.checkpoint': resolve(checkpointDir), 'plsc.step': String(meta.step), 'plsc.num_classes': String(meta.numClasses) },
    });
    parity = await checkOnnxParity(backbone, onnx);
    if (!(parity.maxAbsDiff <= tolerance)) throw new ExportParityError(parity, tolerance);
    writeAtomically(options.out, onnx);
    modelBytes = onnx.length;
  } finally {
    backbone.dispose();
  }
  const centers = options.centers === undefined
    ? null
    : writeCheckpointCenters(checkpointDir, meta, options.centers, {
        ...(options.fp16 ? { fp16: true } : {}),
        ...(options.centersChunkRows !== undefined ? { chunkRows: options.centersChunkRows } : {}),
      });
  return { checkpointDir, meta, modelPath: options.out, modelBytes, inputShape, embeddingSize: meta.embeddingSize, dynamicBatch, parity, centers };
}
