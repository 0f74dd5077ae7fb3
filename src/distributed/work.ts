// The handle of an issued collective: communication runs on the backend's threads while the caller
// computes; wait() (or waitAsync()) returns the result once it has arrived.
import type { NativeTensor } from '../torch/native.js';

/** What the addon's NativeWork offers (see native/src/c10d.cc). */
export interface NativeWorkHandle {
  wait(): NativeTensor | null;
  waitAsync(): Promise<NativeTensor | null>;
  isCompleted(): boolean;
  splitSizes(): number[];
  readonly name: string;
}

/**
 * An asynchronous collective. wait() blocks the calling thread until the collective completes or
 * fails; a failure (a timeout, a peer that died) is thrown as an Error naming the collective. Waiting
 * never blocks forever: the process group's timeout bounds every collective. Waiting twice returns
 * the same result (or throws the same error).
 */
export class Work<T> {
  private settled: { value: T } | { error: Error } | null = null;

  private constructor(
    readonly name: string,
    private readonly handle: NativeWorkHandle | null,
    private readonly resolve: (result: NativeTensor | null, handle: NativeWorkHandle | null) => T,
  ) {}

  /** Work backed by a native collective; `resolve` turns its result handle into T. */
  static fromNative<T>(handle: NativeWorkHandle, resolve: (result: NativeTensor | null, handle: NativeWorkHandle) => T): Work<T> {
    return new Work<T>(handle.name, handle, (result, h) => resolve(result, h as NativeWorkHandle));
  }

  /** Work that is already complete (world size 1, or nothing to communicate). */
  static completed<T>(name: string, value: T): Work<T> {
    const work = new Work<T>(name, null, () => value);
    work.settled = { value };
    return work;
  }

  /** True once the collective finished (successfully or not); never blocks. */
  isCompleted(): boolean {
    return this.settled !== null || this.handle === null || this.handle.isCompleted();
  }

  /** Blocks until the collective completes; returns its result or throws its error. */
  wait(): T {
    if (this.settled === null) {
      const handle = this.handle as NativeWorkHandle;
      try {
        this.settled = { value: this.resolve(handle.wait(), handle) };
      } catch (err) {
        this.settled = { error: err instanceof Error ? err : new Error(String(err)) };
      }
    }
    if ('error' in this.settled) throw this.settled.error;
    return this.settled.value;
  }

  /** Waits without blocking the event loop (on a libuv pool thread). */
  async waitAsync(): Promise<T> {
    if (this.settled === null) {
      const handle = this.handle as NativeWorkHandle;
      let result: NativeTensor | null;
      try {
        result = await handle.waitAsync();
      } catch (err) {
        this.settled ??= { error: err instanceof Error ? err : new Error(String(err)) };
        return this.wait();
      }
      this.settled ??= { value: this.resolve(result, handle) };
    }
    return this.wait();
  }
}

/** Waits for every work in order; the first failure is thrown after all have been waited on. */
export function waitAll<T>(works: readonly Work<T>[]): T[] {
  const results: T[] = [];
  let failure: unknown = null;
  for (const work of works) {
    try {
      results.push(work.wait());
    } catch (err) {
      failure ??= err;
    }
  }
  if (failure !== null) throw failure;
  return results;
}
