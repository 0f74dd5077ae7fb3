import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  embedImages,
  evaluateVerificationModel,
  flipBatchHorizontally,
  float32ChwImageSource,
  uint8HwcImageSource,
  type EmbedFunction,
} from '../../src/eval/embed.js';

test('horizontal flip mirrors every row of every channel', () => {
  const batch = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  flipBatchHorizontally(batch, 2, 1, 2, 3);
  assert.deepEqual([...batch], [3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10]);
});

test('uint8 HWC images become normalized CHW', () => {
  // 1x2 image, RGB: pixel 0 = (255, 0, 127.5-ish), pixel 1 = (0, 255, 128)
  const source = uint8HwcImageSource([Uint8Array.from([255, 0, 128, 0, 255, 127])], { height: 1, width: 2 });
  const out = new Float32Array(8);
  source.read(0, out, 2);
  const n = (v: number) => (v - 127.5) / 128;
  assert.deepEqual([...out], [0, 0, n(255), n(0), n(0), n(255), n(128), n(127)]);
  const arcface = uint8HwcImageSource([Uint8Array.from([255, 0, 128, 0, 255, 127])], { height: 1, width: 2 }, { divisor: 127.5 });
  arcface.read(0, out, 0);
  assert.equal(out[0], 1);
  assert.throws(() => uint8HwcImageSource([new Uint8Array(5)], { height: 1, width: 2 }), /image 0 holds 5 bytes, 1x2x3 needs 6/);
});

/** A stand-in model: [left half minus right half, total] per image. */
function leftRightEmbed(channels: number, height: number, width: number, calls: number[]): EmbedFunction {
  return async (batch, count) => {
    calls.push(count);
    const size = channels * height * width;
    assert.equal(batch.length, count * size);
    const out = new Float32Array(count * 2);
    for (let i = 0; i < count; i++) {
      let diff = 0;
      let total = 0;
      for (let c = 0; c < channels; c++) {
        for (let y = 0; y < height; y++) {
          for (let x = 0; x < width; x++) {
            const v = batch[i * size + (c * height + y) * width + x]!;
            total += v;
            if (x < Math.floor(width / 2)) diff += v;
            else if (x >= width - Math.floor(width / 2)) diff -= v;
          }
        }
      }
      out[2 * i] = diff;
      out[2 * i + 1] = total;
    }
    batch.fill(-999); // a model may clobber its input; flips must not see this
    return out;
  };
}

test('embedImages embeds originals and flips in batches', async () => {
  const images = Array.from({ length: 5 }, (_, i) => Float32Array.from([i, 0, 1, 2, 0, 3]));
  const source = float32ChwImageSource(images, { channels: 1, height: 2, width: 3 });
  const calls: number[] = [];
  const { original, flipped } = await embedImages(source, leftRightEmbed(1, 2, 3, calls), { batchSize: 2 });
  assert.deepEqual(calls, [2, 2, 2, 2, 1, 1]);
  assert.equal(original.dim, 2);
  assert.equal(original.rows, 5);
  for (let i = 0; i < 5; i++) {
    const diff = i + 2 - (1 + 3); // left column (i, 2) minus right column (1, 3)
    assert.deepEqual([...original.data.subarray(2 * i, 2 * i + 2)], [diff, i + 6]);
    assert.deepEqual([...flipped!.data.subarray(2 * i, 2 * i + 2)], [0 - diff, i + 6]);
  }
  const noFlip = await embedImages(source, leftRightEmbed(1, 2, 3, []), { flip: false });
  assert.equal(noFlip.flipped, null);
  await assert.rejects(embedImages(source, async () => new Float32Array(3)), /embed returned 3 values for 5 images/);
});

test('evaluateVerificationModel runs the protocol on model outputs', async () => {
  // 20 pairs of 1x2x2 images: positives are the same image; a negative's partner is bright on top
  // instead of on the diagonal (and stays different after flip fusion).
  const images: Float32Array[] = [];
  const issame: boolean[] = [];
  for (let p = 0; p < 20; p++) {
    const same = p % 2 === 0;
    const a = Float32Array.from([p + 1, 1, 1, p + 1]);
    const b = same ? Float32Array.from(a) : Float32Array.from([p + 1, p + 1, 1, 1]);
    images.push(a, b);
    issame.push(same);
  }
  const source = float32ChwImageSource(images, { channels: 1, height: 2, width: 2 });
  const flat: EmbedFunction = (batch) => Float32Array.from(batch);
  const result = await evaluateVerificationModel(source, issame, flat, { batchSize: 7 });
  assert.equal(result.pairs, 20);
  assert.equal(result.accuracy, 1);
  await assert.rejects(evaluateVerificationModel(source, issame.slice(1), flat), /40 images for 19 pairs/);
});
