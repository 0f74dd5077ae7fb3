/**
 * FeatureLoader: batches of feature vectors (e.g. SyntheticFeatures) with the same shuffling,
 * sharding and resumable state semantics as DataLoader. Generation is synchronous and cheap, so
 * there is no prefetch queue.
 */
import {
  ShardedSampler,
  batchRange,
  checkState,
  planEpoch,
  stateAfterBatch,
  type DataOrderState,
  type ShardedSamplerOptions,
} from './sampler.js';
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
  private current: DataOrderState = { epoch: 0, position: 0 };
  private iterating = false;

  constructor(source: FeatureSource, options: FeatureLoaderOptions) {
    this.source = source;
    this.sampler = new ShardedSampler(source.length, options);
    this.batchSize = positiveInteger(options.batchSize, 'batchSize');
    this.dropLastBatch = options.dropLastBatch ?? false;
    if (options.state !== undefined) this.setState(options.state);
  }

  get state(): DataOrderState {
    return { ...this.current };
  }

  setState(state: DataOrderState): void {
    checkState(state);
    if (this.iterating) throw new Error('cannot change the FeatureLoader state while it is being iterated');
    this.current = { epoch: state.epoch, position: state.position };
  }

  get batchesPerEpoch(): number {
    return planEpoch(this.sampler, { epoch: 0, position: 0 }, this.batchSize, this.dropLastBatch).batches;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<FeatureBatch & { epoch: number }, void, undefined> {
    if (this.iterating) throw new Error('FeatureLoader is already being iterated');
    this.iterating = true;
    try {
      const plan = planEpoch(this.sampler, this.current, this.batchSize, this.dropLastBatch);
      const rankIndices = this.sampler.rankIndices(this.current);
      for (let b = 0; b < plan.batches; b++) {
        const { first, count } = batchRange(plan, b);
        const batch = gatherFeatures(this.source, rankIndices.subarray(first, first + count));
        this.current = stateAfterBatch(this.sampler, plan, b);
        yield { ...batch, epoch: plan.epoch };
      }
      if (plan.batches === 0) this.current = { epoch: plan.epoch + 1, position: 0 };
    } finally {
      this.iterating = false;
    }
  }
}
