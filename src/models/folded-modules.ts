// The layers of a backbone's inference form (see fold-batch-norm.ts): a convolution or linear layer
// whose weights already include the BatchNorm that followed it, a BatchNorm that could not be folded
// (fixed to its running statistics), and the two containers that keep the original module names
// (a named chain and a residual unit). They hold no gradients and compute the eval-mode forward only.
import type { Tensor } from '../torch/tensor.js';
import * as F from '../torch/ops.js';
import { tidy } from '../torch/scope.js';
import { Module } from '../torch/nn/module.js';
import type { TensorModule } from '../torch/nn/sequential.js';

export interface FoldedConv2dGeometry {
  stride: readonly [number, number];
  padding: readonly [number, number];
  dilation: readonly [number, number];
  groups: number;
}

/** conv2d(x, weight, bias): a Conv2d with the BatchNorm after it folded into weight and bias. */
export class FoldedConv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly geometry: FoldedConv2dGeometry;

  /** Takes ownership of `weight` [out, in / groups, kH, kW] and `bias` [out]. */
  constructor(weight: Tensor, bias: Tensor, geometry: FoldedConv2dGeometry) {
    super();
    this.weight = this.registerParameter('weight', weight, false);
    this.bias = this.registerParameter('bias', bias, false);
    this.geometry = { stride: [...geometry.stride], padding: [...geometry.padding], dilation: [...geometry.dilation], groups: geometry.groups };
  }

  forward(x: Tensor): Tensor {
    const { stride, padding, dilation, groups } = this.geometry;
    return F.conv2d(x, this.weight, this.bias, { stride, padding, dilation, groups });
  }
}

/** linear(x, weight, bias) on [N, in]: a Linear with the BatchNorms around it folded in. */
export class FoldedLinear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;

  /** Takes ownership of `weight` [out, in] and `bias` [out]. */
  constructor(weight: Tensor, bias: Tensor) {
    super();
    this.weight = this.registerParameter('weight', weight, false);
    this.bias = this.registerParameter('bias', bias, false);
  }

  forward(x: Tensor): Tensor {
    if (x.ndim !== 2) throw new Error(`FoldedLinear: expected input [N, ${this.weight.shape[1]}], got [${x.shape.join(', ')}]`);
    return F.linear(x, this.weight, this.bias);
  }
}

/** The statistics and affine terms of a BatchNorm in eval mode (handles the module owns). */
export interface BatchNormInference {
  runningMean: Tensor;
  runningVar: Tensor;
  weight: Tensor | null;
  bias: Tensor | null;
  eps: number;
}

/**
 * A BatchNorm that stays a separate operator (one before a zero-padded convolution, where folding
 * is not exact): always normalizes with the running statistics, whatever the training flag.
 */
export class InferenceBatchNorm extends Module {
  readonly runningMean: Tensor;
  readonly runningVar: Tensor;
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly eps: number;

  /** Takes ownership of the tensors. */
  constructor(terms: BatchNormInference) {
    super();
    this.runningMean = this.registerBuffer('running_mean', terms.runningMean);
    this.runningVar = this.registerBuffer('running_var', terms.runningVar);
    this.weight = terms.weight === null ? null : this.registerParameter('weight', terms.weight, false);
    this.bias = terms.bias === null ? null : this.registerParameter('bias', terms.bias, false);
    this.eps = terms.eps;
  }

  forward(x: Tensor): Tensor {
    return F.batchNorm(x, this.runningMean, this.runningVar, this.weight, this.bias, { training: false, eps: this.eps });
  }
}

function runInOrder(steps: readonly TensorModule[], input: Tensor): Tensor {
  let x = input;
  for (const step of steps) {
    const next = step.call(x);
    // Intermediate handles can go now (inference: nothing saved them for a backward pass).
    if (x !== input && next !== x) x.dispose();
    x = next;
  }
  return x;
}

/** Children under the given names, applied in order (a Sequential that keeps the original names). */
export class InferenceChain extends Module {
  readonly steps: readonly TensorModule[];

  constructor(entries: readonly (readonly [string, TensorModule])[]) {
    super();
    this.steps = entries.map(([name, module]) => this.registerModule(name, module));
  }

  forward(input: Tensor): Tensor {
    return runInOrder(this.steps, input);
  }
}

/**
 * A residual unit: the main path (children registered under their own names, applied in order)
 * plus the shortcut (a named module, or the input itself when null).
 */
export class InferenceResidual extends Module {
  readonly mainSteps: readonly TensorModule[];
  readonly shortcut: TensorModule | null;

  constructor(main: readonly (readonly [string, TensorModule])[], shortcut: readonly [string, TensorModule] | null) {
    super();
    this.mainSteps = main.map(([name, module]) => this.registerModule(name, module));
    this.shortcut = shortcut === null ? null : this.registerModule(shortcut[0], shortcut[1]);
  }

  forward(x: Tensor): Tensor {
    return tidy(() => F.add(runInOrder(this.mainSteps, x), this.shortcut === null ? x : this.shortcut.call(x)));
  }
}
