// Linear: y = x W^T + b.
import { Tensor } from '../tensor.js';
import * as F from '../ops.js';
import { Module } from './module.js';
import { defaultWeightInit_ } from './init.js';

export class Linear extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;

  constructor(inFeatures: number, outFeatures: number, options: { bias?: boolean } = {}) {
    super();
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    const weight = this.registerParameter('weight', F.empty([outFeatures, inFeatures]));
    const bias = options.bias ?? true ? this.registerParameter('bias', F.empty([outFeatures])) : null;
    defaultWeightInit_(weight, bias);
  }

  get weight(): Tensor {
    return this.parameter('weight');
  }
  get bias(): Tensor | null {
    return this.hasTensor('bias') ? this.parameter('bias') : null;
  }

  forward(input: Tensor): Tensor {
    return F.linear(input, this.weight, this.bias);
  }
}
