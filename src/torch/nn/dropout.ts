// Dropout: zeroes elements with probability p in training (scaling the rest by 1/(1-p)); identity in eval.
import { Tensor } from '../tensor.js';
import * as F from '../ops.js';
import { Module } from './module.js';
import { inRange } from '../../util/validate.js';

export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    inRange(p, 'Dropout: p', { min: 0, max: 1 });
  }
  forward(input: Tensor): Tensor {
    return F.dropout(input, this.p, this.training);
  }
}
