// The typed Tensor: a handle to an at::Tensor, its lifetime and its metadata. It knows the native
// layer and scopes only; the methods that run operators (add, reshape, backward, ...) are installed
// on its prototype by tensor-methods.ts, which imports the operators (so ops.ts can import this file
// without a circle).
import type { DType, NativeTensor } from './native.js';
import { TENSOR_MARK, track, type Disposable } from './scope.js';

export type TypedArray =
  | Float32Array
  | Float64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array
  | BigInt64Array;

export type Shape = readonly number[];
export type Scalar = number | boolean;
export type TensorOrScalar = Tensor | number;

export class Tensor implements Disposable {
  // On the prototype, not an instance field: a field is defined on every tensor an operator returns.
  get [TENSOR_MARK](): true {
    return true;
  }
  private nativeHandle: NativeTensor | null;

  private constructor(handle: NativeTensor) {
    this.nativeHandle = handle;
    track(this);
  }

  /** Wraps a native handle (takes ownership). */
  static fromHandle(handle: NativeTensor): Tensor {
    return new Tensor(handle);
  }

  /** The native handle; throws if the tensor was disposed. */
  get handle(): NativeTensor {
    if (this.nativeHandle === null) throw new Error('tensor was already disposed');
    return this.nativeHandle;
  }

  get isDisposed(): boolean {
    return this.nativeHandle === null || this.nativeHandle.isDisposed;
  }

  /** No tidy() scope owns this tensor any more: its storage is reported to V8 so the GC feels its size. */
  unscoped(): void {
    this.nativeHandle?.reportMemory();
  }

  /** Frees the native tensor now (idempotent). Views and autograd graphs keep their own references. */
  dispose(): void {
    if (this.nativeHandle !== null) {
      this.nativeHandle.dispose();
      this.nativeHandle = null;
    }
  }

  get shape(): number[] {
    return this.handle.shape();
  }
  get strides(): number[] {
    return this.handle.strides();
  }
  get dtype(): DType {
    return this.handle.dtype();
  }
  get device(): string {
    return this.handle.device();
  }
  get ndim(): number {
    return this.handle.dim();
  }
  get numel(): number {
    return this.handle.numel();
  }
  size(dim: number): number {
    const shape = this.shape;
    const index = dim < 0 ? shape.length + dim : dim;
    if (index < 0 || index >= shape.length) throw new RangeError(`size(${dim}) of a ${shape.length}-d tensor`);
    return shape[index] as number;
  }
  isContiguous(): boolean {
    return this.handle.isContiguous();
  }
  /** Identity of the underlying storage (equal for views of one tensor). */
  storageId(): number {
    return this.handle.storageId();
  }

  // ---- data ------------------------------------------------------------------------------
  /** The raw bytes of a contiguous CPU copy. */
  bytes(): Uint8Array {
    return new Uint8Array(this.handle.copyToBuffer());
  }
  item(): number {
    const value = this.handle.item();
    return typeof value === 'boolean' ? (value ? 1 : 0) : value;
  }
  toString(): string {
    return `Tensor(shape=[${this.shape.join(', ')}], dtype=${this.dtype}, device=${this.device}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }

  // ---- autograd ----------------------------------------------------------------------------
  get requiresGrad(): boolean {
    return this.handle.requiresGrad();
  }
  /** Sets requiresGrad in place (leaf tensors only) and returns this. */
  requiresGrad_(requires = true): this {
    this.handle.setRequiresGrad(requires);
    return this;
  }
  /** The accumulated gradient (a new handle each call; dispose it when done), or null. */
  get grad(): Tensor | null {
    const g = this.handle.grad();
    return g === null ? null : Tensor.fromHandle(g);
  }
  set grad(value: Tensor | null) {
    this.handle.setGrad(value === null ? null : value.handle);
  }
  get isLeaf(): boolean {
    return this.handle.isLeaf();
  }
  get gradFn(): string | null {
    return this.handle.gradFn();
  }
  retainGrad(): this {
    this.handle.retainGrad();
    return this;
  }
  /** Calls hook(grad) during backward; it may return a replacement gradient. */
  registerHook(hook: (grad: Tensor) => Tensor | void): number {
    return this.handle.registerHook((gradHandle) => {
      const grad = Tensor.fromHandle(gradHandle);
      const replacement = hook(grad);
      return replacement instanceof Tensor ? replacement.handle : null;
    });
  }
  /** Copies bytes from a typed array into this contiguous CPU tensor. */
  copyFromArray(source: TypedArray): this {
    this.handle.copyFromBuffer(source);
    return this;
  }
}

/** The handle of each tensor, for native calls that take lists. */
export function handlesOf(tensors: readonly Tensor[]): NativeTensor[] {
  return tensors.map((t) => t.handle);
}
