// The Tensor methods that run operators, installed on Tensor.prototype (the tfjs-core pattern):
// tensor.ts stays free of ops.ts, and the method types join the Tensor class by declaration
// merging. src/torch/index.ts imports this module, so any import of the package installs them.
import { native, type DType } from './native.js';
import { Tensor, type Shape, type TensorOrScalar, type TypedArray } from './tensor.js';
import * as F from './ops.js';
import { runBackward } from './autograd.js';

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

/** The methods; each takes the tensor as `this`. Installed below, never instantiated. */
class TensorMethods {
  // ---- data ------------------------------------------------------------------------------
  /** A copy of the elements in row-major order (float16/bfloat16 come back as float32). */
  dataSync(this: Tensor): TypedArray {
    if (this.dtype === 'float16' || this.dtype === 'bfloat16') {
      const asFloat = this.to('float32');
      try {
        return asFloat.dataSync();
      } finally {
        asFloat.dispose();
      }
    }
    return bytesToTyped(native.tensorCopyToBuffer(this.handle), this.dtype);
  }
  /** The elements as plain numbers (int64 converted; exact below 2^53). */
  toArray(this: Tensor): number[] {
    const data = this.dataSync();
    if (data instanceof BigInt64Array) return Array.from(data, (v) => Number(v));
    return Array.from(data as ArrayLike<number>);
  }
  // ---- autograd ----------------------------------------------------------------------------
  backward(this: Tensor, gradient?: Tensor, options: { retainGraph?: boolean } = {}): void {
    runBackward([this], [gradient ?? null], options.retainGraph ?? false);
  }
  detach(this: Tensor): Tensor {
    return F.detach(this);
  }

  // ---- conversion --------------------------------------------------------------------------
  to(this: Tensor, dtypeOrDevice: DType | string): Tensor {
    return F.to(this, dtypeOrDevice);
  }
  float(this: Tensor): Tensor {
    return F.to(this, 'float32');
  }
  long(this: Tensor): Tensor {
    return F.to(this, 'int64');
  }
  int(this: Tensor): Tensor {
    return F.to(this, 'int32');
  }
  half(this: Tensor): Tensor {
    return F.to(this, 'float16');
  }
  bool(this: Tensor): Tensor {
    return F.to(this, 'bool');
  }
  clone(this: Tensor): Tensor {
    return F.clone(this);
  }
  contiguous(this: Tensor): Tensor {
    return F.contiguous(this);
  }

  // ---- shape -------------------------------------------------------------------------------
  reshape(this: Tensor, shape: Shape): Tensor {
    return F.reshape(this, shape);
  }
  view(this: Tensor, shape: Shape): Tensor {
    return F.view(this, shape);
  }
  flatten(this: Tensor, startDim = 0, endDim = -1): Tensor {
    return F.flatten(this, startDim, endDim);
  }
  unsqueeze(this: Tensor, dim: number): Tensor {
    return F.unsqueeze(this, dim);
  }
  squeeze(this: Tensor, dim?: number): Tensor {
    return F.squeeze(this, dim);
  }
  permute(this: Tensor, dims: Shape): Tensor {
    return F.permute(this, dims);
  }
  transpose(this: Tensor, dim0: number, dim1: number): Tensor {
    return F.transpose(this, dim0, dim1);
  }
  t(this: Tensor): Tensor {
    return F.transpose(this, 0, 1);
  }
  expand(this: Tensor, shape: Shape): Tensor {
    return F.expand(this, shape);
  }
  narrow(this: Tensor, dim: number, start: number, length: number): Tensor {
    return F.narrow(this, dim, start, length);
  }
  slice(this: Tensor, dim: number, start?: number, end?: number, step = 1): Tensor {
    return F.slice(this, dim, start, end, step);
  }
  select(this: Tensor, dim: number, index: number): Tensor {
    return F.select(this, dim, index);
  }
  split(this: Tensor, splitSize: number | number[], dim = 0): Tensor[] {
    return F.split(this, splitSize, dim);
  }
  chunk(this: Tensor, chunks: number, dim = 0): Tensor[] {
    return F.chunk(this, chunks, dim);
  }
  flip(this: Tensor, dims: Shape): Tensor {
    return F.flip(this, dims);
  }
  repeat(this: Tensor, repeats: Shape): Tensor {
    return F.repeat(this, repeats);
  }

  // ---- math --------------------------------------------------------------------------------
  add(this: Tensor, other: TensorOrScalar, alpha = 1): Tensor {
    return F.add(this, other, alpha);
  }
  sub(this: Tensor, other: TensorOrScalar, alpha = 1): Tensor {
    return F.sub(this, other, alpha);
  }
  mul(this: Tensor, other: TensorOrScalar): Tensor {
    return F.mul(this, other);
  }
  div(this: Tensor, other: TensorOrScalar): Tensor {
    return F.div(this, other);
  }
  neg(this: Tensor): Tensor {
    return F.neg(this);
  }
  pow(this: Tensor, exponent: TensorOrScalar): Tensor {
    return F.pow(this, exponent);
  }
  exp(this: Tensor): Tensor {
    return F.exp(this);
  }
  log(this: Tensor): Tensor {
    return F.log(this);
  }
  sqrt(this: Tensor): Tensor {
    return F.sqrt(this);
  }
  abs(this: Tensor): Tensor {
    return F.abs(this);
  }
  square(this: Tensor): Tensor {
    return F.mul(this, this);
  }
  clamp(this: Tensor, min?: number | null, max?: number | null): Tensor {
    return F.clamp(this, min, max);
  }
  matmul(this: Tensor, other: Tensor): Tensor {
    return F.matmul(this, other);
  }
  mm(this: Tensor, other: Tensor): Tensor {
    return F.mm(this, other);
  }
  eq(this: Tensor, other: TensorOrScalar): Tensor {
    return F.eq(this, other);
  }
  sum(this: Tensor, dim?: number | number[], keepdim = false): Tensor {
    return F.sum(this, dim, keepdim);
  }
  mean(this: Tensor, dim?: number | number[], keepdim = false): Tensor {
    return F.mean(this, dim, keepdim);
  }
  max(this: Tensor): Tensor {
    return F.max(this);
  }
  min(this: Tensor): Tensor {
    return F.min(this);
  }
  argmax(this: Tensor, dim?: number, keepdim = false): Tensor {
    return F.argmax(this, dim, keepdim);
  }
  norm(this: Tensor, p = 2, dim?: number | number[], keepdim = false): Tensor {
    return F.norm(this, p, dim, keepdim);
  }

  // ---- in place ----------------------------------------------------------------------------
  add_<T extends Tensor>(this: T, other: TensorOrScalar, alpha = 1): T {
    F.add_(this, other, alpha);
    return this;
  }
  sub_<T extends Tensor>(this: T, other: TensorOrScalar, alpha = 1): T {
    F.add_(this, other, -alpha);
    return this;
  }
  mul_<T extends Tensor>(this: T, other: TensorOrScalar): T {
    F.mul_(this, other);
    return this;
  }
  div_<T extends Tensor>(this: T, other: TensorOrScalar): T {
    F.div_(this, other);
    return this;
  }
  zero_<T extends Tensor>(this: T): T {
    F.zero_(this);
    return this;
  }
  fill_<T extends Tensor>(this: T, value: number): T {
    F.fill_(this, value);
    return this;
  }
  copy_<T extends Tensor>(this: T, source: Tensor): T {
    F.copy_(this, source);
    return this;
  }
  clamp_<T extends Tensor>(this: T, min?: number | null, max?: number | null): T {
    F.clamp_(this, min, max);
    return this;
  }
  uniform_<T extends Tensor>(this: T, from = 0, to = 1): T {
    F.uniform_(this, from, to);
    return this;
  }
  normal_<T extends Tensor>(this: T, mean = 0, std = 1): T {
    F.normal_(this, mean, std);
    return this;
  }
}

declare module './tensor.js' {
  interface Tensor extends TensorMethods {}
}

// Copied as descriptors so that they stay non-enumerable, like methods declared in the class.
for (const name of Object.getOwnPropertyNames(TensorMethods.prototype)) {
  if (name === 'constructor') continue;
  const descriptor = Object.getOwnPropertyDescriptor(TensorMethods.prototype, name) as PropertyDescriptor;
  Object.defineProperty(Tensor.prototype, name, descriptor);
}
