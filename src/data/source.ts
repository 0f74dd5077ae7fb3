import { positiveInteger } from '../util/validate.js';
/**
 * The common contract of every dataset reader, plus the error types readers raise.
 *
 * A reader knows its sample count, class count and every sample's label up front (so the loader
 * can shuffle and shard without touching image bytes) and fetches one sample's bytes on demand.
 */

/** One sample's pixel data as a reader hands it over: still encoded, or already raw RGB. */
export type SamplePayload =
  | { readonly kind: 'encoded'; readonly bytes: Uint8Array }
  | {
      readonly kind: 'raw';
      /** 8-bit RGB pixels, 3 channels, in the given layout. */
      readonly pixels: Uint8Array;
      readonly width: number;
      readonly height: number;
      /** 'chw': planar R, G, B planes; 'hwc': interleaved RGBRGB... */
      readonly layout: 'chw' | 'hwc';
    };

export interface SampleSource {
  /** Number of samples; indices run 0..length-1. */
  readonly length: number;
  /** Number of classes; every label lies in 0..numClasses-1. */
  readonly numClasses: number;
  /** The label of sample `index` (known without reading the sample). */
  label(index: number): number;
  /** Fetch sample `index`. Rejects (preferably with a BadSampleError) when it cannot be read. */
  read(index: number): Promise<SamplePayload>;
  /** Where sample `index` lives, for error messages: 'file X line N (path)', 'record K of X', ... */
  describe(index: number): string;
  /**
   * Optional fast path for sources that generate pixels: write sample `index` as CHW RGB of exactly
   * width x height into out[offset...] and return true, or return false to fall back to read().
   */
  readChwInto?(index: number, width: number, height: number, out: Uint8Array, offset: number): boolean;
  /** Release file handles. Optional: sources without open resources omit it. */
  close?(): Promise<void>;
}

/** Malformed dataset metadata (list files, indexes, record framing): always fatal. */
export class DataFormatError extends Error {
  override readonly name = 'DataFormatError';
  /** The file the problem is in. */
  readonly file: string;
  /** 1-based line number, when the file is line oriented. */
  readonly line: number | undefined;
  constructor(file: string, message: string, options: { line?: number; cause?: unknown } = {}) {
    super(options.line === undefined ? `${file}: ${message}` : `${file} line ${options.line}: ${message}`, {
      cause: options.cause,
    });
    this.file = file;
    this.line = options.line;
  }
}

/** One sample that could not be read or decoded (missing file, corrupt record, undecodable image). */
export class BadSampleError extends Error {
  override readonly name = 'BadSampleError';
  /** Sample index in its source. */
  readonly index: number;
  /** The source's description of where the sample lives. */
  readonly where: string;
  /** Short reason without the location. */
  readonly reason: string;
  constructor(index: number, where: string, reason: string, options: { cause?: unknown } = {}) {
    super(`bad sample ${index} (${where}): ${reason}`, { cause: options.cause });
    this.index = index;
    this.where = where;
    this.reason = reason;
  }
}

/** Wrap any failure reading sample `index` of `source` into a BadSampleError (kept as is if it already is one). */
export function toBadSampleError(source: SampleSource, index: number, error: unknown): BadSampleError {
  if (error instanceof BadSampleError) return error;
  const reason = error instanceof Error ? error.message : String(error);
  return new BadSampleError(index, source.describe(index), reason, { cause: error });
}

/** Throws a RangeError unless `index` is an integer in [0, length). */
export function checkIndex(index: number, length: number, what = 'sample'): void {
  if (!Number.isInteger(index) || index < 0 || index >= length) {
    throw new RangeError(`${what} index ${index} out of range [0, ${length})`);
  }
}

/**
 * Parse a label token: a non-negative decimal integer below 2^31 (and below numClasses when given).
 * Returns the value, or a message saying what is wrong with the token.
 */
export function parseLabelToken(token: string, numClasses?: number): number | string {
  if (!/^[0-9]+$/.test(token)) {
    return `label ${JSON.stringify(token)} is not a non-negative integer`;
  }
  const value = Number(token);
  if (value > 0x7fffffff) return `label ${token} is too large`;
  if (numClasses !== undefined && value >= numClasses) {
    return `label ${value} out of range [0, ${numClasses})`;
  }
  return value;
}

/** A growable Int32Array / Float64Array, for readers that do not know their sample count up front. */
export class GrowableArray<T extends Int32Array | Float64Array> {
  private data: T;
  private count = 0;
  constructor(private readonly make: (capacity: number) => T, initialCapacity = 1024) {
    this.data = make(initialCapacity);
  }
  get length(): number {
    return this.count;
  }
  push(value: number): void {
    if (this.count === this.data.length) {
      const bigger = this.make(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.count++] = value;
  }
  /** A right-sized copy. */
  finish(): T {
    return this.data.slice(0, this.count) as T;
  }
}

export function int32Growable(): GrowableArray<Int32Array> {
  return new GrowableArray((n) => new Int32Array(n));
}

export function float64Growable(): GrowableArray<Float64Array> {
  return new GrowableArray((n) => new Float64Array(n));
}

/** Determine numClasses from the labels (max+1) or validate them against an explicit count. */
export function resolveNumClasses(
  labels: Int32Array,
  explicit: number | undefined,
  where: (sampleIndex: number) => string,
): number {
  let max = -1;
  for (let i = 0; i < labels.length; i++) if (labels[i]! > max) max = labels[i]!;
  if (explicit === undefined) return max + 1;
  positiveInteger(explicit, 'numClasses');
  if (max >= explicit) {
    const i = labels.findIndex((l) => l >= explicit);
    throw new RangeError(`${where(i)}: label ${labels[i]} out of range [0, ${explicit})`);
  }
  return explicit;
}
