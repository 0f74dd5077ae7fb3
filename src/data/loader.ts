/**
 * DataLoader: turns a SampleSource into uint8 NCHW RGB batches with per-epoch seeded shuffling,
 * distributed sharding (see sampler.ts), a bounded prefetch queue, seeded horizontal flips,
 * bad-sample handling and an exactly resumable data-order state.
 */
import { availableParallelism } from 'node:os';
import { DEFAULT_IMAGE_SIZE, mirrorRowsInPlace, writeSampleChw } from './image.js';
import { hashSeeds } from './random.js';
import {
  ShardedSampler,
  batchRange,
  planEpoch,
  type DataOrderState,
  type EpochPlan,
  type ShardedSamplerOptions,
} from './sampler.js';
import { DataOrderCursor } from './data-order-cursor.js';
import { BadSampleError, toBadSampleError, type SampleSource } from './source.js';
import { nonNegativeInteger, positiveInteger } from '../util/validate.js';

export interface ImageBatch {
  /** N*3*H*W bytes, NCHW, channels R, G, B. */
  images: Uint8Array;
  labels: Int32Array;
  /** Source index of each row. */
  indices: Int32Array;
  shape: [number, 3, number, number];
  /** Epoch the batch belongs to. */
  epoch: number;
  /** Rows that hold a copy of another row because their own sample was bad and skipped. */
  filledRows: number;
}

export interface BadSampleReport {
  index: number;
  where: string;
  reason: string;
  epoch: number;
}

export interface LoaderStats {
  /** Batches yielded. */
  batches: number;
  /** Rows yielded (including rows filled with copies). */
  samples: number;
  /** Bad samples skipped. */
  skipped: number;
  /** The first `maxReports` skipped samples. */
  badSamples: BadSampleReport[];
}

export interface DataLoaderOptions extends ShardedSamplerOptions {
  batchSize: number;
  /** Output side length, or [height, width]. Default 112. */
  imageSize?: number | readonly [number, number];
  /** Drop this rank's final partial batch of each epoch. Default false. */
  dropLastBatch?: boolean;
  /** Batches prepared ahead of the one being consumed. Default 2. */
  prefetchBatches?: number;
  /** Samples read/decoded at once (sharp runs on libuv threads; see UV_THREADPOOL_SIZE). Default: CPU count. */
  concurrency?: number;
  /** Mirror each image horizontally with probability 1/2, a pure function of (seed, epoch, slot). Default false. */
  randomFlip?: boolean;
  /** 'error' (default): the first bad sample fails the iteration. 'skip': count it and continue. */
  onBadSample?: 'skip' | 'error';
  /**
   * With 'skip': true (default) keeps every batch at full size by copying good rows of the same
   * batch into the skipped rows (ranks keep equal batch shapes); false shrinks the batch.
   */
  fillSkipped?: boolean;
  /** Called for every skipped sample. */
  onSkip?: (report: BadSampleReport) => void;
  /** Start here instead of {epoch: 0, position: 0}. */
  state?: DataOrderState;
  /** How many bad-sample reports stats keeps. Default 100. */
  maxReports?: number;
}

interface BuiltBatch {
  batch: ImageBatch;
  bad: BadSampleReport[];
}

const CANCELLED = Symbol('cancelled');

export class DataLoader implements AsyncIterable<ImageBatch> {
  readonly source: SampleSource;
  readonly sampler: ShardedSampler;
  readonly batchSize: number;
  readonly height: number;
  readonly width: number;
  private readonly options: DataLoaderOptions;
  private readonly prefetch: number;
  private readonly limiter: Limiter;
  private readonly cursor = new DataOrderCursor('DataLoader');
  private readonly counters: LoaderStats = { batches: 0, samples: 0, skipped: 0, badSamples: [] };

  constructor(source: SampleSource, options: DataLoaderOptions) {
    this.source = source;
    this.options = options;
    this.sampler = new ShardedSampler(source.length, options);
    this.batchSize = positiveInteger(options.batchSize, 'batchSize');
    const size = options.imageSize ?? DEFAULT_IMAGE_SIZE;
    [this.height, this.width] = typeof size === 'number' ? [size, size] : [size[0], size[1]];
    if (!Number.isInteger(this.height) || !Number.isInteger(this.width) || this.height <= 0 || this.width <= 0) {
      throw new RangeError(`imageSize must be positive integers, got ${String(size)}`);
    }
    this.prefetch = options.prefetchBatches ?? 2;
    nonNegativeInteger(this.prefetch, 'prefetchBatches');
    const concurrency = options.concurrency ?? Math.max(2, availableParallelism());
    positiveInteger(concurrency, 'concurrency');
    this.limiter = new Limiter(concurrency);
    if (options.onBadSample !== undefined && options.onBadSample !== 'skip' && options.onBadSample !== 'error') {
      throw new RangeError(`onBadSample must be 'skip' or 'error'`);
    }
    if (options.state !== undefined) this.setState(options.state);
  }

  /** Data order after the last batch handed out (what a checkpoint saves). */
  get state(): DataOrderState {
    return this.cursor.state;
  }

  /** Continue from a saved state; the next iteration starts there. */
  setState(state: DataOrderState): void {
    this.cursor.set(state);
  }

  /** Counters since construction (bad samples skipped and where). */
  get stats(): LoaderStats {
    return { ...this.counters, badSamples: [...this.counters.badSamples] };
  }

  /** Batches a full epoch yields on this rank. */
  get batchesPerEpoch(): number {
    return planEpoch(this.sampler, { epoch: 0, position: 0 }, this.batchSize, this.options.dropLastBatch ?? false).batches;
  }

  /** Batches the next iteration yields (the rest of the current epoch). */
  get batchesRemaining(): number {
    return planEpoch(this.sampler, this.cursor.state, this.batchSize, this.options.dropLastBatch ?? false).batches;
  }

  /**
   * Iterate the rest of the current epoch, then advance the state to the next epoch. Breaking out
   * early leaves the state just after the last batch received.
   */
  async *[Symbol.asyncIterator](): AsyncGenerator<ImageBatch, void, undefined> {
    this.cursor.begin();
    const plan = planEpoch(this.sampler, this.cursor.state, this.batchSize, this.options.dropLastBatch ?? false);
    const pending: Promise<BuiltBatch>[] = [];
    const cancel = { cancelled: false };
    let next = 0;
    try {
      for (let b = 0; b < plan.batches; b++) {
        while (pending.length < this.prefetch + 1 && next < plan.batches) {
          const built = this.build(plan, next++, cancel);
          built.catch(() => undefined);
          pending.push(built);
        }
        const { batch, bad } = await pending.shift()!;
        this.account(batch, bad);
        this.cursor.advance(this.sampler, plan, b);
        yield batch;
      }
      this.cursor.completeEpoch(plan);
    } finally {
      cancel.cancelled = true;
      await Promise.allSettled(pending);
      this.cursor.end();
    }
  }

  private account(batch: ImageBatch, bad: BadSampleReport[]): void {
    this.counters.batches++;
    this.counters.samples += batch.labels.length;
    this.counters.skipped += bad.length;
    const max = this.options.maxReports ?? 100;
    for (const report of bad) {
      if (this.counters.badSamples.length < max) this.counters.badSamples.push(report);
      this.options.onSkip?.(report);
    }
  }

  private async build(plan: EpochPlan, b: number, cancel: { cancelled: boolean }): Promise<BuiltBatch> {
    const { first, count } = batchRange(plan, b);
    const { height, width, source, sampler } = this;
    const stride = 3 * height * width;
    const images = new Uint8Array(count * stride);
    const labels = new Int32Array(count);
    const indices = new Int32Array(count);
    const flips = this.options.randomFlip ?? false;
    const seed = sampler.seed;
    const tasks: Promise<void>[] = [];
    for (let k = 0; k < count; k++) {
      const slot = sampler.slot(plan.startPosition, first + k);
      const index = sampler.indexAt(plan.epoch, slot);
      indices[k] = index;
      const flip = flips && (hashSeeds(seed, 0xf11b, plan.epoch, slot) & 1) === 1;
      tasks.push(
        this.limiter.run(async () => {
          if (cancel.cancelled) throw CANCELLED;
          const label = source.label(index);
          if (!Number.isInteger(label) || label < 0 || label >= source.numClasses) {
            throw new RangeError(`${source.describe(index)}: label ${label} out of range [0, ${source.numClasses})`);
          }
          labels[k] = label;
          if (source.readChwInto?.(index, width, height, images, k * stride) === true) {
            if (flip) mirrorRowsInPlace(images, k * stride, 3 * height, width);
            return;
          }
          const payload = await source.read(index);
          await writeSampleChw(payload, width, height, flip, images, k * stride);
        }),
      );
    }
    const results = await Promise.allSettled(tasks);
    const badRows: number[] = [];
    const bad: BadSampleReport[] = [];
    for (let k = 0; k < count; k++) {
      const result = results[k]!;
      if (result.status === 'fulfilled') continue;
      if (result.reason === CANCELLED) throw CANCELLED;
      if (result.reason instanceof RangeError) throw result.reason;
      const error = toBadSampleError(source, indices[k]!, result.reason);
      if ((this.options.onBadSample ?? 'error') === 'error') throw error;
      badRows.push(k);
      bad.push({ index: error.index, where: error.where, reason: error.reason, epoch: plan.epoch });
    }
    const shape: [number, 3, number, number] = [count, 3, height, width];
    if (badRows.length === 0) return { batch: { images, labels, indices, shape, epoch: plan.epoch, filledRows: 0 }, bad };
    const badSet = new Set(badRows);
    const goodRows: number[] = [];
    for (let k = 0; k < count; k++) if (!badSet.has(k)) goodRows.push(k);
    if (this.options.fillSkipped ?? true) {
      if (goodRows.length === 0) {
        const first = bad[0]!;
        throw new BadSampleError(first.index, first.where, `every sample of the batch is bad, nothing to fill it with (${first.reason})`);
      }
      badRows.forEach((row, i) => {
        const from = goodRows[i % goodRows.length]!;
        images.copyWithin(row * stride, from * stride, (from + 1) * stride);
        labels[row] = labels[from]!;
        indices[row] = indices[from]!;
      });
      return { batch: { images, labels, indices, shape, epoch: plan.epoch, filledRows: badRows.length }, bad };
    }
    goodRows.forEach((from, row) => {
      if (from === row) return;
      images.copyWithin(row * stride, from * stride, (from + 1) * stride);
      labels[row] = labels[from]!;
      indices[row] = indices[from]!;
    });
    const n = goodRows.length;
    return {
      batch: {
        images: images.subarray(0, n * stride),
        labels: labels.subarray(0, n),
        indices: indices.subarray(0, n),
        shape: [n, 3, height, width],
        epoch: plan.epoch,
        filledRows: 0,
      },
      bad,
    };
  }
}

/** FIFO concurrency limiter: tasks start in submission order, at most `limit` at once. */
class Limiter {
  private active = 0;
  private readonly queue: Array<() => void> = [];
  constructor(readonly limit: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.queue.push(resolve));
    else this.active++;
    try {
      return await task();
    } finally {
      const next = this.queue.shift();
      if (next !== undefined) next();
      else this.active--;
    }
  }
}
