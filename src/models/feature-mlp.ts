// FeatureMLP: the built-in backbone for precomputed feature vectors (text / news / product
// embeddings from another model): [N, inputDim] -> hidden (Linear -> BN -> PReLU)* -> Dropout ->
// Linear -> BatchNorm1d -> [N, embeddingSize], the same FC -> BN embedding head as the face models.
import type { Tensor } from '../torch/tensor.js';
import { tidy } from '../torch/scope.js';
import { Module } from '../torch/nn/module.js';
import { BatchNorm1d } from '../torch/nn/batchnorm.js';
import { PReLU } from '../torch/nn/activation.js';
import { Linear } from '../torch/nn/linear.js';
import { Dropout } from '../torch/nn/dropout.js';
import { Sequential } from '../torch/nn/sequential.js';
import type { Backbone } from './backbone.js';
import { inRange, positiveInteger } from '../util/validate.js';

export interface FeatureMLPOptions {
  /** Length of each input feature vector. */
  inputDim: number;
  /** Widths of the hidden layers (default [1024]; [] gives a linear projection + BN). */
  hiddenDims?: readonly number[];
  /** Embedding width D (default 512). */
  embeddingSize?: number;
  /** Dropout probability before the output FC layer (default 0). */
  dropout?: number;
}

function checkWidth(value: unknown, what: string): number {
  return positiveInteger(value, `FeatureMLP: ${what}`);
}

/**
 * Keys: `layers.{3i}` Linear, `layers.{3i+1}` BatchNorm1d, `layers.{3i+2}` PReLU for hidden layer i,
 * then `fc` and `features` (BatchNorm1d over the embedding).
 */
export class FeatureMLP extends Module implements Backbone {
  readonly embeddingSize: number;
  readonly inputShape: readonly [number];
  readonly hiddenDims: readonly number[];
  readonly layers: Sequential;
  readonly dropout: Dropout;
  readonly fc: Linear;
  readonly features: BatchNorm1d;

  constructor(options: FeatureMLPOptions) {
    super();
    const inputDim = checkWidth(options?.inputDim, 'inputDim');
    const hiddenDims = [...(options.hiddenDims ?? [1024])];
    hiddenDims.forEach((width, i) => checkWidth(width, `hiddenDims[${i}]`));
    const embeddingSize = checkWidth(options.embeddingSize ?? 512, 'embeddingSize');
    const dropout = options.dropout ?? 0;
    inRange(dropout, 'FeatureMLP: dropout', { min: 0, max: 1, maxExclusive: true });
    this.embeddingSize = embeddingSize;
    this.inputShape = [inputDim];
    this.hiddenDims = hiddenDims;
    this.layers = this.registerModule('layers', new Sequential());
    let width = inputDim;
    for (const hidden of hiddenDims) {
      this.layers.append(new Linear(width, hidden));
      this.layers.append(new BatchNorm1d(hidden));
      this.layers.append(new PReLU(hidden));
      width = hidden;
    }
    this.dropout = this.registerModule('dropout', new Dropout(dropout));
    this.fc = this.registerModule('fc', new Linear(width, embeddingSize));
    this.features = this.registerModule('features', new BatchNorm1d(embeddingSize));
  }

  forward(x: Tensor): Tensor {
    if (x.ndim !== 2 || x.shape[1] !== this.inputShape[0]) {
      throw new Error(`FeatureMLP: expected input [N, ${this.inputShape[0]}], got [${x.shape.join(', ')}]`);
    }
    return tidy(() => this.features.call(this.fc.call(this.dropout.call(this.layers.call(x)))));
  }
}
