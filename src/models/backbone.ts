// The Backbone contract: any Module mapping a batch of inputs to a batch of embeddings, plus the two
// facts the trainer, the evaluator and the exporter need about it (embedding size and input shape).
import type { Tensor } from '../torch/tensor.js';
import { Module } from '../torch/nn/module.js';
import * as F from '../torch/ops.js';
import { noGrad } from '../torch/autograd.js';
import { tidy } from '../torch/scope.js';

/**
 * A model that maps `[N, ...inputShape]` float32 input to `[N, embeddingSize]` embeddings.
 * Images use `inputShape = [3, H, W]` (NCHW, normalized as the data pipeline does); precomputed
 * feature vectors use `inputShape = [featureDim]`.
 *
 * To plug in your own network, subclass `Module` and add the two fields:
 *
 * ```ts
 * class MyNet extends Module implements Backbone {
 *   readonly embeddingSize = 256;
 *   readonly inputShape = [3, 112, 112];
 *   readonly body = this.registerModule('body', new nn.Sequential(...));
 *   forward(x: Tensor): Tensor { return this.body.call(x); }
 * }
 * ```
 */
export interface Backbone extends Module<[Tensor], Tensor> {
  /** Width D of the output embeddings. */
  readonly embeddingSize: number;
  /** Shape of one input sample, without the batch dimension. */
  readonly inputShape: readonly number[];
}

function isPositiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0;
}

/** True when `value` is a Module carrying a valid `embeddingSize` and `inputShape`. */
export function isBackbone(value: unknown): value is Backbone {
  if (!(value instanceof Module)) return false;
  const candidate = value as unknown as Partial<Backbone>;
  return isPositiveInteger(candidate.embeddingSize) && Array.isArray(candidate.inputShape) && candidate.inputShape.length > 0 && candidate.inputShape.every(isPositiveInteger);
}

/**
 * Checks that `module` satisfies the Backbone contract: the two fields are present and valid, and a
 * forward pass in eval mode on a zero batch of 2 returns a float tensor of shape [2, embeddingSize].
 * The module's training mode is restored afterwards. Throws a message naming what is wrong.
 */
export function validateBackbone(module: unknown, name = 'backbone'): Backbone {
  if (!(module instanceof Module)) throw new Error(`${name}: expected an nn Module, got ${module === null ? 'null' : typeof module}`);
  const candidate = module as unknown as Partial<Backbone>;
  if (!isPositiveInteger(candidate.embeddingSize)) {
    throw new Error(`${name} (${module.typeName}): 'embeddingSize' must be a positive integer, got ${String(candidate.embeddingSize)}`);
  }
  if (!Array.isArray(candidate.inputShape) || candidate.inputShape.length === 0 || !candidate.inputShape.every(isPositiveInteger)) {
    throw new Error(`${name} (${module.typeName}): 'inputShape' must be a non-empty array of positive integers such as [3, 112, 112], got ${JSON.stringify(candidate.inputShape)}`);
  }
  const backbone = module as unknown as Backbone;
  const wasTraining = backbone.training;
  backbone.eval();
  try {
    const shape = noGrad(() =>
      tidy(() => {
        const first = backbone.parameters()[0];
        const device = first?.device ?? 'cpu';
        const output = backbone.call(F.zeros([2, ...backbone.inputShape], { device }));
        return { shape: output.shape, dtype: output.dtype };
      }),
    );
    if (shape.shape.length !== 2 || shape.shape[0] !== 2 || shape.shape[1] !== backbone.embeddingSize) {
      throw new Error(`${name} (${module.typeName}): forward on input [2, ${backbone.inputShape.join(', ')}] returned shape [${shape.shape.join(', ')}], expected [2, ${backbone.embeddingSize}]`);
    }
    if (shape.dtype !== 'float32' && shape.dtype !== 'float16' && shape.dtype !== 'bfloat16' && shape.dtype !== 'float64') {
      throw new Error(`${name} (${module.typeName}): forward returned dtype ${shape.dtype}, expected a floating type`);
    }
  } finally {
    backbone.train(wasTraining);
  }
  return backbone;
}

/** `inputSize` as [H, W]: a number means a square input. */
export function imageSize(inputSize: number | readonly [number, number], what: string): [number, number] {
  const size: [number, number] = typeof inputSize === 'number' ? [inputSize, inputSize] : [inputSize[0], inputSize[1]];
  if (!size.every(isPositiveInteger)) throw new Error(`${what}: inputSize must be a positive integer or [height, width], got ${JSON.stringify(inputSize)}`);
  return size;
}

/** Spatial size after a 3x3 / pad 1 (or 1x1 / pad 0) convolution with stride 2: ceil(n / 2). */
export function halve(n: number): number {
  return Math.floor((n - 1) / 2) + 1;
}
