// Deterministic tensor lifetime in the spirit of TF.js tidy(): every tensor created inside a scope
// is disposed when the scope ends, except those returned from it or kept with keep().
// GC finalizers of the native handles remain as a backstop only.

/** Anything that owns native memory and can be released now. */
export interface Disposable {
  dispose(): void;
  readonly isDisposed: boolean;
  /**
   * Called once no scope owns it: from then on only dispose() or the GC frees it, so it should
   * make its size known to the GC (a scoped one cannot be collected before its scope ends).
   */
  unscoped?(): void;
}

export const TENSOR_MARK: unique symbol = Symbol.for('plsc.tensor');

interface ScopeFrame {
  // Each tensor at most once: the constructor tracks it in one frame, and only the frame holding
  // it moves it to the parent, so an array suffices (no Set to build and hash per scope).
  tracked: Disposable[];
}

const frames: ScopeFrame[] = [];
const kept = new WeakSet<Disposable>();

/** Called by the Tensor constructor: registers the tensor with the innermost scope. */
export function track<T extends Disposable>(tensor: T): T {
  const frame = frames[frames.length - 1];
  if (frame !== undefined) frame.tracked.push(tensor);
  else tensor.unscoped?.();
  return tensor;
}

/** Exempts a tensor from disposal by the enclosing scopes (it still dies with dispose() or GC). */
export function keep<T extends Disposable>(tensor: T): T {
  // Scopes skip kept tensors when they end; the frame's array may still list it until then.
  kept.add(tensor);
  tensor.unscoped?.();
  return tensor;
}

/** Releases every tensor found in a value (arrays, plain objects, Maps, Sets are searched). */
export function dispose(container: unknown): void {
  for (const tensor of collectDisposables(container)) tensor.dispose();
}

function isDisposable(value: unknown): value is Disposable {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[TENSOR_MARK] === true;
}

/** The tensors reachable from a value through arrays, plain objects, Maps and Sets. */
export function collectDisposables(value: unknown, into: Set<Disposable> = new Set(), seen: Set<object> = new Set()): Set<Disposable> {
  if (typeof value !== 'object' || value === null) return into;
  if (isDisposable(value)) {
    into.add(value);
    return into;
  }
  if (seen.has(value)) return into;
  seen.add(value);
  if (Array.isArray(value)) {
    for (const item of value) collectDisposables(item, into, seen);
  } else if (value instanceof Map) {
    for (const item of value.values()) collectDisposables(item, into, seen);
  } else if (value instanceof Set) {
    for (const item of value) collectDisposables(item, into, seen);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const item of Object.values(value)) collectDisposables(item, into, seen);
  }
  return into;
}

function openFrame(): ScopeFrame {
  const frame: ScopeFrame = { tracked: [] };
  frames.push(frame);
  return frame;
}

// Removes the frame from the stack (an async scope need not be the innermost when it ends).
function closeFrame(frame: ScopeFrame): void {
  if (frames[frames.length - 1] === frame) {
    frames.pop();
    return;
  }
  const index = frames.lastIndexOf(frame);
  if (index >= 0) frames.splice(index, 1);
}

// After a failure: every tensor the frame created goes, except kept ones.
function discardFrame(frame: ScopeFrame): void {
  closeFrame(frame);
  for (const tensor of frame.tracked) if (!kept.has(tensor)) tensor.dispose();
}

// After success: tensors this scope created that are reachable from the result survive and move
// to the enclosing scope. Others in the result (created outside it: a parameter, an outer scope's
// tensor) stay with whoever owns them.
function finishFrame<T>(frame: ScopeFrame, result: T): T {
  if (result === undefined || result === null) {
    for (const tensor of frame.tracked) if (!kept.has(tensor)) tensor.dispose();
    return result;
  }
  const survivors = collectDisposables(result);
  const parent = frames[frames.length - 1];
  for (const tensor of frame.tracked) {
    if (kept.has(tensor)) continue;
    if (!survivors.has(tensor)) tensor.dispose();
    else if (tensor.isDisposed) continue;
    else if (parent !== undefined) parent.tracked.push(tensor);
    else tensor.unscoped?.();
  }
  return result;
}

/**
 * Runs fn and disposes every tensor created during the call except those reachable from its
 * result and those passed to keep(). Returned tensors it created move to the enclosing scope, if
 * any; a returned tensor created outside it stays with its owner.
 * fn must be synchronous: a Promise result is rejected with an error.
 */
export function tidy<T>(fn: () => T): T {
  const frame = openFrame();
  let result: T;
  try {
    result = fn();
  } catch (err) {
    discardFrame(frame);
    throw err;
  }
  closeFrame(frame);
  if (result instanceof Promise) {
    throw new Error('tidy(): the function must be synchronous (use tidyAsync for async work)');
  }
  return finishFrame(frame, result);
}

/**
 * Like tidy() for async functions. Tensors created by other tasks interleaving with this one are
 * not attributed to it only while this scope is the innermost; use it for sequential pipelines.
 */
export async function tidyAsync<T>(fn: () => Promise<T>): Promise<T> {
  const frame = openFrame();
  let result: T;
  try {
    result = await fn();
  } catch (err) {
    discardFrame(frame);
    throw err;
  }
  closeFrame(frame);
  return finishFrame(frame, result);
}

/** Number of open scopes (for tests and diagnostics). */
export function scopeDepth(): number {
  return frames.length;
}
