// AdamW: Adam with decoupled weight decay (torch.optim.AdamW's update rule, amsgrad optional).
import { Tensor } from '../tensor.js';
import * as F from '../ops.js';
import { tidy } from '../scope.js';
import { noGrad } from '../autograd.js';
import { Optimizer, checkRange, type ParamGroupInput } from './optimizer.js';

export interface AdamWHyperparameters {
  lr: number;
  betas: readonly [number, number];
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
  /** Ascend instead of descend. */
  maximize: boolean;
}

export type AdamWOptions = Partial<AdamWHyperparameters>;

/**
 * For each parameter with a gradient g, at step t (1-based), as PyTorch:
 *   p *= 1 - lr * weightDecay
 *   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g^2
 *   vmax = max(vmax, v)   (amsgrad: used instead of v below)
 *   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * State per parameter: step, exp_avg, exp_avg_sq (and max_exp_avg_sq).
 */
export class AdamW extends Optimizer<AdamWHyperparameters> {
  constructor(params: readonly Tensor[] | readonly ParamGroupInput<AdamWHyperparameters>[], options: AdamWOptions = {}) {
    super(params, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2, amsgrad: false, maximize: false, ...options });
  }

  protected validateHyperparameters(h: AdamWHyperparameters, where: string): void {
    checkRange('AdamW', where, 'learning rate', h.lr, 0);
    checkRange('AdamW', where, 'epsilon', h.eps, 0);
    if (!Array.isArray(h.betas) || h.betas.length !== 2) throw new Error(`AdamW: ${where}: betas must be [beta1, beta2]`);
    checkRange('AdamW', where, 'beta1', h.betas[0], 0, 1, false);
    checkRange('AdamW', where, 'beta2', h.betas[1], 0, 1, false);
    checkRange('AdamW', where, 'weight decay', h.weightDecay, 0);
  }

  step(): void {
    noGrad(() => {
      for (const group of this.paramGroups) {
        const { lr, eps, weightDecay, amsgrad, maximize } = group;
        const [beta1, beta2] = group.betas;
        for (const param of group.params) {
          tidy(() => {
            const rawGrad = param.grad;
            if (rawGrad === null) return;
            const grad = maximize ? rawGrad.neg() : rawGrad;
            const state = this.stateOf(param);
            if (typeof state.step !== 'number') {
              state.step = 0;
              this.setStateTensor(state, 'exp_avg', F.zerosLike(param));
              this.setStateTensor(state, 'exp_avg_sq', F.zerosLike(param));
              if (amsgrad) this.setStateTensor(state, 'max_exp_avg_sq', F.zerosLike(param));
            }
            const step = (state.step as number) + 1;
            state.step = step;
            const expAvg = state.exp_avg as Tensor;
            const expAvgSq = state.exp_avg_sq as Tensor;
            if (weightDecay !== 0) param.mul_(1 - lr * weightDecay);
            F.lerp_(expAvg, grad, 1 - beta1);
            F.addcmul_(expAvgSq.mul_(beta2), grad, grad, 1 - beta2);
            const biasCorrection1 = 1 - beta1 ** step;
            const biasCorrection2Sqrt = Math.sqrt(1 - beta2 ** step);
            let second = expAvgSq;
            if (amsgrad) {
              let maxSq = state.max_exp_avg_sq;
              if (!(maxSq instanceof Tensor)) maxSq = this.setStateTensor(state, 'max_exp_avg_sq', F.zerosLike(param));
              second = F.maximum_(maxSq, expAvgSq);
            }
            // denom = sqrt(v) / sqrt(1 - beta2^t) + eps, computed in scratch memory.
            const denom = F.sqrt_(this.workspaceLike(param).copy_(second)).div_(biasCorrection2Sqrt).add_(eps);
            F.addcdiv_(param, expAvg, denom, -lr / biasCorrection1);
          });
        }
      }
    });
  }
}
