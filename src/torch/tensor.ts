// The typed Tensor: a handle to an at::Tensor, its lifetime and its metadata. It knows the native
// layer and scopes only; the methods that run operators (add, reshape, backward, ...) are installed
// on its prototype by tensor-methods.ts, which imports the operators (so ops.ts can import this file
// without a circle).
import { native, type DType, type NativeTensor } from './native.js';
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

// The GC backstop for tensors no scope owns: frees the native tensor once its Tensor is collected.
const releaseWhenCollected = new FinalizationRegistry<NativeTensor>((handle) => native.tensorRelease(handle));

export class Tensor implements Disposable {
  // On the prototype, not an instance field: a field is defined on every tensor an operator returns.
  get [TENSOR_MARK](): true {
    return true;
  }
  private nativeHandle: NativeTensor | null;
  // Registered with releaseWhenCollected (only once no scope owns it: scoped tensors die with their scope).
  private collectable = false;

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
    return this.nativeHandle === null;
  }

  /**
   * No tidy() scope owns this tensor any more: from now on the GC frees it if it is forgotten, and
   * its storage is reported to V8 so the GC feels its size.
   */
  unscoped(): void {
    if (this.nativeHandle === null || this.collectable) return;
    this.collectable = true;
    releaseWhenCollected.register(this, this.nativeHandle, this);
    native.tensorReportMemory(this.nativeHandle);
  }

  /** Frees the native tensor now (idempotent). Views and autograd graphs keep their own references. */
  dispose(): void {
    if (this.nativeHandle === null) return;
    native.tensorRelease(this.nativeHandle);
    this.nativeHandle = null;
    if (this.collectable) releaseWhenCollected.unregister(this);
  }

  get shape(): number[] {
    return native.tensorShape(this.handle);
  }
  get strides(): number[] {
    return native.tensorStrides(this.handle);
  }
  get dtype(): DType {
    return native.tensorDtype(this.handle);
  }
  get device(): string {
    return native.tensorDevice(this.handle);
  }
  get ndim(): number {
    return native.tensorDim(this.handle);
  }
  get numel(): number {
    return native.tensorNumel(this.handle);
  }
  size(dim: number): number {
    const shape = this.shape;
    const index = dim < 0 ? shape.length + dim : dim;
    if (index < 0 || index >= shape.length) throw new RangeError(`size(${dim}) of a ${shape.length}-d tensor`);
    return shape[index] as number;
  }
  isContiguous(): boolean {
    return native.tensorIsContiguous(this.handle);
  }
  /** Identity of the underlying storage (equal for views of one tensor). */
  storageId(): number {
    return native.tensorStorageId(this.handle);
  }

  // ---- data ------------------------------------------------------------------------------
  /** The raw bytes of a contiguous CPU copy. */
  bytes(): Uint8Array {
    return new Uint8Array(native.tensorCopyToBuffer(this.handle));
  }
  item(): number {
    const value = native.tensorItem(this.handle);
    return typeof value === 'boolean' ? (value ? 1 : 0) : value;
  }
  toString(): string {
    return `Tensor(shape=[${this.shape.join(', ')}], dtype=${this.dtype}, device=${this.device}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }

  // ---- autograd ----------------------------------------------------------------------------
  get requiresGrad(): boolean {
    return native.tensorRequiresGrad(this.handle);
  }
  /** Sets requiresGrad in place (leaf tensors only) and returns this. */
  requiresGrad_(requires = true): this {
    native.tensorSetRequiresGrad(this.handle, requires);
    return this;
  }
  /** The accumulated gradient (a new handle each call; dispose it when done), or null. */
  get grad(): Tensor | null {
    const g = native.tensorGrad(this.handle);
    return g === null ? null : Tensor.fromHandle(g);
  }
  set grad(value: Tensor | null) {
    native.tensorSetGrad(this.handle, value === null ? null : value.handle);
  }
  get isLeaf(): boolean {
    return native.tensorIsLeaf(this.handle);
  }
  get gradFn(): string | null {
    return native.tensorGradFn(this.handle);
  }
  retainGrad(): this {
    native.tensorRetainGrad(this.handle);
    return this;
  }
  /** Calls hook(grad) during backward; it may return a replacement gradient. */
  registerHook(hook: (grad: Tensor) => Tensor | void): number {
    return native.tensorRegisterHook(this.handle, (gradHandle) => {
      const grad = Tensor.fromHandle(gradHandle);
      const replacement = hook(grad);
      return replacement instanceof Tensor ? replacement.handle : null;
    });
  }
  /** An ArrayBuffer over this contiguous CPU tensor's own memory (it keeps the memory alive). */
  viewBuffer(): ArrayBuffer {
    return native.tensorViewBuffer(this.handle);
  }
  /** Copies bytes from a typed array into this contiguous CPU tensor. */
  copyFromArray(source: TypedArray): this {
    native.tensorCopyFromBuffer(this.handle, source);
    return this;
  }
}

/** The handle of each tensor, for native calls that take lists. */
export function handlesOf(tensors: readonly Tensor[]): NativeTensor[] {
  return tensors.map((t) => t.handle);
}
