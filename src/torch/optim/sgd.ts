// SGD with momentum, dampening, weight decay and Nesterov momentum (torch.optim.SGD's update rule).
import { Tensor } from '../tensor.js';
import { tidy } from '../scope.js';
import { noGrad } from '../autograd.js';
import { Optimizer, checkRange, type ParamGroupInput } from './optimizer.js';

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
      for (const group of this.paramGroups) {
        const { lr, momentum, dampening, weightDecay, nesterov, maximize } = group;
        for (const param of group.params) {
          tidy(() => {
            const grad = param.grad;
            if (grad === null) return;
            // The gradient itself is never modified: anything derived from it goes to scratch memory.
            let direction = grad;
            if (maximize || weightDecay !== 0 || (momentum !== 0 && nesterov)) {
              direction = this.workspaceLike(param).copy_(grad);
              if (maximize) direction.mul_(-1);
              if (weightDecay !== 0) direction.add_(param, weightDecay);
            }
            if (momentum !== 0) {
              const state = this.stateOf(param);
              let buffer = state.momentum_buffer;
              if (!(buffer instanceof Tensor)) {
                buffer = this.setStateTensor(state, 'momentum_buffer', direction.clone());
              } else {
                buffer.mul_(momentum).add_(direction, 1 - dampening);
              }
              if (nesterov) direction.add_(buffer, momentum);
              else direction = buffer;
            }
            param.add_(direction, -lr);
          });
        }
      }
    });
  }
}
