// Verification of a backbone on insightface .bin targets (LFW, AgeDB-30, CFP...), used by the
// trainer's periodic validation, Entry.test() and `plsc eval`.
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Tensor } from '../torch/tensor.js';
import * as F from '../torch/ops.js';
import { tidy } from '../torch/scope.js';
import { noGrad } from '../torch/autograd.js';
import { decodeToRgb } from '../data/image.js';
import { readVerificationBin } from '../data/bin-file.js';
import type { EmbedFunction } from './embed.js';
import { embedLoadedImages } from './embed-loaded.js';
import { evaluateVerification, type VerificationResult } from './verification.js';
import type { Backbone } from '../models/index.js';
import { withFoldedBatchNorm } from '../models/fold-batch-norm.js';

export interface TargetResult {
  target: string;
  path: string;
  pairs: number;
  accuracy: number;
  std: number;
  xnorm: number;
  valAtFar1e3: number;
  detail: VerificationResult;
}

export interface ValidationOptions {
  /** Names like 'lfw' resolve to <datasetDir>/lfw.bin. */
  datasetDir?: string | null;
  batchSize?: number;
  /** Expected input side; images are decoded to the backbone's own [H, W], and a different value is an error. */
  imageSize?: number;
}

/** A .bin path for a target given as a path or a name (lfw -> <datasetDir>/lfw.bin). */
export function resolveTarget(target: string, datasetDir: string | null | undefined): string {
  if (existsSync(target)) return target;
  const candidates = datasetDir ? [join(datasetDir, target), join(datasetDir, `${target}.bin`)] : [];
  for (const c of candidates) if (existsSync(c)) return c;
  throw new Error(`validation target '${target}' not found${datasetDir ? ` (looked for ${candidates.join(', ')})` : ''}`);
}

/** [height, width] of an image backbone (inputShape [3, H, W]); throws for feature backbones. */
export function backboneImageSize(backbone: Backbone): [number, number] {
  const shape = backbone.inputShape;
  if (shape.length !== 3 || shape[0] !== 3) {
    throw new Error(`${backbone.typeName} takes inputs of shape [${shape.join(', ')}], not RGB images [3, H, W]: verification on .bin images needs an image backbone`);
  }
  return [shape[1] as number, shape[2] as number];
}

/** Embeddings of an NCHW float32 batch from a backbone in eval mode, without grad. */
export function backboneEmbedFunction(backbone: Backbone): EmbedFunction {
  const sampleSize = backbone.inputShape.reduce((a, b) => a * b, 1);
  return (batch, count) =>
    tidy(() =>
      noGrad(() => {
        const input = F.fromTypedArray(batch.subarray(0, count * sampleSize), [count, ...backbone.inputShape]);
        const out: Tensor = backbone.forward(input);
        const data = out.dataSync();
        // float16/bfloat16 already come back as float32; float64 models are narrowed here.
        return data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
      }),
    );
}

/**
 * Runs the LFW protocol on one .bin file. Images are decoded to the backbone's input size one batch
 * ahead of the forward pass (never the whole set at once). The embeddings come from the backbone's
 * BN-folded inference form (foldBatchNorm), which equals its eval-mode forward.
 */
export async function verifyBin(backbone: Backbone, path: string, options: ValidationOptions = {}): Promise<TargetResult> {
  const [height, width] = backboneImageSize(backbone);
  if (options.imageSize !== undefined && (options.imageSize !== height || options.imageSize !== width)) {
    throw new Error(`${path}: imageSize ${options.imageSize} does not match the backbone's input ${height}x${width}`);
  }
  const bin = await readVerificationBin(path);
  const load = async (i: number): Promise<Uint8Array> => {
    try {
      return await decodeToRgb(bin.images[i] as Uint8Array, width, height);
    } catch (err) {
      throw new Error(`${path}: image ${i} (pair ${i >> 1}) cannot be decoded (${(err as Error).message})`);
    }
  };
  const wasTraining = backbone.training;
  backbone.eval();
  try {
    const { original, flipped } = await withFoldedBatchNorm(backbone, (folded) =>
      embedLoadedImages(bin.images.length, load, backboneEmbedFunction(folded), {
        height,
        width,
        batchSize: options.batchSize ?? 64,
      }),
    );
    const detail = evaluateVerification(original, flipped, bin.issame);
    return {
      target: basename(path).replace(/\.bin$/, ''),
      path,
      pairs: detail.pairs,
      accuracy: detail.accuracy,
      std: detail.std,
      xnorm: detail.xnorm,
      valAtFar1e3: detail.valAtFar1e3,
      detail,
    };
  } finally {
    backbone.train(wasTraining);
  }
}

/** Verification on each target in turn. */
export async function validateBackboneOnTargets(backbone: Backbone, targets: readonly string[], options: ValidationOptions = {}): Promise<TargetResult[]> {
  const results: TargetResult[] = [];
  for (const target of targets) results.push(await verifyBin(backbone, resolveTarget(target, options.datasetDir), options));
  return results;
}
