// Shape-only layers: Flatten and Identity.
import { Tensor } from '../tensor.js';
import * as F from '../ops.js';
import { Module } from './module.js';

/** Flattens dims startDim..endDim into one (default: all but the batch dim). */
export class Flatten extends Module {
  constructor(
    readonly startDim = 1,
    readonly endDim = -1,
  ) {
    super();
  }
  forward(input: Tensor): Tensor {
    return F.flatten(input, this.startDim, this.endDim);
  }
}

/** Returns its input (as a new handle aliasing it, so the two can be disposed independently). */
export class Identity extends Module {
  forward(input: Tensor): Tensor {
    return F.alias(input);
  }
}
