import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import {
  PIXEL_DIVISOR,
  PIXEL_MEAN,
  chwToHwc,
  copyChw,
  decodeToRgb,
  hwcToChw,
  normalizeToFloat32,
  sniffImageExtension,
  writeSampleChw,
} from '../../src/data/image.js';
import { decodeBmp, encodeBmp } from '../../src/data/bmp.js';
import { encodePixels, gradientPixels } from './helpers.js';

test('normalizeToFloat32 computes (x - 127.5) / 128', () => {
  assert.equal(PIXEL_MEAN, 127.5);
  assert.equal(PIXEL_DIVISOR, 128);
  const out = normalizeToFloat32(Uint8Array.of(0, 255, 128));
  assert.deepEqual([...out], [-127.5 / 128, 127.5 / 128, 0.5 / 128]);
  assert.throws(() => normalizeToFloat32(new Uint8Array(3), new Float32Array(2)), /length/);
});

test('hwcToChw splits planes in RGB order and flip mirrors columns', () => {
  const w = 5;
  const h = 3;
  const hwc = gradientPixels(w, h, 200, 10);
  const chw = new Uint8Array(3 * w * h);
  hwcToChw(hwc, h, w, false, chw);
  const plane = w * h;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      assert.equal(chw[y * w + x], x * 10);
      assert.equal(chw[plane + y * w + x], y * 10);
      assert.equal(chw[2 * plane + y * w + x], 200);
    }
  }
  const flipped = new Uint8Array(3 * w * h);
  hwcToChw(hwc, h, w, true, flipped);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) assert.equal(flipped[y * w + x], (w - 1 - x) * 10);
  const flippedAgain = new Uint8Array(3 * w * h);
  copyChw(flipped, h, w, true, flippedAgain);
  assert.deepEqual(flippedAgain, chw);
  assert.deepEqual(chwToHwc(chw, h, w), hwc);
});

test('decodeToRgb decodes PNG exactly and resizes to the requested size', async () => {
  const hwc = gradientPixels(8, 6);
  const png = await encodePixels(hwc, 8, 6, 'png');
  assert.deepEqual(new Uint8Array(await decodeToRgb(png, 8, 6)), hwc);
  const resized = await decodeToRgb(png, 112, 112);
  assert.equal(resized.length, 112 * 112 * 3);
});

test('decodeToRgb turns grayscale and RGBA into 3 channels', async () => {
  const gray = await sharp(Buffer.alloc(16 * 16, 90), { raw: { width: 16, height: 16, channels: 1 } }).png().toBuffer();
  const rgba = await sharp(Buffer.alloc(16 * 16 * 4, 255), { raw: { width: 16, height: 16, channels: 4 } }).png().toBuffer();
  const g = await decodeToRgb(gray, 16, 16);
  assert.equal(g.length, 16 * 16 * 3);
  assert.equal(g[0], 90);
  assert.equal(g[2], 90);
  assert.equal((await decodeToRgb(rgba, 16, 16)).length, 16 * 16 * 3);
});

test('decodeToRgb rejects corrupt and truncated data', async () => {
  await assert.rejects(decodeToRgb(Buffer.from('definitely not an image'), 8, 8));
  const jpeg = await encodePixels(gradientPixels(64, 64), 64, 64, 'jpeg');
  await assert.rejects(decodeToRgb(jpeg.subarray(0, jpeg.length >> 1), 8, 8));
});

test('BMP round trip through the TS codec and decodeToRgb', async () => {
  const hwc = gradientPixels(7, 5);
  const bmp = encodeBmp(hwc, 7, 5);
  assert.equal(sniffImageExtension(bmp), 'bmp');
  assert.deepEqual(decodeBmp(bmp).pixels, hwc);
  assert.deepEqual(new Uint8Array(await decodeToRgb(bmp, 7, 5)), hwc);
  assert.throws(() => decodeBmp(bmp.subarray(0, 60)), /truncated/);
});

test('writeSampleChw handles encoded, raw CHW, raw HWC and resizing raw input', async () => {
  const hwc = gradientPixels(4, 4);
  const chw = new Uint8Array(48);
  hwcToChw(hwc, 4, 4, false, chw);
  const dst = new Uint8Array(96);
  await writeSampleChw({ kind: 'encoded', bytes: await encodePixels(hwc, 4, 4, 'png') }, 4, 4, false, dst, 0);
  await writeSampleChw({ kind: 'raw', pixels: hwc, width: 4, height: 4, layout: 'hwc' }, 4, 4, false, dst, 48);
  assert.deepEqual(dst.subarray(0, 48), chw);
  assert.deepEqual(dst.subarray(48), chw);
  const one = new Uint8Array(48);
  await writeSampleChw({ kind: 'raw', pixels: chw, width: 4, height: 4, layout: 'chw' }, 4, 4, false, one, 0);
  assert.deepEqual(one, chw);
  const big = new Uint8Array(3 * 8 * 8);
  await writeSampleChw({ kind: 'raw', pixels: chw, width: 4, height: 4, layout: 'chw' }, 8, 8, false, big, 0);
  assert.equal(big[2 * 64], 77); // blue plane stays constant through resizing
  await assert.rejects(writeSampleChw({ kind: 'raw', pixels: chw.subarray(1), width: 4, height: 4, layout: 'chw' }, 4, 4, false, one, 0), /bytes/);
});

test('sniffImageExtension recognises common formats', async () => {
  assert.equal(sniffImageExtension(await encodePixels(gradientPixels(2, 2), 2, 2, 'png')), 'png');
  assert.equal(sniffImageExtension(await encodePixels(gradientPixels(2, 2), 2, 2, 'jpeg')), 'jpg');
  assert.equal(sniffImageExtension(await sharp(Buffer.alloc(12), { raw: { width: 2, height: 2, channels: 3 } }).webp().toBuffer()), 'webp');
  assert.equal(sniffImageExtension(Uint8Array.of(1, 2, 3)), 'bin');
});
