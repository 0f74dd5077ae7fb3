// Shared fixtures for the data tests: temporary directories, small generated images and pickle bytes.
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

/** Assemble pickle bytes: numbers are single bytes, strings are latin-1 bytes. */
export function bytes(...parts: (number | string | number[] | Uint8Array)[]): Buffer {
  const out: number[] = [];
  for (const p of parts) {
    if (typeof p === 'number') out.push(p);
    else if (typeof p === 'string') for (const ch of p) out.push(ch.charCodeAt(0));
    else out.push(...p);
  }
  return Buffer.from(out);
}
/** Little-endian 32- and 64-bit unsigned integers (below 2^32) as byte lists. */
export const u32 = (n: number): number[] => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
export const u64 = (n: number): number[] => [...u32(n), 0, 0, 0, 0];
