/**
 * Pixel-level helpers: decode (sharp, async, on libvips threads), layout conversion, flip and the
 * reference normalization. Batches stay uint8 NCHW; normalization happens on tensors later.
 */
import sharp from 'sharp';
import type { SamplePayload } from './source.js';
import { decodeBmp, isBmp } from './bmp.js';

/** Default input side length (faces are aligned 112x112 crops). */
export const DEFAULT_IMAGE_SIZE = 112;
/** Normalization used for training and evaluation: (x - PIXEL_MEAN) / PIXEL_DIVISOR. */
export const PIXEL_MEAN = 127.5;
export const PIXEL_DIVISOR = 128;

/** Reference normalization of uint8 pixels to float32, (x - 127.5) / 128, any layout. */
export function normalizeToFloat32(pixels: Uint8Array, out: Float32Array = new Float32Array(pixels.length)): Float32Array {
  if (out.length !== pixels.length) throw new RangeError(`output length ${out.length} != input length ${pixels.length}`);
  for (let i = 0; i < pixels.length; i++) out[i] = (pixels[i]! - PIXEL_MEAN) / PIXEL_DIVISOR;
  return out;
}

/** Decode an encoded image (JPEG, PNG, WebP, GIF, TIFF through sharp; BMP in TS) and resize it (stretch) to width x height; HWC RGB. */
export async function decodeToRgb(bytes: Uint8Array, width: number, height: number): Promise<Uint8Array> {
  if (isBmp(bytes)) {
    const bmp = decodeBmp(bytes);
    if (bmp.width === width && bmp.height === height) return bmp.pixels;
    return resizeRawRgb(bmp.pixels, bmp.width, bmp.height, width, height);
  }
  const { data, info } = await sharp(bytes, { failOn: 'error' })
    .resize(width, height, { fit: 'fill' })
    .removeAlpha()
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || info.width !== width || info.height !== height) {
    throw new Error(`decoder produced ${info.width}x${info.height}x${info.channels}, expected ${width}x${height}x3`);
  }
  return data;
}

/** Resize raw HWC RGB pixels with sharp (stretch). */
export async function resizeRawRgb(hwc: Uint8Array, width: number, height: number, toWidth: number, toHeight: number): Promise<Buffer> {
  return sharp(hwc, { raw: { width, height, channels: 3 } })
    .resize(toWidth, toHeight, { fit: 'fill' })
    .raw()
    .toBuffer();
}

/** Encode raw pixels (CHW or HWC RGB) as JPEG or PNG. */
export async function encodeRgb(
  pixels: Uint8Array,
  width: number,
  height: number,
  layout: 'chw' | 'hwc',
  format: 'jpeg' | 'png' = 'jpeg',
  quality = 95,
): Promise<Buffer> {
  const hwc = layout === 'hwc' ? pixels : chwToHwc(pixels, height, width);
  const image = sharp(hwc, { raw: { width, height, channels: 3 } });
  return format === 'png' ? image.png().toBuffer() : image.jpeg({ quality }).toBuffer();
}

/** Copy HWC RGB into CHW at dst[offset...], mirroring columns when `flip`. */
export function hwcToChw(src: Uint8Array, height: number, width: number, flip: boolean, dst: Uint8Array, offset = 0): void {
  const plane = height * width;
  if (src.length < plane * 3) throw new RangeError(`HWC source holds ${src.length} bytes, need ${plane * 3}`);
  if (offset + plane * 3 > dst.length) throw new RangeError('destination too small');
  const r = offset;
  const g = offset + plane;
  const b = offset + 2 * plane;
  for (let p = 0, s = 0; p < plane; p++, s += 3) {
    dst[r + p] = src[s]!;
    dst[g + p] = src[s + 1]!;
    dst[b + p] = src[s + 2]!;
  }
  if (flip) mirrorRowsInPlace(dst, offset, 3 * height, width);
}

/** Copy CHW (3 planes) into dst[offset...], mirroring columns when `flip`. */
export function copyChw(src: Uint8Array, height: number, width: number, flip: boolean, dst: Uint8Array, offset = 0): void {
  const size = height * width * 3;
  if (src.length < size) throw new RangeError(`CHW source holds ${src.length} bytes, need ${size}`);
  if (offset + size > dst.length) throw new RangeError('destination too small');
  dst.set(src.subarray(0, size), offset);
  if (flip) mirrorRowsInPlace(dst, offset, 3 * height, width);
}

/** Reverse each of `rows` consecutive rows of `width` bytes starting at `offset` (a horizontal flip of planar data). */
export function mirrorRowsInPlace(data: Uint8Array, offset: number, rows: number, width: number): void {
  for (let row = 0; row < rows; row++) {
    const start = offset + row * width;
    data.subarray(start, start + width).reverse();
  }
}

/** CHW RGB to a new HWC buffer. */
export function chwToHwc(chw: Uint8Array, height: number, width: number): Uint8Array {
  const plane = height * width;
  const out = new Uint8Array(plane * 3);
  for (let p = 0; p < plane; p++) {
    out[p * 3] = chw[p]!;
    out[p * 3 + 1] = chw[plane + p]!;
    out[p * 3 + 2] = chw[2 * plane + p]!;
  }
  return out;
}

/**
 * Turn a sample payload into CHW RGB at dst[offset...] with the given size, optionally mirrored.
 * Encoded payloads go through sharp's async pipeline (libvips worker threads).
 */
export async function writeSampleChw(
  payload: SamplePayload,
  width: number,
  height: number,
  flip: boolean,
  dst: Uint8Array,
  offset: number,
): Promise<void> {
  if (payload.kind === 'encoded') {
    const hwc = await decodeToRgb(payload.bytes, width, height);
    hwcToChw(hwc, height, width, flip, dst, offset);
    return;
  }
  const expected = payload.width * payload.height * 3;
  if (payload.pixels.length !== expected) {
    throw new Error(`raw sample holds ${payload.pixels.length} bytes, expected ${payload.width}x${payload.height}x3 = ${expected}`);
  }
  if (payload.width === width && payload.height === height) {
    if (payload.layout === 'chw') copyChw(payload.pixels, height, width, flip, dst, offset);
    else hwcToChw(payload.pixels, height, width, flip, dst, offset);
    return;
  }
  const hwc = payload.layout === 'hwc' ? payload.pixels : chwToHwc(payload.pixels, payload.height, payload.width);
  const resized = await resizeRawRgb(hwc, payload.width, payload.height, width, height);
  hwcToChw(resized, height, width, flip, dst, offset);
}

/** Guess a file extension from an encoded image's leading bytes ('bin' when unknown). */
export function sniffImageExtension(bytes: Uint8Array): 'jpg' | 'png' | 'bmp' | 'webp' | 'gif' | 'bin' {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpg';
  if (bytes.length >= 8 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) return 'png';
  if (bytes.length >= 2 && bytes[0] === 0x42 && bytes[1] === 0x4d) return 'bmp';
  if (
    bytes.length >= 12 &&
    bytes[0] === 0x52 && bytes[1] === 0x49 && bytes[2] === 0x46 && bytes[3] === 0x46 &&
    bytes[8] === 0x57 && bytes[9] === 0x45 && bytes[10] === 0x42 && bytes[11] === 0x50
  ) return 'webp';
  if (bytes.length >= 3 && bytes[0] === 0x47 && bytes[1] === 0x49 && bytes[2] === 0x46) return 'gif';
  return 'bin';
}

/** Fully decode an encoded image, throwing when it is corrupt; returns its size. */
export async function verifyImage(bytes: Uint8Array): Promise<{ width: number; height: number }> {
  if (isBmp(bytes)) {
    const { width, height } = decodeBmp(bytes);
    return { width, height };
  }
  const { info } = await sharp(bytes, { failOn: 'error' }).raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height };
}
