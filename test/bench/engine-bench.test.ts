// `plsc bench engine`'s op-overhead measurement and its --profile breakdown of a small-CNN step.
// Nothing here asserts speed: only that the measurements are taken and add up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { measureOpOverheadUs, profileSmallCnnStep } from '../../bench/engine.js';
import { SmallCnn } from '../../bench/small-cnn.js';
import { ops as F, optim, manualSeed, scopeDepth, tidy } from '../../src/index.js';

test('measureOpOverheadUs: a positive per-call time, no scope left open', () => {
  const us = measureOpOverheadUs(1);
  assert.ok(Number.isFinite(us) && us > 0, `op overhead ${us} us`);
  assert.equal(scopeDepth(), 0);
});

test('profileSmallCnnStep: the four phases, forward operators counted, in-op time within the wall time', () => {
  manualSeed(3);
  const model = new SmallCnn();
  const optimizer = new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9 });
  const images = F.randn([4, 3, 32, 32]);
  const labels = F.randint(0, 10, [4]);
  try {
    const before = model.parameters().map((p) => p.clone());
    const profile = profileSmallCnnStep(model, optimizer, images, labels);
    assert.deepEqual(
      profile.phases.map((p) => p.phase),
      ['zero_grad', 'forward + loss', 'backward', 'optimizer step'],
    );
    const forward = profile.phases[1]!;
    // 3 convolutions, 3 batch norms, 3 ReLUs, 2 max pools, the pooling, flatten, linear and the loss at least.
    assert.ok(forward.op_calls >= 14, `forward ran ${forward.op_calls} operators`);
    for (const p of profile.phases) {
      assert.ok(p.in_ops_ms >= 0 && p.in_ops_ms <= p.wall_ms + 1e-9, JSON.stringify(p));
      assert.ok(Math.abs(p.wall_ms - p.in_ops_ms - p.outside_ms) < 1e-9);
    }
    assert.ok(profile.top_ops.some((o) => o.op.startsWith('aten::conv')), JSON.stringify(profile.top_ops));
    // It ran a real step: the optimizer moved the weights.
    const moved = tidy(() => model.parameters().some((p, i) => F.sub(p, before[i]!).abs().max().item() > 0));
    assert.ok(moved, 'the profiled step updated the parameters');
    for (const t of before) t.dispose();
    assert.equal(scopeDepth(), 0);
  } finally {
    optimizer.dispose();
    model.dispose();
    images.dispose();
    labels.dispose();
  }
});
