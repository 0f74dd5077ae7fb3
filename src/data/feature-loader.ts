/**
 * FeatureLoader: batches of feature vectors (e.g. SyntheticFeatures) with the same shuffling,
 * sharding and resumable state semantics as DataLoader. Generation is synchronous and cheap, so
 * there is no prefetch queue.
 */
import {
  ShardedSampler,
  batchRange,
  planEpoch,
  type DataOrderState,
  type ShardedSamplerOptions,
} from './sampler.js';
import { DataOrderCursor } from './data-order-cursor.js';
import { gatherFeatures, type FeatureBatch, type FeatureSource } from './synthetic.js';
import { positiveInteger } from '../util/validate.js';

export interface FeatureLoaderOptions extends ShardedSamplerOptions {
  batchSize: number;
  /** Drop this rank's final partial batch of each epoch. Default false. */
  dropLastBatch?: boolean;
  state?: DataOrderState;
}

export class FeatureLoader implements AsyncIterable<FeatureBatch & { epoch: number }> {
  readonly source: FeatureSource;
  readonly sampler: ShardedSampler;
  readonly batchSize: number;
  private readonly dropLastBatch: boolean;
  private readonly cursor = new DataOrderCursor('FeatureLoader');

  constructor(source: FeatureSource, options: FeatureLoaderOptions) {
    this.source = source;
    this.sampler = new ShardedSampler(source.length, options);
    this.batchSize = positiveInteger(options.batchSize, 'batchSize');
    this.dropLastBatch = options.dropLastBatch ?? false;
    if (options.state !== undefined) this.setState(options.state);
  }

  get state(): DataOrderState {
    return this.cursor.state;
  }

  setState(state: DataOrderState): void {
    this.cursor.set(state);
  }

  get batchesPerEpoch(): number {
    return planEpoch(this.sampler, { epoch: 0, position: 0 }, this.batchSize, this.dropLastBatch).batches;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<FeatureBatch & { epoch: number }, void, undefined> {
    this.cursor.begin();
    try {
      const start = this.cursor.state;
      const plan = planEpoch(this.sampler, start, this.batchSize, this.dropLastBatch);
      const rankIndices = this.sampler.rankIndices(start);
      for (let b = 0; b < plan.batches; b++) {
        const { first, count } = batchRange(plan, b);
        const batch = gatherFeatures(this.source, rankIndices.subarray(first, first + count));
        this.cursor.advance(this.sampler, plan, b);
        yield { ...batch, epoch: plan.epoch };
      }
      this.cursor.completeEpoch(plan);
    } finally {
      this.cursor.end();
    }
  }
}
