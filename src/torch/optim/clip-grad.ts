// Gradient clipping by global norm (torch.nn.utils.clip_grad_norm_).
import { Tensor } from '../tensor.js';
import * as F from '../ops.js';
import { tidy } from '../scope.js';
import { noGrad } from '../autograd.js';
import { inRange } from '../../util/validate.js';

export interface ClipGradNormOptions {
  /** Throw when the total norm is NaN or infinite (default false). */
  errorIfNonfinite?: boolean;
}

/**
 * Scales the gradients of `parameters` in place so that their combined `normType`-norm is at most
 * `maxNorm` (coefficient maxNorm / (total + 1e-6), capped at 1). Returns the total norm before
 * clipping. normType may be Infinity (largest absolute element).
 */
export function clipGradNorm(parameters: Iterable<Tensor>, maxNorm: number, normType = 2, options: ClipGradNormOptions = {}): number {
  inRange(maxNorm, 'clipGradNorm: maxNorm', { min: 0, max: Infinity });
  inRange(normType, 'clipGradNorm: normType', { min: 0, max: Infinity, minExclusive: true });
  return noGrad(() =>
    tidy(() => {
      const grads: Tensor[] = [];
      for (const p of parameters) {
        const g = p.grad;
        if (g !== null) grads.push(g);
      }
      if (grads.length === 0) return 0;
      const norms = grads.map((g) => F.norm(g, normType));
      const total = (norms.length === 1 ? (norms[0] as Tensor) : F.norm(F.stack(norms), normType)).item();
      if (!Number.isFinite(total) && options.errorIfNonfinite) {
        throw new Error(`clipGradNorm: the total ${normType}-norm of the gradients is ${total}`);
      }
      const coefficient = maxNorm / (total + 1e-6);
      if (coefficient < 1) for (const g of grads) g.mul_(coefficient);
      return total;
    }),
  );
}
