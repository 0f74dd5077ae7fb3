// Finite-difference gradient checking (torch.autograd.gradcheck), for float64 inputs.
import { Tensor } from './tensor.js';
import * as F from './ops.js';
import { noGrad } from './autograd.js';
import { tidy } from './scope.js';

export interface GradcheckOptions {
  eps?: number;
  atol?: number;
  rtol?: number;
  /** Seed-free projection weights: the scalar checked is sum(output * weights). */
  projection?: Tensor;
}

export interface GradcheckMismatch {
  input: number;
  element: number;
  analytic: number;
  numeric: number;
}

export interface GradcheckResult {
  ok: boolean;
  maxAbsError: number;
  mismatches: GradcheckMismatch[];
}

/**
 * Compares the autograd gradient of sum(fn(inputs) * w) (w fixed random weights) with central
 * differences, element by element. Inputs should be small float64 tensors with requiresGrad.
 */
export function gradcheck(fn: (...inputs: Tensor[]) => Tensor, inputs: Tensor[], options: GradcheckOptions = {}): GradcheckResult {
  const eps = options.eps ?? 1e-6;
  const atol = options.atol ?? 1e-5;
  const rtol = options.rtol ?? 1e-3;
  return tidy(() => {
    const probe = noGrad(() => fn(...inputs));
    const weights = options.projection ?? F.randn(probe.shape, { dtype: probe.dtype });
    const scalarOf = (): Tensor => F.sum(F.mul(fn(...inputs), weights));

    for (const input of inputs) input.grad = null;
    scalarOf().backward();
    const analytic = inputs.map((input) => {
      const grad = input.grad;
      return grad === null ? new Float64Array(input.numel) : Float64Array.from(grad.dataSync() as Float64Array);
    });

    const mismatches: GradcheckMismatch[] = [];
    let maxAbsError = 0;
    inputs.forEach((input, inputIndex) => {
      if (!input.requiresGrad) return;
      for (let element = 0; element < input.numel; element++) {
        // Views and in-place writes both under no-grad, as autograd requires for leaf edits.
        const setElement = (value: number): void =>
          tidy(() => noGrad(() => void input.view([-1]).select(0, element).fill_(value)));
        const original = tidy(() => noGrad(() => input.view([-1]).select(0, element).item()));
        const evaluate = (value: number): number => {
          setElement(value);
          return tidy(() => noGrad(() => scalarOf().item()));
        };
        const plus = evaluate(original + eps);
        const minus = evaluate(original - eps);
        setElement(original);
        const numeric = (plus - minus) / (2 * eps);
        const exact = (analytic[inputIndex] as Float64Array)[element] as number;
        const error = Math.abs(exact - numeric);
        maxAbsError = Math.max(maxAbsError, error);
        if (error > atol + rtol * Math.abs(numeric)) mismatches.push({ input: inputIndex, element, analytic: exact, numeric });
      }
    });
    for (const input of inputs) input.grad = null;
    return { ok: mismatches.length === 0, maxAbsError, mismatches };
  });
}
