import { positiveInteger } from '../util/validate.js';
// Which classes a rank owns when the FC is split by classes over the ranks (PLSC / Partial FC rule).
// The head, checkpoints and serving all read shards through this.

export interface ShardLayout {
  numClasses: number;
  worldSize: number;
  rank: number;
  /** floor(C / W) + (rank < C mod W ? 1 : 0) */
  numLocalClasses: number;
  /** First global class id of this shard: rank * floor(C / W) + min(rank, C mod W). */
  classOffset: number;
}

/** The class range rank `rank` owns when `numClasses` are split over `worldSize` ranks. */
export function shardLayout(numClasses: number, worldSize: number, rank: number): ShardLayout {
  positiveInteger(numClasses, 'numClasses');
  positiveInteger(worldSize, 'worldSize');
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) throw new RangeError(`rank ${rank} is not in [0, ${worldSize})`);
  if (numClasses < worldSize) throw new RangeError(`numClasses (${numClasses}) must be at least the number of workers (${worldSize})`);
  const base = Math.floor(numClasses / worldSize);
  const extra = numClasses % worldSize;
  return {
    numClasses,
    worldSize,
    rank,
    numLocalClasses: base + (rank < extra ? 1 : 0),
    classOffset: rank * base + Math.min(rank, extra),
  };
}
