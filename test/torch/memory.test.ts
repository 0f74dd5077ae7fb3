// 2000 training steps of a small CNN keep resident memory flat after warm-up.
// The loop yields to the event loop each step, as a training loop awaiting its data loader does:
// Node runs the finalizers of garbage-collected native handles from the event loop, so a loop that
// never yields keeps even disposed handles' small wrappers until it does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { native } from '../../src/torch/native.js';
import { ops as F, tidy, keep, optim, manualSeed, type Tensor } from '../../src/index.js';
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

test("V8 is told a storage's size once, and only when no tidy() scope owns the tensor", () => {
  const storageBytes = 4 * MiB;
  const reported = (): number => native.allocatorStats().reportedBytes;
  const base = reported();
  const unscoped = F.zeros([storageBytes / 4]);
  assert.equal(reported() - base, storageBytes, 'a tensor made outside any scope is counted');
  unscoped.add_(1);
  const views = [unscoped.view([2, storageBytes / 8]), unscoped.narrow(0, 0, 16), unscoped.clone().copy_(unscoped)];
  assert.equal(reported() - base, 2 * storageBytes, 'views and in-place results are not counted again (the clone is)');
  views.pop()?.dispose();
  for (const view of views) view.dispose();
  assert.equal(reported() - base, storageBytes, 'disposing a view does not uncount the storage');

  let insideScope = Number.NaN;
  const survivor = tidy(() => {
    F.ones([storageBytes / 4]);
    const returned = F.ones([storageBytes / 4]);
    insideScope = reported() - base;
    return returned;
  });
  assert.equal(insideScope, storageBytes, 'tensors owned by a scope are not counted');
  assert.equal(reported() - base, 2 * storageBytes, 'the tensor returned out of the last scope is counted');
  const kept: Tensor[] = [];
  tidy(() => {
    kept.push(keep(F.ones([storageBytes / 4])));
  });
  assert.equal(reported() - base, 3 * storageBytes, 'a kept tensor is counted');
  for (const tensor of kept) tensor.dispose();
  survivor.dispose();
  unscoped.dispose();
  assert.equal(reported() - base, 0, 'dispose() uncounts the storage');
});

test('forgotten tensors (never disposed, no scope) are reclaimed by the GC', async () => {
  const tensorBytes = 32 * MiB;
  const rssBefore = process.memoryUsage().rss;
  let peakGrowth = 0;
  // 4 GiB in all; without their sizes counted by V8 nothing would collect the small wrappers.
  for (let i = 0; i < 128; i++) {
    F.ones([tensorBytes / 4]);
    if (i % 8 === 7) await new Promise((resolve) => setImmediate(resolve));
    peakGrowth = Math.max(peakGrowth, process.memoryUsage().rss - rssBefore);
  }
  assert.ok(peakGrowth < 2048 * MiB, `RSS grew by ${(peakGrowth / MiB).toFixed(0)} MiB`);
});
