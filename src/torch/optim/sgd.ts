// SGD with momentum, dampening, weight decay and Nesterov momentum (torch.optim.SGD's update rule).
import { Tensor } from '../tensor.js';
import { tidy } from '../scope.js';
import { noGrad } from '../autograd.js';
import * as F from '../ops.js';
import { Optimizer, checkRange, type ParamGroup, type ParamGroupInput } from './optimizer.js';

export interface SGDHyperparameters {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
  /** Ascend instead of descend. */
  maximize: boolean;
}

export type SGDOptions = Partial<SGDHyperparameters> & { lr: number };

/**
 * For each parameter with a gradient g (PyTorch's rule):
 *   g += weightDecay * p
 *   buf = g on the first step, else buf = momentum * buf + (1 - dampening) * g
 *   g = nesterov ? g + momentum * buf : buf          (when momentum != 0)
 *   p -= lr * g
 */
export class SGD extends Optimizer<SGDHyperparameters> {
  constructor(params: readonly Tensor[] | readonly ParamGroupInput<SGDHyperparameters>[], options: SGDOptions) {
    super(params, { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, maximize: false, ...options });
  }

  protected validateHyperparameters(h: SGDHyperparameters, where: string): void {
    checkRange('SGD', where, 'learning rate', h.lr, 0);
    checkRange('SGD', where, 'momentum', h.momentum, 0);
    checkRange('SGD', where, 'dampening', h.dampening, -Infinity);
    checkRange('SGD', where, 'weight decay', h.weightDecay, 0);
    if (h.nesterov && (h.momentum <= 0 || h.dampening !== 0)) {
      throw new Error(`SGD: ${where}: Nesterov momentum requires a momentum > 0 and zero dampening`);
    }
  }

  step(): void {
    noGrad(() => {
      for (const group of this.paramGroups) tidy(() => this.stepGroup(group));
    });
  }

  // One call per rule line for the whole group (aten::_foreach_*): per-parameter calls cost more
  // than the arithmetic on the small BN/PReLU parameters that make up most of a face backbone.
  private stepGroup(group: ParamGroup<SGDHyperparameters>): void {
    const { lr, momentum, dampening, weightDecay, nesterov, maximize } = group;
    const params: Tensor[] = [];
    const grads: Tensor[] = [];
    for (const param of group.params) {
      const grad = param.grad;
      if (grad === null) continue;
      params.push(param);
      grads.push(grad);
    }
    if (params.length === 0) return;
    // The gradients themselves are never modified: anything derived from them is a new tensor.
    let directions = grads;
    const addToDirections = (others: Tensor[], alpha: number): void => {
      if (directions === grads) directions = F.foreachAdd(grads, others, alpha);
      else F.foreachAdd_(directions, others, alpha);
    };
    if (maximize) directions = F.foreachNeg(grads);
    if (weightDecay !== 0) addToDirections(params, weightDecay);
    if (momentum !== 0) {
      const buffers: Tensor[] = [];
      const running: Tensor[] = [];
      const runningDirections: Tensor[] = [];
      params.forEach((param, i) => {
        const state = this.stateOf(param);
        const direction = directions[i] as Tensor;
        const buffer = state.momentum_buffer;
        if (buffer instanceof Tensor) {
          running.push(buffer);
          runningDirections.push(direction);
          buffers.push(buffer);
        } else {
          buffers.push(this.setStateTensor(state, 'momentum_buffer', direction.clone()));
        }
      });
      if (running.length > 0) {
        F.foreachMul_(running, momentum);
        F.foreachAdd_(running, runningDirections, 1 - dampening);
      }
      if (nesterov) addToDirections(buffers, momentum);
      else directions = buffers;
    }
    F.foreachAdd_(params, directions, -lr);
  }
}
