// Loads the libtorch addon and describes its surface. Everything above this file is TypeScript.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { cpus } from 'node:os';

export type DType = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';

declare const nativeTensorBrand: unique symbol;
/**
 * A tensor as the addon names it: a number (2^52 + a slot of the addon's tensor table and that
 * slot's generation). Users see {@link Tensor}; this is its handle. Released by tensorRelease().
 */
export type NativeTensor = number & { readonly [nativeTensorBrand]: true };

/** The smallest tensor handle: numbers below it are never tensors. */
export const NATIVE_TENSOR_BASE = 2 ** 52;

export type NativeValue = NativeTensor | number | boolean | string | null | NativeValue[];

/** Whether a value the addon returned is a tensor handle (and not an ordinary number). */
export function isNativeTensor(value: unknown): value is NativeTensor {
  return typeof value === 'number' && value >= NATIVE_TENSOR_BASE;
}
export type NativeArg = NativeTensor | number | boolean | string | null | undefined | NativeArg[];

export interface NativeWork {
  wait(): void;
  isCompleted(): boolean;
}

export interface NativeAddon {
  /** Frees the tensor now; a stale handle is ignored. */
  tensorRelease(tensor: NativeTensor): void;
  tensorIsLive(tensor: NativeTensor): boolean;
  /** Counts the storage (once) in V8's external memory so the GC feels its size. */
  tensorReportMemory(tensor: NativeTensor): void;
  /** Tensors the addon holds now. */
  tensorLiveCount(): number;
  tensorShape(tensor: NativeTensor): number[];
  tensorStrides(tensor: NativeTensor): number[];
  tensorDtype(tensor: NativeTensor): DType;
  tensorDevice(tensor: NativeTensor): string;
  tensorNumel(tensor: NativeTensor): number;
  tensorDim(tensor: NativeTensor): number;
  tensorIsContiguous(tensor: NativeTensor): boolean;
  tensorStorageId(tensor: NativeTensor): number;
  tensorItem(tensor: NativeTensor): number | boolean;
  tensorCopyToBuffer(tensor: NativeTensor): ArrayBuffer;
  /** An ArrayBuffer over the tensor's own memory (contiguous CPU tensors); keeps it alive. */
  tensorViewBuffer(tensor: NativeTensor): ArrayBuffer;
  tensorCopyFromBuffer(tensor: NativeTensor, source: ArrayBufferView | ArrayBuffer): void;
  tensorRequiresGrad(tensor: NativeTensor): boolean;
  tensorSetRequiresGrad(tensor: NativeTensor, requires: boolean): void;
  tensorGrad(tensor: NativeTensor): NativeTensor | null;
  tensorSetGrad(tensor: NativeTensor, grad: NativeTensor | null): void;
  tensorIsLeaf(tensor: NativeTensor): boolean;
  tensorGradFn(tensor: NativeTensor): string | null;
  tensorRetainGrad(tensor: NativeTensor): void;
  tensorRegisterHook(tensor: NativeTensor, hook: (grad: NativeTensor) => NativeTensor | null | undefined): number;
  opLookup(name: string, overload: string): number;
  opSchema(id: number): string;
  /** Calls operator `id` with its arguments in schema order (omitted trailing ones take their defaults). */
  opCall(id: number, ...args: NativeArg[]): NativeValue;
  fromBuffer(source: ArrayBufferView | ArrayBuffer, shape: number[], dtype: DType, copy: boolean): NativeTensor;
  backward(tensors: NativeTensor[], grads: (NativeTensor | null)[], retainGraph: boolean): void;
  attachFunction(
    inputs: NativeTensor[],
    outputs: NativeTensor[],
    backward: (grads: (NativeTensor | null)[]) => (NativeTensor | null)[],
    name: string,
  ): void;
  setGradEnabled(enabled: boolean): boolean;
  isGradEnabled(): boolean;
  manualSeed(seed: number): void;
  setNumThreads(threads: number): void;
  getNumThreads(): number;
  /** cachedBytes: freed blocks the CPU allocator keeps; reportedBytes: tensor storage V8 was told about. */
  allocatorStats(): { cachedBytes: number; reportedBytes: number };
  emptyCache(): void;
  config(): { torchVersion: string; parallelInfo: string; blasThreadControl: string; gloo: boolean; cuda: boolean };
  // c10d (see src/distributed); typed loosely here and narrowed there.
  [key: string]: unknown;
}

function findAddon(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'native', 'build', 'Release', 'plsc_native.node');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error('plsc native addon not built: run `npm run build:native` (needs libtorch-dev; see README)');
}

/**
 * Thread-pool waiting, read by libgomp and OpenBLAS when the addon loads them (so set before it):
 * libtorch's OpenMP workers and OpenBLAS's own workers take turns on the same cores, and by default
 * each pool spins for a long time after its work is done, stealing the core from the other
 * (measured on 2 cores: a 1M-class head step 10.5 s -> 6.3 s). OpenMP's workers still spin briefly
 * (GOMP_SPINCOUNT 10000, ~0.1 ms, where libgomp's default is ~3 ms): a small model's step opens a
 * short parallel region per operator, and waking sleeping workers for each cost it ~7% (`plsc bench
 * engine`), while the head's step did not move. A value the user set is kept; a user's
 * OMP_WAIT_POLICY also keeps libgomp's own spin count.
 */
export const THREAD_WAIT_ENV: Readonly<Record<string, string>> = { OMP_WAIT_POLICY: 'PASSIVE', OPENBLAS_THREAD_TIMEOUT: '4', GOMP_SPINCOUNT: '10000' };
/** The THREAD_WAIT_ENV names this process set (the user had not); benchmark peers run without them. */
export const injectedThreadEnv: readonly string[] = Object.keys(THREAD_WAIT_ENV).filter(
  (name) => process.env[name] === undefined && !(name === 'GOMP_SPINCOUNT' && process.env.OMP_WAIT_POLICY !== undefined),
);
for (const name of injectedThreadEnv) process.env[name] = THREAD_WAIT_ENV[name];

const require = createRequire(import.meta.url);
export const native: NativeAddon = require(findAddon()) as NativeAddon;

/** Threads for libtorch's intra-op pool and OpenBLAS's own pool (PLSC_NUM_THREADS, else all cores). */
export function defaultThreadCount(): number {
  const fromEnv = Number(process.env.PLSC_NUM_THREADS ?? process.env.OMP_NUM_THREADS ?? '');
  if (Number.isInteger(fromEnv) && fromEnv > 0) return fromEnv;
  return Math.max(1, cpus().length);
}

/** Sets the thread count of libtorch and of the BLAS library underneath it. */
export function setNumThreads(threads: number): void {
  native.setNumThreads(threads);
}

export function getNumThreads(): number {
  return native.getNumThreads();
}

/** Seeds libtorch's default generator (randn, rand, dropout, randperm...). */
export function manualSeed(seed: number): void {
  native.manualSeed(seed);
}

/** Frees cached large CPU blocks held by the allocator policy. */
export function emptyCache(): void {
  native.emptyCache();
}

export function backendInfo(): ReturnType<NativeAddon['config']> & { threads: number } {
  return { ...native.config(), threads: native.getNumThreads() };
}

setNumThreads(defaultThreadCount());
