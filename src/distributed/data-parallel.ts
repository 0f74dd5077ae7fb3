// Data parallelism: every rank holds a replica of the parameters; rank 0's values are broadcast at
// the start, and after each backward the gradients are averaged across ranks in buckets (flatten
// into one buffer per bucket, one allReduce per bucket, copy back), as torch's DDP does.
//
// Overlap: a hook on every parameter copies its gradient into its bucket as soon as autograd
// produces it, and a bucket's allReduce starts the moment its last gradient arrives, while backward
// continues with earlier layers. Buckets are filled in reverse parameter order (the order backward
// produces gradients) and always launched in index order, so every rank issues the same sequence
// of collectives even when hooks fire in a different order.
import type { DType } from '../torch/native.js';
import type { Tensor } from '../torch/tensor.js';
import * as ops from '../torch/ops.js';
import { noGrad } from '../torch/autograd.js';
import { getProcessGroup, type ProcessGroup } from './process-group.js';
import { waitAll, type Work } from './work.js';
import { inRange } from '../util/validate.js';

/** Anything with parameters (an nn.Module, or a plain object). */
export interface ParameterSource {
  parameters(): Tensor[];
  buffers?(): Tensor[];
}

export interface DataParallelOptions {
  /** The group to average over (default: the default process group). */
  group?: ProcessGroup;
  /** Upper bound of one bucket's size in bytes (default 25 MiB, as torch's DDP). */
  bucketCapBytes?: number;
  /** Broadcast buffers (e.g. batch-norm statistics) from rank 0 at start as well (default true). */
  broadcastBuffers?: boolean;
  /** Start a bucket's allReduce during backward as soon as it is full (default true). With false,
   * all buckets are reduced in syncGradients(), after backward. */
  overlap?: boolean;
}

export const DEFAULT_BUCKET_CAP_BYTES = 25 * 1024 * 1024;

const BYTES: Record<DType, number> = {
  float32: 4,
  float64: 8,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

interface Slot {
  param: Tensor;
  /** Index in the parameter list given to DataParallel. */
  index: number;
  bucket: Bucket;
  offset: number;
  numel: number;
  shape: number[];
  ready: boolean;
}

interface Bucket {
  dtype: DType;
  slots: Slot[];
  numel: number;
  flat: Tensor | null;
  ready: number;
  work: Work<Tensor> | null;
}

/** How parameters were grouped, for inspection. */
export interface BucketLayout {
  dtype: DType;
  numel: number;
  /** Indices into the parameter list, in the order they sit in the bucket. */
  parameters: number[];
}

export class DataParallel {
  readonly group: ProcessGroup;
  /** Set to false for gradient-accumulation steps: hooks stop copying, and the next
   * syncGradients() averages the accumulated gradients after backward. */
  requireGradSync = true;

  private readonly params: Tensor[];
  private readonly buffers: Tensor[];
  private readonly buckets: Bucket[] = [];
  private nextLaunch = 0;
  private disposed = false;

  constructor(model: ParameterSource | readonly Tensor[], options: DataParallelOptions = {}) {
    this.group = options.group ?? getProcessGroup();
    const isList = Array.isArray(model);
    this.params = isList ? [...(model as readonly Tensor[])] : (model as ParameterSource).parameters();
    this.buffers = isList || options.broadcastBuffers === false ? [] : ((model as ParameterSource).buffers?.() ?? []);
    const cap = options.bucketCapBytes ?? DEFAULT_BUCKET_CAP_BYTES;
    inRange(cap, 'DataParallel: bucketCapBytes', { min: 0, max: Infinity, minExclusive: true });
    this.assignBuckets(cap);
    this.broadcastState(0);
    if (options.overlap !== false) this.registerHooks();
  }

  /** Parameters per bucket, in launch order. */
  bucketLayout(): BucketLayout[] {
    return this.buckets.map((b) => ({ dtype: b.dtype, numel: b.numel, parameters: b.slots.map((s) => s.index) }));
  }

  /** Buckets whose allReduce has started in the current step (before syncGradients()). */
  launchedBuckets(): number {
    return this.nextLaunch;
  }

  /** Copies rank `src`'s parameters and buffers to every rank (done once by the constructor). */
  broadcastState(src = 0): void {
    this.checkLive('broadcastState');
    noGrad(() => {
      waitAll([...this.params, ...this.buffers].map((t) => this.group.broadcast(t, src)));
    });
  }

  /**
   * Call after backward, before the optimizer step: finishes the buckets backward did not complete
   * (parameters without a gradient on this rank count as zeros), waits for every bucket's
   * allReduce, and leaves each parameter's .grad holding the average over ranks.
   * Throws an error naming the collective if a peer failed or the group timed out.
   */
  syncGradients(): void {
    this.checkLive('syncGradients');
    try {
      noGrad(() => {
        for (let i = this.nextLaunch; i < this.buckets.length; i++) {
          const bucket = this.buckets[i] as Bucket;
          for (const slot of bucket.slots) {
            if (!slot.ready) this.fillSlot(slot, null);
          }
        }
        this.launchReady();
        waitAll(this.buckets.map((b) => b.work as Work<Tensor>));
        for (const bucket of this.buckets) {
          for (const slot of bucket.slots) this.writeBack(slot);
        }
      });
    } finally {
      this.reset();
    }
  }

  /** Stops the hooks (they stay registered but do nothing) and frees the bucket buffers. */
  dispose(): void {
    this.disposed = true;
    for (const bucket of this.buckets) {
      bucket.flat?.dispose();
      bucket.flat = null;
    }
  }

  private checkLive(what: string): void {
    if (this.disposed) throw new Error(`DataParallel.${what}: it was disposed`);
  }

  private assignBuckets(cap: number): void {
    const open = new Map<DType, Bucket>();
    for (let index = this.params.length - 1; index >= 0; index--) {
      const param = this.params[index] as Tensor;
      if (!param.requiresGrad) continue;
      const dtype = param.dtype;
      const bytes = param.numel * BYTES[dtype];
      let bucket = open.get(dtype);
      if (bucket !== undefined && bucket.slots.length > 0 && (bucket.numel * BYTES[dtype] + bytes > cap)) bucket = undefined;
      if (bucket === undefined) {
        bucket = { dtype, slots: [], numel: 0, flat: null, ready: 0, work: null };
        open.set(dtype, bucket);
        this.buckets.push(bucket);
      }
      bucket.slots.push({ param, index, bucket, offset: bucket.numel, numel: param.numel, shape: param.shape, ready: false });
      bucket.numel += param.numel;
    }
    for (const bucket of this.buckets) {
      const device = (bucket.slots[0] as Slot).param.device;
      bucket.flat = ops.zeros([bucket.numel], { dtype: bucket.dtype, device });
    }
  }

  private registerHooks(): void {
    for (const bucket of this.buckets) {
      for (const slot of bucket.slots) {
        slot.param.registerHook((grad) => {
          if (this.disposed || !this.requireGradSync) return;
          try {
            if (slot.ready) {
              throw new Error(
                `DataParallel: the gradient of parameter #${slot.index} arrived twice before syncGradients() ` +
                  '(call syncGradients() after every backward, or set requireGradSync = false while accumulating)',
              );
            }
            noGrad(() => this.fillSlot(slot, grad));
            this.launchReady();
          } finally {
            grad.dispose();
          }
        });
      }
    }
  }

  private slotView(slot: Slot): Tensor {
    const flat = slot.bucket.flat as Tensor;
    const piece = ops.narrow(flat, 0, slot.offset, slot.numel);
    try {
      return ops.view(piece, slot.shape);
    } finally {
      piece.dispose();
    }
  }

  // Writes the gradient .grad will hold after this backward (the accumulated one plus `incoming`)
  // into the slot. Called with incoming = null after backward for parameters that got no gradient.
  private fillSlot(slot: Slot, incoming: Tensor | null): void {
    const view = this.slotView(slot);
    const existing = slot.param.grad;
    try {
      if (incoming !== null) {
        ops.copy_(view, incoming);
        if (existing !== null) ops.add_(view, existing);
      } else if (existing !== null) {
        ops.copy_(view, existing);
      } else {
        ops.zero_(view);
      }
    } finally {
      existing?.dispose();
      view.dispose();
    }
    slot.ready = true;
    slot.bucket.ready++;
  }

  private launchReady(): void {
    while (this.nextLaunch < this.buckets.length) {
      const bucket = this.buckets[this.nextLaunch] as Bucket;
      if (bucket.ready < bucket.slots.length) return;
      bucket.work = this.group.allReduce(bucket.flat as Tensor, 'avg');
      this.nextLaunch++;
    }
  }

  private writeBack(slot: Slot): void {
    const view = this.slotView(slot);
    const existing = slot.param.grad;
    try {
      if (existing !== null && existing.dtype === slot.bucket.dtype && sameShape(existing.shape, slot.shape)) {
        ops.copy_(existing, view);
      } else {
        slot.param.grad = ops.clone(view);
      }
    } finally {
      existing?.dispose();
      view.dispose();
    }
  }

  private reset(): void {
    for (const bucket of this.buckets) {
      bucket.ready = 0;
      bucket.work = null;
      for (const slot of bucket.slots) slot.ready = false;
    }
    this.nextLaunch = 0;
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
