// Pooling layers over NCHW input: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d.
import { Tensor } from '../tensor.js';
import * as F from '../ops.js';
import { Module } from './module.js';
import { pair, type Size2 } from './conv.js';

export interface Pool2dOptions {
  /** Default: the kernel size. */
  stride?: Size2;
  padding?: Size2;
  ceilMode?: boolean;
}

/** The window geometry MaxPool2d and AvgPool2d share. */
abstract class Pool2d extends Module {
  readonly kernelSize: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly ceilMode: boolean;

  constructor(kind: string, kernelSize: Size2, options: Pool2dOptions) {
    super();
    this.kernelSize = pair(kernelSize, `${kind} kernelSize`);
    this.stride = pair(options.stride ?? kernelSize, `${kind} stride`);
    this.padding = pair(options.padding ?? 0, `${kind} padding`);
    this.ceilMode = options.ceilMode ?? false;
  }

  protected get window(): { stride: [number, number]; padding: [number, number]; ceilMode: boolean } {
    return { stride: this.stride, padding: this.padding, ceilMode: this.ceilMode };
  }
}

export class MaxPool2d extends Pool2d {
  constructor(kernelSize: Size2, options: Pool2dOptions = {}) {
    super('MaxPool2d', kernelSize, options);
  }

  forward(input: Tensor): Tensor {
    return F.maxPool2d(input, this.kernelSize, this.window);
  }
}

export class AvgPool2d extends Pool2d {
  constructor(kernelSize: Size2, options: Pool2dOptions = {}) {
    super('AvgPool2d', kernelSize, options);
  }

  forward(input: Tensor): Tensor {
    return F.avgPool2d(input, this.kernelSize, this.window);
  }
}

/** Average pooling to a fixed output size ([1, 1] gives global average pooling). */
export class AdaptiveAvgPool2d extends Module {
  readonly outputSize: [number, number];

  constructor(outputSize: Size2) {
    super();
    this.outputSize = pair(outputSize, 'AdaptiveAvgPool2d outputSize');
  }

  forward(input: Tensor): Tensor {
    return F.adaptiveAvgPool2d(input, this.outputSize);
  }
}
