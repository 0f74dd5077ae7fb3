/**
 * Produces the embeddings the verification protocol needs (each image and its horizontal flip)
 * from any model behind an `embed` callback, so the protocol math stays independent of how
 * embeddings are computed (libtorch, ONNX runtime, a remote server, a test double).
 */
import { evaluateVerification, type EmbeddingMatrix, type VerificationOptions, type VerificationResult } from './verification.js';
import { positiveInteger } from '../util/validate.js';

/** Embeds `count` images given as one NCHW float32 batch; returns count x D values, row-major. */
export type EmbedFunction = (batch: Float32Array, count: number) => Promise<Float32Array> | Float32Array;

/** Decoded, model-ready images addressed by index. */
export interface ImageSource {
  readonly count: number;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  /** Write image `index` as normalized CHW float32 into `out` starting at `offset`. */
  read(index: number, out: Float32Array, offset: number): void;
}

export interface Uint8HwcSourceOptions {
  /** Pixel normalization (x - mean) / divisor; defaults 127.5 and 128 (PLSC). arcface_torch uses 127.5 / 127.5. */
  mean?: number;
  divisor?: number;
}

/**
 * An ImageSource over decoded HWC uint8 images (what sharp's raw output and
 * data/image.ts decodeToRgb give), normalized on the fly so only uint8 pixels stay in memory.
 */
export function uint8HwcImageSource(
  images: readonly Uint8Array[],
  shape: { height: number; width: number; channels?: number },
  options: Uint8HwcSourceOptions = {},
): ImageSource {
  const { height, width } = shape;
  const channels = shape.channels ?? 3;
  const mean = options.mean ?? 127.5;
  const divisor = options.divisor ?? 128;
  const plane = height * width;
  images.forEach((img, i) => {
    if (img.length !== plane * channels) {
      throw new RangeError(`image ${i} holds ${img.length} bytes, ${height}x${width}x${channels} needs ${plane * channels}`);
    }
  });
  return {
    count: images.length,
    channels,
    height,
    width,
    read(index, out, offset) {
      const img = images[index];
      if (img === undefined) throw new RangeError(`image index ${index} out of range [0, ${images.length})`);
      for (let p = 0; p < plane; p++) {
        for (let c = 0; c < channels; c++) out[offset + c * plane + p] = (img[p * channels + c]! - mean) / divisor;
      }
    },
  };
}

/** An ImageSource over images already normalized as CHW float32. */
export function float32ChwImageSource(images: readonly Float32Array[], shape: { channels: number; height: number; width: number }): ImageSource {
  const size = shape.channels * shape.height * shape.width;
  images.forEach((img, i) => {
    if (img.length !== size) throw new RangeError(`image ${i} holds ${img.length} values, ${shape.channels}x${shape.height}x${shape.width} needs ${size}`);
  });
  return {
    count: images.length,
    ...shape,
    read(index, out, offset) {
      const img = images[index];
      if (img === undefined) throw new RangeError(`image index ${index} out of range [0, ${images.length})`);
      out.set(img, offset);
    },
  };
}

/** Mirror every image of an NCHW batch left-right, in place. */
export function flipBatchHorizontally(batch: Float32Array, count: number, channels: number, height: number, width: number): void {
  const rows = count * channels * height;
  if (batch.length < rows * width) throw new RangeError(`batch holds ${batch.length} values, ${count}x${channels}x${height}x${width} needs ${rows * width}`);
  for (let r = 0; r < rows; r++) {
    let i = r * width;
    let j = i + width - 1;
    while (i < j) {
      const t = batch[i]!;
      batch[i] = batch[j]!;
      batch[j] = t;
      i++;
      j--;
    }
  }
}

export interface EmbedImagesOptions {
  /** Images per embed call (default 64). */
  batchSize?: number;
  /** Also embed horizontally flipped images (default true). */
  flip?: boolean;
}

export interface EmbeddedImages {
  original: EmbeddingMatrix;
  /** Embeddings of the flipped images; null when flip is off. */
  flipped: EmbeddingMatrix | null;
}

/** Embed every image of `source` (and its flip) in batches through `embed`. */
export async function embedImages(source: ImageSource, embed: EmbedFunction, options: EmbedImagesOptions = {}): Promise<EmbeddedImages> {
  const batchSize = options.batchSize ?? 64;
  const flip = options.flip ?? true;
  positiveInteger(batchSize, 'batchSize');
  const { count, channels, height, width } = source;
  if (count === 0) throw new RangeError('no images to embed');
  const imageSize = channels * height * width;
  let dim = 0;
  let original = new Float32Array(0);
  let flipped: Float32Array | null = null;
  const batch = new Float32Array(Math.min(batchSize, count) * imageSize);

  const run = async (input: Float32Array, n: number, start: number, into: 'original' | 'flipped'): Promise<void> => {
    const out = await embed(input, n);
    if (!(out instanceof Float32Array)) throw new TypeError('embed must return a Float32Array');
    if (out.length === 0 || out.length % n !== 0) throw new RangeError(`embed returned ${out.length} values for ${n} images`);
    const d = out.length / n;
    if (dim === 0) {
      dim = d;
      original = new Float32Array(count * dim);
      if (flip) flipped = new Float32Array(count * dim);
    } else if (d !== dim) {
      throw new RangeError(`embed returned ${d}-dimensional embeddings, earlier batches had ${dim}`);
    }
    (into === 'original' ? original : flipped!).set(out.subarray(0, n * dim), start * dim);
  };

  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    for (let i = 0; i < n; i++) source.read(start + i, batch, i * imageSize);
    const input = batch.subarray(0, n * imageSize);
    await run(input, n, start, 'original');
    if (flip) {
      // Refill: the callback may have modified or retained the batch it was given.
      for (let i = 0; i < n; i++) source.read(start + i, batch, i * imageSize);
      flipBatchHorizontally(input, n, channels, height, width);
      await run(input, n, start, 'flipped');
    }
  }
  return {
    original: { data: original, rows: count, dim },
    flipped: flipped === null ? null : { data: flipped, rows: count, dim },
  };
}

/** Embed a verification set's images (with flips) and run the protocol. */
export async function evaluateVerificationModel(
  source: ImageSource,
  issame: readonly boolean[],
  embed: EmbedFunction,
  options: EmbedImagesOptions & VerificationOptions = {},
): Promise<VerificationResult> {
  if (source.count !== 2 * issame.length) {
    throw new RangeError(`${source.count} images for ${issame.length} pairs (need exactly 2 images per pair)`);
  }
  const { original, flipped } = await embedImages(source, embed, options);
  return evaluateVerification(original, flipped, issame, options);
}
