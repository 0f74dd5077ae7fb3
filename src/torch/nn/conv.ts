// Conv2d: a 2-d convolution layer over NCHW input.
import { Tensor } from '../tensor.js';
import * as F from '../ops.js';
import { Module } from './module.js';
import { defaultWeightInit_ } from './init.js';

export type Size2 = number | readonly [number, number];

export interface Conv2dOptions {
  stride?: Size2;
  padding?: Size2;
  dilation?: Size2;
  groups?: number;
  /** Learnable bias (default true). */
  bias?: boolean;
}

export function pair(value: Size2, what: string): [number, number] {
  const out: [number, number] = typeof value === 'number' ? [value, value] : [value[0], value[1]];
  if (!out.every((v) => Number.isInteger(v) && v >= 0)) throw new Error(`${what} must be non-negative integers, got ${JSON.stringify(value)}`);
  return out;
}

export class Conv2d extends Module {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly kernelSize: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly dilation: [number, number];
  readonly groups: number;

  constructor(inChannels: number, outChannels: number, kernelSize: Size2, options: Conv2dOptions = {}) {
    super();
    const groups = options.groups ?? 1;
    if (!Number.isInteger(groups) || groups < 1 || inChannels % groups !== 0 || outChannels % groups !== 0) {
      throw new Error(`Conv2d: groups (${groups}) must divide inChannels (${inChannels}) and outChannels (${outChannels})`);
    }
    this.inChannels = inChannels;
    this.outChannels = outChannels;
    this.kernelSize = pair(kernelSize, 'Conv2d kernelSize');
    this.stride = pair(options.stride ?? 1, 'Conv2d stride');
    this.padding = pair(options.padding ?? 0, 'Conv2d padding');
    this.dilation = pair(options.dilation ?? 1, 'Conv2d dilation');
    this.groups = groups;
    const weight = this.registerParameter('weight', F.empty([outChannels, inChannels / groups, ...this.kernelSize]));
    const bias = options.bias ?? true ? this.registerParameter('bias', F.empty([outChannels])) : null;
    defaultWeightInit_(weight, bias);
  }

  get weight(): Tensor {
    return this.parameter('weight');
  }
  get bias(): Tensor | null {
    return this.hasTensor('bias') ? this.parameter('bias') : null;
  }

  forward(input: Tensor): Tensor {
    return F.conv2d(input, this.weight, this.bias, {
      stride: this.stride,
      padding: this.padding,
      dilation: this.dilation,
      groups: this.groups,
    });
  }
}
