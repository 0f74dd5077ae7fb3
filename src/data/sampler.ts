/**
 * Epoch ordering and distributed sharding, shared by DataLoader and FeatureLoader.
 *
 * Epoch e visits the sequence seq(j) = perm_e[j mod N], perm_e a permutation that is a pure
 * function of (seed, e) (identity when shuffling is off). Rank r of W takes the slots
 * j = p + r, p + r + W, p + r + 2W, ... where p is the resume position (0 at an epoch start), so
 * at an epoch start this is torch's DistributedSampler: interleaved shards, padded by wrapping
 * around to the start of the permutation ('pad', every sample seen at least once, each rank gets
 * ceil(N / W) samples) or truncated ('drop', each rank gets floor(N / W), up to W-1 samples of
 * the epoch skipped).
 *
 * The position counts slots of the whole job (all ranks), so after every rank consumed k samples
 * the position is k * W. Because the state does not depend on the rank, one saved state resumes
 * every rank, and it stays meaningful when resuming with a different world size.
 */
import { hashSeeds, randomPermutation } from './random.js';
import { integer, integerInRange, nonNegativeInteger, positiveInteger } from '../util/validate.js';

/** Where the data order stands: epoch number and slots of that epoch consumed by all ranks together. */
export interface DataOrderState {
  epoch: number;
  position: number;
}

export interface ShardedSamplerOptions {
  /** Shuffle each epoch (default true). */
  shuffle?: boolean;
  /** Default 0. */
  seed?: number;
  /** This process's rank (default 0). */
  rank?: number;
  /** Number of ranks (default 1). */
  worldSize?: number;
  /** 'pad' (default): wrap around so ranks get equal counts covering every sample; 'drop': truncate. */
  shardPadding?: 'pad' | 'drop';
}

export class ShardedSampler {
  readonly length: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly rank: number;
  readonly worldSize: number;
  readonly shardPadding: 'pad' | 'drop';
  private cachedEpoch = -1;
  private cachedPermutation: Int32Array | undefined;

  constructor(length: number, options: ShardedSamplerOptions = {}) {
    positiveInteger(length, 'dataset length');
    this.length = length;
    this.shuffle = options.shuffle ?? true;
    this.seed = options.seed ?? 0;
    this.worldSize = options.worldSize ?? 1;
    this.rank = options.rank ?? 0;
    this.shardPadding = options.shardPadding ?? 'pad';
    integer(this.seed, 'seed');
    positiveInteger(this.worldSize, 'worldSize');
    integerInRange(this.rank, 'rank', 0, this.worldSize - 1);
    if (this.shardPadding !== 'pad' && this.shardPadding !== 'drop') throw new RangeError(`shardPadding must be 'pad' or 'drop'`);
    if (this.shardPadding === 'drop' && length < this.worldSize) {
      throw new RangeError(`shardPadding 'drop' with ${length} samples and ${this.worldSize} ranks leaves ranks without samples`);
    }
  }

  /** The epoch's visiting order over sample indices. */
  permutation(epoch: number): Int32Array {
    checkState({ epoch, position: 0 });
    if (this.cachedEpoch !== epoch || this.cachedPermutation === undefined) {
      if (this.shuffle) {
        this.cachedPermutation = randomPermutation(this.length, hashSeeds(this.seed, epoch));
      } else {
        const identity = new Int32Array(this.length);
        for (let i = 0; i < this.length; i++) identity[i] = i;
        this.cachedPermutation = identity;
      }
      this.cachedEpoch = epoch;
    }
    return this.cachedPermutation;
  }

  /** Samples this rank visits in the rest of the epoch starting at `position`. */
  remainingForRank(position: number): number {
    const left = this.length - position;
    if (left <= 0) return 0;
    return this.shardPadding === 'pad' ? Math.ceil(left / this.worldSize) : Math.floor(left / this.worldSize);
  }

  /** Slot (epoch-global position) of this rank's k-th remaining sample when starting at `position`. */
  slot(position: number, k: number): number {
    return position + k * this.worldSize + this.rank;
  }

  /** Sample index at slot j of `epoch`. */
  indexAt(epoch: number, slot: number): number {
    return this.permutation(epoch)[slot % this.length]!;
  }

  /** This rank's sample indices for the rest of the epoch starting at `position`. */
  rankIndices(state: DataOrderState): Int32Array {
    checkState(state);
    const count = this.remainingForRank(state.position);
    const perm = this.permutation(state.epoch);
    const out = new Int32Array(count);
    for (let k = 0; k < count; k++) out[k] = perm[this.slot(state.position, k) % this.length]!;
    return out;
  }
}

/** Throws unless epoch and position are non-negative integers. */
export function checkState(state: DataOrderState): void {
  if (typeof state !== 'object' || state === null) throw new TypeError('data order state must be an object {epoch, position}');
  const { epoch, position } = state;
  nonNegativeInteger(epoch, 'state.epoch');
  nonNegativeInteger(position, 'state.position');
}

/** How the rest of one epoch splits into this rank's batches. */
export interface EpochPlan {
  epoch: number;
  /** Position the plan starts at. */
  startPosition: number;
  /** Samples this rank visits from startPosition to the epoch's end (before dropping a partial batch). */
  samples: number;
  batchSize: number;
  /** Number of batches this rank yields. */
  batches: number;
}

export function planEpoch(sampler: ShardedSampler, state: DataOrderState, batchSize: number, dropLastBatch: boolean): EpochPlan {
  checkState(state);
  positiveInteger(batchSize, 'batchSize');
  const samples = sampler.remainingForRank(state.position);
  const batches = dropLastBatch ? Math.floor(samples / batchSize) : Math.ceil(samples / batchSize);
  return { epoch: state.epoch, startPosition: state.position, samples, batchSize, batches };
}

/** This rank's sample range [first, first+count) (in remaining-sample units) of batch b. */
export function batchRange(plan: EpochPlan, b: number): { first: number; count: number } {
  const first = b * plan.batchSize;
  return { first, count: Math.min(plan.batchSize, plan.samples - first) };
}

/** The state after this rank consumed batch b of the plan (the next epoch's start after the last batch). */
export function stateAfterBatch(sampler: ShardedSampler, plan: EpochPlan, b: number): DataOrderState {
  if (b >= plan.batches - 1) return { epoch: plan.epoch + 1, position: 0 };
  const consumed = Math.min((b + 1) * plan.batchSize, plan.samples);
  return { epoch: plan.epoch, position: plan.startPosition + consumed * sampler.worldSize };
}
