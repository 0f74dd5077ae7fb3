import { integerInRange } from '../util/validate.js';
/**
 * Small deterministic random number tools for data ordering, augmentation and synthetic data.
 * Everything is a pure function of integer seeds, so results never depend on timing or threads.
 */

const TWO_POW_32 = 4294967296;

/** A 32-bit avalanche mix (the "lowbias32" finalizer). */
export function mix32(value: number): number {
  let x = value >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x21f0aaad);
  x ^= x >>> 15;
  x = Math.imul(x, 0x735a2d97);
  x ^= x >>> 15;
  return x >>> 0;
}

/** Combine integer parts (seed, epoch, index, ...) into one well-mixed 32-bit seed. */
export function hashSeeds(...parts: number[]): number {
  let h = 0x6a09e667;
  for (const part of parts) {
    if (!Number.isInteger(part)) throw new RangeError(`seed parts must be integers, got ${part}`);
    const lo = part >>> 0;
    const hi = Math.floor(part / TWO_POW_32) >>> 0;
    h = mix32((h ^ lo) + 0x9e3779b9);
    h = mix32((h ^ hi) + 0x7f4a7c15);
  }
  return h;
}

/** xoshiro128** seeded through splitmix32. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spareNormal: number | undefined;

  constructor(seed: number) {
    let s = hashSeeds(seed);
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    const b = this.b;
    const result = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
    const t = b << 9;
    this.c ^= this.a;
    this.d ^= b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const hi = this.nextU32() >>> 5;
    const lo = this.nextU32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n). */
  nextInt(n: number): number {
    return Math.floor(this.nextFloat() * n);
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.nextFloat();
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    if (this.spareNormal !== undefined) {
      const v = this.spareNormal;
      this.spareNormal = undefined;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.nextFloat();
    const v = this.nextFloat();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spareNormal = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** A uniformly random permutation of 0..n-1 (Fisher-Yates), a pure function of `seed`. */
export function randomPermutation(n: number, seed: number): Int32Array {
  integerInRange(n, 'permutation size', 0, 0x7fffffff);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  const rng = new Rng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    const t = out[i]!;
    out[i] = out[j]!;
    out[j] = t;
  }
  return out;
}
