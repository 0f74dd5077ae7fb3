// Shared fixtures for the data tests: temporary directories and small generated images.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';

/** A fresh temporary directory; call the returned cleanup when done. */
export async function makeTempDir(prefix = 'plsc-data-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** HWC RGB pixels where pixel (x, y) has R = x*step, G = y*step, B = base. */
export function gradientPixels(width: number, height: number, base = 77, step = 9): Uint8Array {
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * 3;
      out[p] = (x * step) & 255;
      out[p + 1] = (y * step) & 255;
      out[p + 2] = base;
    }
  }
  return out;
}

export async function encodePixels(hwc: Uint8Array, width: number, height: number, format: 'png' | 'jpeg'): Promise<Buffer> {
  const image = sharp(hwc, { raw: { width, height, channels: 3 } });
  return format === 'png' ? image.png().toBuffer() : image.jpeg({ quality: 95 }).toBuffer();
}

/** A solid-color image. */
export async function solidImage(rgb: readonly [number, number, number], size: number, format: 'png' | 'jpeg'): Promise<Buffer> {
  const hwc = new Uint8Array(size * size * 3);
  for (let p = 0; p < size * size; p++) hwc.set(rgb, p * 3);
  return encodePixels(hwc, size, size, format);
}

/** Collect every batch of one pass of an async iterable. */
export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}
