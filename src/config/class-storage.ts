// The dtype the head stores its class centres (weight and its momentum) in. 16-bit storage halves
// a class's bytes; every GEMM and update still computes in float32, a tile at a time.
import type { DType } from '../torch/native.js';
import type { ClassStorage } from '../torch/fused.js';

export type { ClassStorage };

// The same list as src/torch/fused.ts's, kept here so that config validation and the CLI's flag
// checks do not load the native addon (fused.ts does).
export const CLASS_STORAGES: readonly ClassStorage[] = ['float32', 'bfloat16', 'float16'];

/** FC shard tensors that are stored in the class storage dtype; the others (bias) stay float32. */
export const CLASS_STORED_TENSORS: readonly string[] = ['weight', 'weight_momentum'];

export function isClassStorage(value: unknown): value is ClassStorage {
  return typeof value === 'string' && (CLASS_STORAGES as readonly string[]).includes(value);
}

/** The dtype an FC shard tensor named `name` has under `storage`. */
export function shardTensorDType(name: string, storage: ClassStorage): DType {
  return CLASS_STORED_TENSORS.includes(name) ? storage : 'float32';
}

/** The class storage a dtype stands for, or null for a dtype that is none (int64, float64, ...). */
export function classStorageOf(dtype: DType): ClassStorage | null {
  return isClassStorage(dtype) ? dtype : null;
}
