// Request payload -> model input: base64 parsing and image decoding/resizing with sharp, then the
// PLSC normalization (x - 127.5) / 128 into planar RGB (CHW) float32.
import sharp from 'sharp';

/** An input problem the client can fix; the server answers 400 with this message. */
export class BadInputError extends Error {
  readonly statusCode = 400;
  constructor(message: string) {
    super(message);
    this.name = 'BadInputError';
  }
}

/** A request over a size limit; the server answers 413 with this message. */
export class PayloadTooLargeError extends Error {
  readonly statusCode = 413;
  constructor(message: string) {
    super(message);
    this.name = 'PayloadTooLargeError';
  }
}

export interface ImageGeometry {
  /** Model input height and width in pixels. */
  height: number;
  width: number;
}

const DATA_URL = /^data:[\w.+-]+\/[\w.+-]+(;[\w.+-]+=[\w.+-]+)*;base64,/i;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64_URL = /^[A-Za-z0-9_-]*={0,2}$/;

/** Decode standard or URL-safe base64 (optionally a data: URL); throw BadInputError naming `field`. */
export function decodeBase64Image(value: unknown, field: string): Buffer {
  if (typeof value !== 'string') throw new BadInputError(`${field} must be a base64 string, got ${value === null ? 'null' : typeof value}`);
  const text = value.replace(DATA_URL, '').replace(/\s+/g, '');
  if (text.length === 0) throw new BadInputError(`${field} is empty`);
  if ((!BASE64.test(text) && !BASE64_URL.test(text)) || text.length % 4 === 1) {
    throw new BadInputError(`${field} is not valid base64`);
  }
  return Buffer.from(text, 'base64');
}

/** Raster formats accepted (sharp's names; AVIF reports as heif). Vector formats such as SVG are refused. */
const RASTER_FORMATS = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif', 'jp2']);
class UnsupportedFormat extends Error {}

/** Default per-image pixel limit (a decompression-bomb guard): 40 megapixels. */
export const DEFAULT_MAX_INPUT_PIXELS = 40_000_000;

export interface DecodeOptions extends ImageGeometry {
  /** Refuse images with more input pixels than this (decompression bombs). Default 40 megapixels. */
  maxInputPixels?: number;
}

export interface ImageHeader {
  format: string;
  width: number;
  height: number;
}

/**
 * Format and size of an encoded image, read from its header without decoding the pixels. Refuses
 * non-raster formats (400) and images over `maxInputPixels` (413), naming `field`.
 */
export async function readImageHeader(bytes: Uint8Array, field: string, maxInputPixels = DEFAULT_MAX_INPUT_PIXELS): Promise<ImageHeader> {
  if (bytes.length === 0) throw new BadInputError(`${field} is empty`);
  let metadata: sharp.Metadata;
  try {
    metadata = await sharp(bytes).metadata();
  } catch (error) {
    throw new BadInputError(`${field} is not a decodable image (${(error as Error).message.split('\n')[0]})`);
  }
  const { format, width, height } = metadata;
  if (format === undefined || !RASTER_FORMATS.has(format)) {
    throw new BadInputError(`${field} is ${format ?? 'an unknown format'}; send a raster image (${[...RASTER_FORMATS].join(', ')})`);
  }
  if (!(width > 0 && height > 0)) throw new BadInputError(`${field} has no width and height in its ${format} header`);
  if (width * height > maxInputPixels) {
    throw new PayloadTooLargeError(`${field} is ${width}x${height} = ${width * height} pixels, over the limit of ${maxInputPixels} pixels per image`);
  }
  return { format, width, height };
}

/**
 * Decode one encoded raster image (JPEG, PNG, WebP, GIF, TIFF, AVIF/HEIF), apply EXIF orientation, convert to 3-channel sRGB,
 * resize to exactly width x height (stretching; inputs are expected to be aligned face crops), and
 * return CHW float32 normalized as (x - 127.5) / 128.
 */
export async function decodeImageToTensor(bytes: Uint8Array, field: string, options: DecodeOptions): Promise<Float32Array> {
  const { height, width } = options;
  if (bytes.length === 0) throw new BadInputError(`${field} is empty`);
  let pixels: Buffer;
  let channels: number;
  let format: string | undefined;
  try {
    const image = sharp(bytes, { limitInputPixels: options.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS, failOn: 'error' });
    format = (await image.metadata()).format;
    if (format === undefined || !RASTER_FORMATS.has(format)) throw new UnsupportedFormat();
    const result = await image
      .rotate()
      .removeAlpha()
      .toColourspace('srgb')
      .resize(width, height, { fit: 'fill' })
      .raw()
      .toBuffer({ resolveWithObject: true });
    pixels = result.data;
    channels = result.info.channels;
  } catch (error) {
    if (error instanceof UnsupportedFormat) {
      throw new BadInputError(`${field} is ${format ?? 'an unknown format'}; send a raster image (${[...RASTER_FORMATS].join(', ')})`);
    }
    throw new BadInputError(`${field} is not a decodable image (${(error as Error).message.split('\n')[0]})`);
  }
  if (channels !== 3 || pixels.length !== height * width * 3) {
    throw new BadInputError(`${field} decoded to ${channels} channels, expected RGB`);
  }
  const plane = height * width;
  const out = new Float32Array(3 * plane);
  for (let i = 0, p = 0; i < plane; i++, p += 3) {
    out[i] = (pixels[p]! - 127.5) / 128;
    out[plane + i] = (pixels[p + 1]! - 127.5) / 128;
    out[2 * plane + i] = (pixels[p + 2]! - 127.5) / 128;
  }
  return out;
}
