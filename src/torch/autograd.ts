// Autograd entry points: backward, grad-mode scopes and custom functions whose backward is TypeScript.
import { native } from './native.js';
import { Tensor } from './tensor.js';

// Tensors that JS backward callbacks handed to the engine; freed once the engine has taken them.
let backwardDepth = 0;
const handedToEngine: { dispose(): void }[] = [];

function releaseHandedToEngine(): void {
  for (const item of handedToEngine.splice(0)) item.dispose();
}

/** Runs backward from `tensors` (scalars may omit their gradient). */
export function runBackward(tensors: readonly Tensor[], grads: readonly (Tensor | null)[], retainGraph = false): void {
  backwardDepth++;
  try {
    native.backward(
      tensors.map((t) => t.handle),
      grads.map((g) => (g === null ? null : g.handle)),
      retainGraph,
    );
  } finally {
    backwardDepth--;
    if (backwardDepth === 0) releaseHandedToEngine();
  }
}

/** backward() over several roots at once, as torch.autograd.backward. */
export function backward(tensors: readonly Tensor[], grads?: readonly (Tensor | null)[], options: { retainGraph?: boolean } = {}): void {
  runBackward(tensors, grads ?? tensors.map(() => null), options.retainGraph ?? false);
}

function withGradMode<T>(enabled: boolean, fn: () => T): T {
  const previous = native.setGradEnabled(enabled);
  try {
    const result = fn();
    if (result instanceof Promise) throw new Error('grad-mode scopes must be synchronous');
    return result;
  } finally {
    native.setGradEnabled(previous);
  }
}

/** Runs fn without recording operations for autograd (torch.no_grad). */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}

/** Runs fn with autograd recording on (torch.enable_grad). */
export function enableGrad<T>(fn: () => T): T {
  return withGradMode(true, fn);
}

export function isGradEnabled(): boolean {
  return native.isGradEnabled();
}

/**
 * Builds a differentiable operation whose forward and backward are written in TypeScript
 * (torch.autograd.Function). `forward` runs without grad; `backward` receives the gradient of each
 * output (null where none flowed) and returns one gradient (or null) per input. The tensors it
 * returns are handed to the autograd engine and disposed once backward has finished with them.
 */
export function customFunction<Outputs extends Tensor[]>(
  name: string,
  inputs: readonly Tensor[],
  forward: () => Outputs,
  backward: (gradOutputs: (Tensor | null)[]) => (Tensor | null)[],
): Outputs {
  const outputs = noGrad(forward);
  native.attachFunction(
    inputs.map((t) => t.handle),
    outputs.map((t) => t.handle),
    (gradHandles) => {
      const gradOutputs = gradHandles.map((h) => (h === null ? null : Tensor.fromHandle(h)));
      const gradInputs = backward(gradOutputs);
      if (gradInputs.length !== inputs.length) {
        throw new Error(`${name}: backward returned ${gradInputs.length} gradients for ${inputs.length} inputs`);
      }
      for (const g of gradOutputs) if (g !== null) handedToEngine.push(g);
      for (const g of gradInputs) if (g !== null) handedToEngine.push(g);
      return gradInputs.map((g) => (g === null ? null : g.handle));
    },
    name,
  );
  return outputs;
}
