// The typed Tensor: a handle to an at::Tensor plus the methods models and losses use.
import type { DType, NativeTensor } from './native.js';
import { TENSOR_MARK, track, type Disposable } from './scope.js';
import * as F from './ops.js';
import { runBackward } from './autograd.js';

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

function bytesToTyped(buffer: ArrayBuffer, dtype: DType): TypedArray {
  switch (dtype) {
    case 'float32':
      return new Float32Array(buffer);
    case 'float64':
      return new Float64Array(buffer);
    case 'int64':
      return new BigInt64Array(buffer);
    case 'int32':
      return new Int32Array(buffer);
    case 'int16':
      return new Int16Array(buffer);
    case 'int8':
      return new Int8Array(buffer);
    case 'uint8':
    case 'bool':
      return new Uint8Array(buffer);
    default:
      throw new Error(`no typed array for dtype ${dtype}`);
  }
}

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
  /** A copy of the elements in row-major order (float16/bfloat16 come back as float32). */
  dataSync(): TypedArray {
    if (this.dtype === 'float16' || this.dtype === 'bfloat16') {
      const asFloat = this.to('float32');
      try {
        return asFloat.dataSync();
      } finally {
        asFloat.dispose();
      }
    }
    return bytesToTyped(this.handle.copyToBuffer(), this.dtype);
  }
  /** The elements as plain numbers (int64 converted; exact below 2^53). */
  toArray(): number[] {
    const data = this.dataSync();
    if (data instanceof BigInt64Array) return Array.from(data, (v) => Number(v));
    return Array.from(data as ArrayLike<number>);
  }
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
  backward(gradient?: Tensor, options: { retainGraph?: boolean } = {}): void {
    runBackward([this], [gradient ?? null], options.retainGraph ?? false);
  }
  /** Calls hook(grad) during backward; it may return a replacement gradient. */
  registerHook(hook: (grad: Tensor) => Tensor | void): number {
    return this.handle.registerHook((gradHandle) => {
      const grad = Tensor.fromHandle(gradHandle);
      const replacement = hook(grad);
      return replacement instanceof Tensor ? replacement.handle : null;
    });
  }
  detach(): Tensor {
    return F.detach(this);
  }

  // ---- conversion --------------------------------------------------------------------------
  to(dtypeOrDevice: DType | string): Tensor {
    return F.to(this, dtypeOrDevice);
  }
  float(): Tensor {
    return F.to(this, 'float32');
  }
  long(): Tensor {
    return F.to(this, 'int64');
  }
  int(): Tensor {
    return F.to(this, 'int32');
  }
  half(): Tensor {
    return F.to(this, 'float16');
  }
  bool(): Tensor {
    return F.to(this, 'bool');
  }
  clone(): Tensor {
    return F.clone(this);
  }
  contiguous(): Tensor {
    return F.contiguous(this);
  }

  // ---- shape -------------------------------------------------------------------------------
  reshape(shape: Shape): Tensor {
    return F.reshape(this, shape);
  }
  view(shape: Shape): Tensor {
    return F.view(this, shape);
  }
  flatten(startDim = 0, endDim = -1): Tensor {
    return F.flatten(this, startDim, endDim);
  }
  unsqueeze(dim: number): Tensor {
    return F.unsqueeze(this, dim);
  }
  squeeze(dim?: number): Tensor {
    return F.squeeze(this, dim);
  }
  permute(dims: Shape): Tensor {
    return F.permute(this, dims);
  }
  transpose(dim0: number, dim1: number): Tensor {
    return F.transpose(this, dim0, dim1);
  }
  t(): Tensor {
    return F.transpose(this, 0, 1);
  }
  expand(shape: Shape): Tensor {
    return F.expand(this, shape);
  }
  narrow(dim: number, start: number, length: number): Tensor {
    return F.narrow(this, dim, start, length);
  }
  slice(dim: number, start?: number, end?: number, step = 1): Tensor {
    return F.slice(this, dim, start, end, step);
  }
  select(dim: number, index: number): Tensor {
    return F.select(this, dim, index);
  }
  split(splitSize: number | number[], dim = 0): Tensor[] {
    return F.split(this, splitSize, dim);
  }
  chunk(chunks: number, dim = 0): Tensor[] {
    return F.chunk(this, chunks, dim);
  }
  flip(dims: Shape): Tensor {
    return F.flip(this, dims);
  }
  repeat(repeats: Shape): Tensor {
    return F.repeat(this, repeats);
  }

  // ---- math --------------------------------------------------------------------------------
  add(other: TensorOrScalar, alpha = 1): Tensor {
    return F.add(this, other, alpha);
  }
  sub(other: TensorOrScalar, alpha = 1): Tensor {
    return F.sub(this, other, alpha);
  }
  mul(other: TensorOrScalar): Tensor {
    return F.mul(this, other);
  }
  div(other: TensorOrScalar): Tensor {
    return F.div(this, other);
  }
  neg(): Tensor {
    return F.neg(this);
  }
  pow(exponent: TensorOrScalar): Tensor {
    return F.pow(this, exponent);
  }
  exp(): Tensor {
    return F.exp(this);
  }
  log(): Tensor {
    return F.log(this);
  }
  sqrt(): Tensor {
    return F.sqrt(this);
  }
  abs(): Tensor {
    return F.abs(this);
  }
  square(): Tensor {
    return F.mul(this, this);
  }
  clamp(min?: number | null, max?: number | null): Tensor {
    return F.clamp(this, min, max);
  }
  matmul(other: Tensor): Tensor {
    return F.matmul(this, other);
  }
  mm(other: Tensor): Tensor {
    return F.mm(this, other);
  }
  eq(other: TensorOrScalar): Tensor {
    return F.eq(this, other);
  }
  sum(dim?: number | number[], keepdim = false): Tensor {
    return F.sum(this, dim, keepdim);
  }
  mean(dim?: number | number[], keepdim = false): Tensor {
    return F.mean(this, dim, keepdim);
  }
  max(): Tensor {
    return F.max(this);
  }
  min(): Tensor {
    return F.min(this);
  }
  argmax(dim?: number, keepdim = false): Tensor {
    return F.argmax(this, dim, keepdim);
  }
  norm(p = 2, dim?: number | number[], keepdim = false): Tensor {
    return F.norm(this, p, dim, keepdim);
  }

  // ---- in place ----------------------------------------------------------------------------
  add_(other: TensorOrScalar, alpha = 1): this {
    F.add_(this, other, alpha);
    return this;
  }
  sub_(other: TensorOrScalar, alpha = 1): this {
    F.add_(this, other, -alpha);
    return this;
  }
  mul_(other: TensorOrScalar): this {
    F.mul_(this, other);
    return this;
  }
  div_(other: TensorOrScalar): this {
    F.div_(this, other);
    return this;
  }
  zero_(): this {
    F.zero_(this);
    return this;
  }
  fill_(value: number): this {
    F.fill_(this, value);
    return this;
  }
  copy_(source: Tensor): this {
    F.copy_(this, source);
    return this;
  }
  clamp_(min?: number | null, max?: number | null): this {
    F.clamp_(this, min, max);
    return this;
  }
  uniform_(from = 0, to = 1): this {
    F.uniform_(this, from, to);
    return this;
  }
  normal_(mean = 0, std = 1): this {
    F.normal_(this, mean, std);
    return this;
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
