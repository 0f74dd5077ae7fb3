// 2000 training steps of a small CNN keep resident memory flat after warm-up.
// The loop yields to the event loop each step, as a training loop awaiting its data loader does:
// Node runs the finalizers of garbage-collected native handles from the event loop, so a loop that
// never yields keeps even disposed handles' small wrappers until it does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ops as F, tidy, optim, manualSeed } from '../../src/index.js';
import { SmallCnn } from '../../bench/small-cnn.js';

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;
const MiB = 1024 * 1024;

test('2000 small-CNN training steps: resident memory stays flat after warm-up', async () => {
  manualSeed(1);
  const model = new SmallCnn();
  const optimizer = new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
  const images = F.randn([4, 3, 8, 8]);
  const labels = F.randint(0, 10, [4]);
  const step = async (): Promise<void> => {
    tidy(() => F.crossEntropy(model.call(images), labels).backward());
    optimizer.step();
    optimizer.zeroGrad();
    await new Promise((resolve) => setImmediate(resolve));
  };
  for (let i = 0; i < 200; i++) await step();
  collectGarbage();
  const rssAfterWarmup = process.memoryUsage().rss;
  for (let i = 0; i < 1800; i++) {
    await step();
  }
  collectGarbage();
  const rssGrowth = process.memoryUsage().rss - rssAfterWarmup;
  // A leaked activation per step (>= 4*32*8*8*4 bytes = 32 KiB) would add ~56 MiB over 1800 steps.
  assert.ok(rssGrowth < 24 * MiB, `RSS grew by ${(rssGrowth / MiB).toFixed(1)} MiB over 1800 steps`);
  optimizer.dispose();
  model.dispose();
  images.dispose();
  labels.dispose();
});
