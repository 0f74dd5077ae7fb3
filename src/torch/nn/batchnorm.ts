// Batch normalization over (N, C) / (N, C, L) and (N, C, H, W) inputs, with running statistics.
import { Tensor } from '../tensor.js';
import * as F from '../ops.js';
import { noGrad } from '../autograd.js';
import { Module } from './module.js';

export interface BatchNormOptions {
  eps?: number;
  /** Weight of the new batch statistic in the running average; null: cumulative average. Default 0.1. */
  momentum?: number | null;
  /** Learnable per-channel scale and shift (default true). */
  affine?: boolean;
  /** Keep running mean/var (default true); without them, eval mode also uses batch statistics. */
  trackRunningStats?: boolean;
}

abstract class BatchNormBase extends Module {
  readonly numFeatures: number;
  readonly eps: number;
  readonly momentum: number | null;
  readonly affine: boolean;
  readonly trackRunningStats: boolean;

  constructor(numFeatures: number, options: BatchNormOptions = {}) {
    super();
    this.numFeatures = numFeatures;
    this.eps = options.eps ?? 1e-5;
    this.momentum = options.momentum === undefined ? 0.1 : options.momentum;
    this.affine = options.affine ?? true;
    this.trackRunningStats = options.trackRunningStats ?? true;
    if (this.affine) {
      this.registerParameter('weight', F.ones([numFeatures]));
      this.registerParameter('bias', F.zeros([numFeatures]));
    }
    if (this.trackRunningStats) {
      this.registerBuffer('running_mean', F.zeros([numFeatures]));
      this.registerBuffer('running_var', F.ones([numFeatures]));
      this.registerBuffer('num_batches_tracked', F.zeros([], { dtype: 'int64' }));
    }
  }

  protected abstract checkInput(input: Tensor): void;

  get weight(): Tensor | null {
    return this.affine ? this.parameter('weight') : null;
  }
  get bias(): Tensor | null {
    return this.affine ? this.parameter('bias') : null;
  }
  get runningMean(): Tensor | null {
    return this.trackRunningStats ? this.buffer('running_mean') : null;
  }
  get runningVar(): Tensor | null {
    return this.trackRunningStats ? this.buffer('running_var') : null;
  }
  get numBatchesTracked(): Tensor | null {
    return this.trackRunningStats ? this.buffer('num_batches_tracked') : null;
  }

  /** Resets running statistics to mean 0, var 1 and the batch count to 0. */
  resetRunningStats(): void {
    if (!this.trackRunningStats) return;
    noGrad(() => {
      this.buffer('running_mean').zero_();
      this.buffer('running_var').fill_(1);
      this.buffer('num_batches_tracked').zero_();
    });
  }

  forward(input: Tensor): Tensor {
    this.checkInput(input);
    const channels = input.shape[1];
    if (channels !== this.numFeatures) {
      throw new Error(`${this.typeName}: expected ${this.numFeatures} channels, got input of shape [${input.shape.join(', ')}]`);
    }
    let factor = this.momentum ?? 0;
    if (this.training && this.trackRunningStats) {
      const count = this.buffer('num_batches_tracked');
      noGrad(() => count.add_(1));
      if (this.momentum === null) factor = 1 / count.item();
    }
    // In training batch_norm updates the running stats in place; in eval it normalizes with them.
    return F.batchNorm(input, this.runningMean, this.runningVar, this.weight, this.bias, {
      training: this.training || !this.trackRunningStats,
      momentum: factor,
      eps: this.eps,
    });
  }
}

/** BatchNorm over (N, C) or (N, C, L) inputs. */
export class BatchNorm1d extends BatchNormBase {
  protected checkInput(input: Tensor): void {
    if (input.ndim !== 2 && input.ndim !== 3) {
      throw new Error(`BatchNorm1d: expected 2D or 3D input, got shape [${input.shape.join(', ')}]`);
    }
  }
}

/** BatchNorm over (N, C, H, W) inputs. */
export class BatchNorm2d extends BatchNormBase {
  protected checkInput(input: Tensor): void {
    if (input.ndim !== 4) throw new Error(`BatchNorm2d: expected 4D input, got shape [${input.shape.join(', ')}]`);
  }
}
