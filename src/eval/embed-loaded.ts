/**
 * Embeds images that have to be fetched and decoded first (a .bin's JPEGs, a list file's images):
 * one batch is decoded at a time, and the next batch is decoded (on sharp's worker threads) while
 * the current one runs through the model, so memory holds two batches of pixels, never the set.
 */
import { chwToHwc, decodeToRgb, resizeRawRgb } from '../data/image.js';
import type { SamplePayload } from '../data/source.js';
import { embedImages, uint8HwcImageSource, type EmbedFunction, type EmbeddedImages, type Uint8HwcSourceOptions } from './embed.js';
import { positiveInteger } from '../util/validate.js';

/** Image `index` as HWC RGB uint8 of exactly the requested height x width. */
export type RgbImageLoader = (index: number) => Promise<Uint8Array>;

export interface EmbedLoadedImagesOptions extends Uint8HwcSourceOptions {
  height: number;
  width: number;
  /** Images per embed call (default 64). */
  batchSize?: number;
  /** Also embed horizontally flipped images (default true). */
  flip?: boolean;
}

/** Encoded (JPEG/PNG/BMP/...) or raw sample pixels as HWC RGB of width x height (stretched if needed). */
export async function samplePayloadToRgb(payload: SamplePayload, width: number, height: number): Promise<Uint8Array> {
  if (payload.kind === 'encoded') return decodeToRgb(payload.bytes, width, height);
  const expected = payload.width * payload.height * 3;
  if (payload.pixels.length !== expected) {
    throw new Error(`raw sample holds ${payload.pixels.length} bytes, expected ${payload.width}x${payload.height}x3 = ${expected}`);
  }
  const hwc = payload.layout === 'hwc' ? payload.pixels : chwToHwc(payload.pixels, payload.height, payload.width);
  if (payload.width === width && payload.height === height) return hwc;
  return resizeRawRgb(hwc, payload.width, payload.height, width, height);
}

/** Embeds images 0..count-1 (and their flips) loaded by `load`, in batches of `batchSize`. */
export async function embedLoadedImages(count: number, load: RgbImageLoader, embed: EmbedFunction, options: EmbedLoadedImagesOptions): Promise<EmbeddedImages> {
  const batchSize = options.batchSize ?? 64;
  positiveInteger(batchSize, 'batchSize');
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`no images to embed (count ${count})`);
  const { height, width } = options;
  const flip = options.flip ?? true;
  const loadBatch = (start: number): Promise<Uint8Array[]> => {
    const batch = Promise.all(Array.from({ length: Math.min(batchSize, count - start) }, (_, i) => load(start + i)));
    // Loaded ahead: a failure is reported when the batch is awaited, not as an unhandled rejection.
    batch.catch(() => undefined);
    return batch;
  };

  let original: Float32Array | null = null;
  let flipped: Float32Array | null = null;
  let dim = 0;
  let next: Promise<Uint8Array[]> | null = loadBatch(0);
  for (let start = 0; start < count; start += batchSize) {
    const pixels: Uint8Array[] = await (next as Promise<Uint8Array[]>);
    next = start + batchSize < count ? loadBatch(start + batchSize) : null;
    const source = uint8HwcImageSource(pixels, { height, width }, options);
    const part = await embedImages(source, embed, { batchSize: pixels.length, flip });
    if (original === null) {
      dim = part.original.dim;
      original = new Float32Array(count * dim);
      if (flip) flipped = new Float32Array(count * dim);
    } else if (part.original.dim !== dim) {
      throw new RangeError(`embed returned ${part.original.dim}-dimensional embeddings, earlier batches had ${dim}`);
    }
    original.set(part.original.data, start * dim);
    if (flipped !== null && part.flipped !== null) flipped.set(part.flipped.data, start * dim);
  }
  return {
    original: { data: original as Float32Array, rows: count, dim },
    flipped: flipped === null ? null : { data: flipped, rows: count, dim },
  };
}
