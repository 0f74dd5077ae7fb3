// Momentum SGD over chosen rows of a parameter (PLSC v2's sparse momentum): the rows a step names
// get torch.optim.SGD's update with momentum and weight decay; every other row keeps its weight and
// its momentum. One fused pass per call (src/torch/fused.ts) updates the rows in place, in float32,
// whatever the parameter's storage (float32, bfloat16, float16: 16-bit writes keep their rounding).
import { Tensor } from '../tensor.js';
import * as F from '../ops.js';
import { noGrad } from '../autograd.js';
import { tidy } from '../scope.js';
import { rowUpdate, type RowSelection } from '../fused.js';
import { Optimizer, checkRange, type ParamGroup, type ParamGroupInput } from './optimizer.js';

export interface RowSparseSGDHyperparameters {
  lr: number;
  momentum: number;
  weightDecay: number;
}

export type RowSparseSGDOptions = Partial<RowSparseSGDHyperparameters> & { lr: number };

/** The gradient of some rows of a parameter. */
export interface RowGradient {
  /** Rows of the parameter (its first dimension). */
  rows: RowSelection;
  /** float32, one row per selected row in their order: [count, D], or [count] for a 1-d parameter. */
  grad: Tensor;
  /**
   * float32 [count]: 1 / |w|^2 of each row, for a parameter used as w / |w| (class centres): the
   * update then also takes the normalization's radial term, g - (g . w) / |w|^2 * w.
   */
  inverseSquaredNorm?: Tensor | null;
  /** float32 [count, D], written: the rows before this update, widened to float32 (2-d parameters). */
  previousRows?: Tensor | null;
}

/**
 * For each given row w of a parameter, with its gradient g and momentum row m (zeros at first):
 *   d = g + weightDecay * w;  m = d + momentum * m;  w -= lr * m
 * (torch.optim.SGD's rule with dampening 0, no Nesterov). The momentum buffers are created with the
 * parameter's shape and dtype; momentumBuffer() hands them out, so an owner can store them with the
 * rows (a class shard's checkpoint), and loadStateDict() restores them in place.
 */
export class RowSparseSGD extends Optimizer<RowSparseSGDHyperparameters> {
  constructor(params: readonly Tensor[] | readonly ParamGroupInput<RowSparseSGDHyperparameters>[], options: RowSparseSGDOptions) {
    super(params, { momentum: 0, weightDecay: 0, ...options });
    for (const group of this.paramGroups) {
      group.params.forEach((param, i) => {
        if (param.ndim !== 1 && param.ndim !== 2) throw new Error(`RowSparseSGD: parameter ${i} of a param group has shape [${param.shape.join(', ')}] (expected rows: 1-d or 2-d)`);
      });
    }
  }

  protected validateHyperparameters(h: RowSparseSGDHyperparameters, where: string): void {
    checkRange('RowSparseSGD', where, 'learning rate', h.lr, 0);
    checkRange('RowSparseSGD', where, 'momentum', h.momentum, 0);
    checkRange('RowSparseSGD', where, 'weight decay', h.weightDecay, 0);
  }

  /** The momentum of `param` (same shape and dtype), created as zeros on first use. */
  momentumBuffer(param: Tensor): Tensor {
    this.groupOf(param);
    const state = this.stateOf(param);
    const found = state.momentum_buffer;
    if (found instanceof Tensor) return found;
    return this.setStateTensor(state, 'momentum_buffer', F.zeros(param.shape, { dtype: param.dtype, device: param.device }));
  }

  /**
   * Updates the given rows of `param` in place (each row at most once per call: the rows are
   * updated in parallel, and a repeated row index is an error). `roundingKey` (non-negative integers) seeds the
   * stochastic rounding of bfloat16 writes: the same key, rows and values give the same result.
   */
  stepRows(param: Tensor, gradient: RowGradient, roundingKey: readonly number[]): void {
    const group = this.groupOf(param);
    if (param.ndim !== 2 && gradient.previousRows) throw new Error('RowSparseSGD.stepRows: previousRows is for 2-d parameters (rows of a matrix)');
    const momentum = this.momentumBuffer(param);
    noGrad(() =>
      tidy(() => {
        const rows = param.ndim === 2 ? param : F.unsqueeze(param, 1);
        const momentumRows = param.ndim === 2 ? momentum : F.unsqueeze(momentum, 1);
        const grad = param.ndim === 2 ? gradient.grad : F.unsqueeze(gradient.grad, 1);
        rowUpdate(rows, momentumRows, gradient.rows, grad, gradient.inverseSquaredNorm ?? null, group, roundingKey, gradient.previousRows ?? null);
      }),
    );
  }

  /**
   * Applies every dense gradient (param.grad) to all rows of its parameter. bfloat16 rounding is keyed
   * by the parameter's update count and its position among the optimizer's parameters.
   */
  step(): void {
    let position = 0;
    for (const group of this.paramGroups) {
      for (const param of group.params) {
        const at = position++;
        const grad = param.grad;
        if (grad === null) continue;
        const state = this.stateOf(param);
        const updates = typeof state.step === 'number' ? state.step : 0;
        tidy(() => {
          const rows = { first: 0, count: param.shape[0] as number };
          this.stepRows(param, { rows, grad: noGrad(() => F.to(grad, 'float32').contiguous()) }, [updates, at]);
        });
        state.step = updates + 1;
      }
    }
  }

  // The buffers may be shared with the rows' owner: copy saved values into them rather than replace them.
  protected override replaceState(restored: ReadonlyMap<Tensor, readonly [string, Tensor | number][]>): void {
    noGrad(() => {
      for (const group of this.paramGroups) {
        for (const param of group.params) {
          const state = this.stateOf(param);
          const saved = new Map(restored.get(param) ?? []);
          const savedMomentum = saved.get('momentum_buffer');
          if (savedMomentum instanceof Tensor) this.momentumBuffer(param).copy_(savedMomentum);
          else if (state.momentum_buffer instanceof Tensor) state.momentum_buffer.zero_();
          const updates = saved.get('step');
          if (typeof updates === 'number') state.step = updates;
          else delete state.step;
        }
      }
    });
  }

  private groupOf(param: Tensor): ParamGroup<RowSparseSGDHyperparameters> {
    const group = this.paramGroups.find((g) => g.params.includes(param));
    if (group === undefined) throw new Error(`RowSparseSGD: the tensor of shape [${param.shape.join(', ')}] is not one of this optimizer's parameters`);
    return group;
  }
}
