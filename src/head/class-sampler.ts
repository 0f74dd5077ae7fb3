// Partial FC's per-step choice of class centres: every positive of the global batch that this shard
// owns, filled up to ceil(sampleRate * numLocalClasses) with uniformly random negatives.
import { Rng, hashSeeds } from '../data/random.js';

export interface ClassSample {
  /** Sorted local class indices (into the shard) whose centres take part in this step. */
  index: Int32Array;
  /** Number of positives among them. */
  numPositives: number;
}

/** How many centres a shard of `numLocalClasses` keeps per step at `sampleRate`. */
export function sampledClassCount(numLocalClasses: number, sampleRate: number): number {
  return Math.min(numLocalClasses, Math.ceil(sampleRate * numLocalClasses));
}

/**
 * Draws the sampled set for one step: a pure function of (seed, rank, step) and the positives.
 * `positives` are local indices (duplicates allowed). Positives are always kept; when there are
 * more positives than the budget, all of them are kept (the set grows, as in insightface).
 */
export function sampleClasses(
  positives: Iterable<number>,
  numLocalClasses: number,
  sampleRate: number,
  seed: { seed: number; rank: number; step: number },
): ClassSample {
  // The sampled set is kept as a mask and read out in order at the end (no sort).
  const taken = new Uint8Array(numLocalClasses);
  let numPositives = 0;
  for (const p of positives) {
    if (taken[p] === 0) {
      taken[p] = 1;
      numPositives++;
    }
  }
  const budget = Math.max(sampledClassCount(numLocalClasses, sampleRate), numPositives);
  const numNegatives = budget - numPositives;
  const rng = new Rng(hashSeeds(seed.seed, seed.rank, seed.step));
  if (numNegatives > 0) {
    const free = numLocalClasses - numPositives;
    if (numNegatives * 2 <= free) {
      // Sparse draw: rejection sampling against the taken mask (expected < 2 tries per draw).
      let drawn = 0;
      while (drawn < numNegatives) {
        const candidate = rng.nextInt(numLocalClasses);
        if (taken[candidate] === 0) {
          taken[candidate] = 1;
          drawn++;
        }
      }
    } else {
      // Dense draw: partial Fisher-Yates over the classes that are not positives.
      const pool = new Int32Array(free);
      let n = 0;
      for (let c = 0; c < numLocalClasses; c++) if (taken[c] === 0) pool[n++] = c;
      for (let i = 0; i < numNegatives; i++) {
        const j = i + rng.nextInt(free - i);
        const t = pool[i] as number;
        pool[i] = pool[j] as number;
        pool[j] = t;
        taken[pool[i] as number] = 1;
      }
    }
  }
  const index = new Int32Array(budget);
  for (let c = 0, n = 0; n < budget; c++) if (taken[c] === 1) index[n++] = c;
  return { index, numPositives };
}
