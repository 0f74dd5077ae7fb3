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

export interface DecodeOptions extends ImageGeometry {
  /** Refuse images with more input pixels than this (decompression bombs). Default 40 megapixels. */
  maxInputPixels?: number;
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
    const image = sharp(bytes, { limitInputPixels: options.maxInputPixels ?? 40_000_000, failOn: 'error' });
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
