// Dropout: zeroes elements with probability p in training (scaling the rest by 1/(1-p)); identity in eval.
import { Tensor } from '../tensor.js';
import * as F from '../ops.js';
import { Module } from './module.js';

export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (!(p >= 0 && p <= 1)) throw new Error(`Dropout: p must be in [0, 1], got ${p}`);
  }
  forward(input: Tensor): Tensor {
    return F.dropout(input, this.p, this.training);
  }
}
