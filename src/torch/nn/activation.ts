// Activation layers: ReLU and PReLU.
import { Tensor } from '../tensor.js';
import * as F from '../ops.js';
import { Module } from './module.js';
import { positiveInteger } from '../../util/validate.js';

export class ReLU extends Module {
  /** inplace: overwrite the input (saves memory; the input must not be needed by autograd). */
  constructor(readonly inplace = false) {
    super();
  }
  forward(input: Tensor): Tensor {
    return this.inplace ? F.relu_(input) : F.relu(input);
  }
}

/** max(0, x) + a * min(0, x) with a learnable slope per channel (numParameters = C) or shared (1). */
export class PReLU extends Module {
  /** Number of slopes (1 shared, or one per channel). */
  readonly numSlopes: number;

  constructor(numParameters = 1, init = 0.25) {
    super();
    positiveInteger(numParameters, 'PReLU: numParameters');
    this.numSlopes = numParameters;
    this.registerParameter('weight', F.full([numParameters], init));
  }

  get weight(): Tensor {
    return this.parameter('weight');
  }

  forward(input: Tensor): Tensor {
    return F.prelu(input, this.weight);
  }
}
