/**
 * Build insightface-style verification `.bin` files (lfw.bin layout) from any labelled dataset:
 * pairs are drawn deterministically from a seed, alternating same-identity and different-identity
 * (so every contiguous 10-fold split is balanced), images are resized to a square and encoded as
 * JPEG or PNG, and the result is written with the eval area's pickle writer. Backs
 * `plsc data make-bin`.
 */
import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { writeVerificationBin } from './bin-file.js';
import type { PickleWriteProtocol } from './pickle-writer.js';
import { chwToHwc, decodeToRgb, encodeRgb, resizeRawRgb } from './image.js';
import { Rng, hashSeeds } from './random.js';
import { toBadSampleError, type SampleSource } from './source.js';
import { integer, integerInRange, positiveInteger } from '../util/validate.js';

export interface VerificationPair {
  /** Sample indices of the two images. */
  first: number;
  second: number;
  /** True when both samples have the same label. */
  same: boolean;
}

/** The label view of a dataset that pair drawing needs. */
export interface LabelledSamples {
  readonly length: number;
  readonly numClasses: number;
  label(index: number): number;
}

/** Tries to find a pair not drawn yet before accepting a repeat (only when few pairs remain). */
const DISTINCT_TRIES = 64;

/**
 * Draw `numPairs` pairs: pair i is same-identity when i is even, different-identity when odd
 * (ceil(P/2) same, floor(P/2) different). A same pair picks an identity with two or more samples
 * uniformly, then two distinct samples of it; a different pair picks two distinct identities
 * uniformly, then one sample of each. Pairs are kept distinct where possible. A pure function of
 * (labels, numPairs, seed).
 */
export function drawVerificationPairs(samples: LabelledSamples, numPairs: number, seed = 0): VerificationPair[] {
  positiveInteger(numPairs, 'number of pairs');
  integer(seed, 'seed');
  const numClasses = samples.numClasses;
  // Sample indices grouped by label (counting sort).
  const start = new Float64Array(numClasses + 1);
  for (let i = 0; i < samples.length; i++) start[samples.label(i) + 1]!++;
  for (let c = 1; c <= numClasses; c++) start[c]! += start[c - 1]!;
  const byClass = new Int32Array(samples.length);
  const fill = start.slice(0, numClasses);
  for (let i = 0; i < samples.length; i++) byClass[fill[samples.label(i)]!++] = i;
  const sizeOf = (c: number): number => start[c + 1]! - start[c]!;

  const multi: number[] = [];
  const nonEmpty: number[] = [];
  let sameAvailable = 0;
  for (let c = 0; c < numClasses; c++) {
    const n = sizeOf(c);
    if (n >= 1) nonEmpty.push(c);
    if (n >= 2) multi.push(c);
    sameAvailable += (n * (n - 1)) / 2;
  }
  const sameWanted = Math.ceil(numPairs / 2);
  const differentWanted = numPairs - sameWanted;
  if (multi.length === 0) throw new RangeError('cannot draw same-identity pairs: no identity has two or more samples');
  if (sameAvailable < sameWanted) {
    throw new RangeError(`only ${sameAvailable} distinct same-identity pairs exist, ${numPairs} pairs need ${sameWanted}`);
  }
  if (differentWanted > 0 && nonEmpty.length < 2) throw new RangeError('cannot draw different-identity pairs: the samples cover fewer than two identities');
  const differentAvailable = (samples.length * (samples.length - 1)) / 2 - sameAvailable;
  if (differentAvailable < differentWanted) {
    throw new RangeError(`only ${differentAvailable} distinct different-identity pairs exist, ${numPairs} pairs need ${differentWanted}`);
  }

  const rng = new Rng(hashSeeds(seed, 0x7e51f1));
  const member = (c: number): number => byClass[start[c]! + rng.nextInt(sizeOf(c))]!;
  const drawSame = (): [number, number] => {
    const c = multi[rng.nextInt(multi.length)]!;
    const n = sizeOf(c);
    const a = rng.nextInt(n);
    let b = rng.nextInt(n - 1);
    if (b >= a) b++;
    return [byClass[start[c]! + a]!, byClass[start[c]! + b]!];
  };
  const drawDifferent = (): [number, number] => {
    const a = rng.nextInt(nonEmpty.length);
    let b = rng.nextInt(nonEmpty.length - 1);
    if (b >= a) b++;
    return [member(nonEmpty[a]!), member(nonEmpty[b]!)];
  };
  const seen = new Set<string>();
  const pairs: VerificationPair[] = [];
  for (let i = 0; i < numPairs; i++) {
    const same = i % 2 === 0;
    let pair = same ? drawSame() : drawDifferent();
    for (let attempt = 1; attempt < DISTINCT_TRIES && seen.has(pairKey(pair)); attempt++) pair = same ? drawSame() : drawDifferent();
    seen.add(pairKey(pair));
    pairs.push({ first: pair[0], second: pair[1], same });
  }
  return pairs;
}

function pairKey([a, b]: [number, number]): string {
  return a < b ? `${a},${b}` : `${b},${a}`;
}

export interface MakeVerificationBinOptions {
  source: SampleSource;
  /** Number of pairs P (the file holds 2P images). */
  pairs: number;
  /** Output .bin path (parent folders are created). */
  out: string;
  /** Side length the images are resized (stretched) to. Default 112. */
  size?: number;
  /** Pair drawing seed. Default 0. */
  seed?: number;
  /** Default 'jpeg'. */
  format?: 'jpeg' | 'png';
  /** JPEG quality. Default 95. */
  quality?: number;
  /** Pickle protocol. Default 4 (Python 3); 2 writes what insightface's own Python 2 bins use. */
  protocol?: PickleWriteProtocol;
  /** Parallel image reads/encodes. Default 16. */
  concurrency?: number;
  onProgress?: (progress: { done: number; total: number }) => void;
}

export interface MakeVerificationBinResult {
  /** Absolute path of the .bin. */
  path: string;
  pairs: VerificationPair[];
  /** Distinct samples encoded. */
  images: number;
}

/** Encode one sample as a size x size JPEG/PNG. */
async function encodeSample(source: SampleSource, index: number, size: number, format: 'jpeg' | 'png', quality: number): Promise<Buffer> {
  try {
    const payload = await source.read(index);
    if (payload.kind === 'encoded') return await encodeRgb(await decodeToRgb(payload.bytes, size, size), size, size, 'hwc', format, quality);
    if (payload.width === size && payload.height === size) return await encodeRgb(payload.pixels, size, size, payload.layout, format, quality);
    const hwc = payload.layout === 'hwc' ? payload.pixels : chwToHwc(payload.pixels, payload.height, payload.width);
    return await encodeRgb(await resizeRawRgb(hwc, payload.width, payload.height, size, size), size, size, 'hwc', format, quality);
  } catch (error) {
    throw toBadSampleError(source, index, error);
  }
}

/** Draw pairs from `source`, encode their images and write an insightface verification .bin. */
export async function makeVerificationBin(options: MakeVerificationBinOptions): Promise<MakeVerificationBinResult> {
  const { source } = options;
  const size = options.size ?? 112;
  integerInRange(size, 'size', 8, 4096);
  const quality = options.quality ?? 95;
  integerInRange(quality, 'quality', 1, 100);
  const format = options.format ?? 'jpeg';
  if (format !== 'jpeg' && format !== 'png') throw new RangeError(`format must be jpeg or png, got ${JSON.stringify(format)}`);
  const pairs = drawVerificationPairs(source, options.pairs, options.seed ?? 0);

  const unique = [...new Set(pairs.flatMap((p) => [p.first, p.second]))];
  const encoded = new Map<number, Buffer>();
  const concurrency = Math.max(1, options.concurrency ?? 16);
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < unique.length) {
      const index = unique[next++]!;
      encoded.set(index, await encodeSample(source, index, size, format, quality));
      options.onProgress?.({ done: ++done, total: unique.length });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, unique.length) }, worker));

  const images = pairs.flatMap((p) => [encoded.get(p.first)!, encoded.get(p.second)!]);
  const path = resolve(options.out);
  await mkdir(dirname(path), { recursive: true });
  await writeVerificationBin(
    path,
    images,
    pairs.map((p) => p.same),
    options.protocol === undefined ? {} : { protocol: options.protocol },
  );
  return { path, pairs, images: unique.length };
}
