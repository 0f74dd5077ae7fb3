// `plsc bench engine`'s op-overhead measurement and its --profile breakdown of a small-CNN step.
// Nothing here asserts speed: only that the measurements are taken and add up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { alternateRounds, ENGINE_MEASURES, measureOpOverheadUs, profileSmallCnnStep } from '../../bench/engine.js';
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

test('the small CNN with channels-last weights (as the engine benchmark runs it) gives the NCHW loss and gradients', () => {
  const build = (): SmallCnn => {
    manualSeed(11);
    return new SmallCnn();
  };
  const nchw = build();
  const channelsLast = build().toMemoryFormat('channels_last');
  manualSeed(12);
  const images = F.randn([4, 3, 32, 32]);
  const labels = F.randint(0, 10, [4]);
  try {
    const conv = channelsLast.parameters().find((p) => p.ndim === 4)!;
    assert.equal(conv.isContiguous(), false, 'the conv weight was relaid channels-last');
    const lossOf = (model: SmallCnn): number =>
      tidy(() => {
        const loss = F.crossEntropy(model.call(images), labels);
        loss.backward();
        return loss.item();
      });
    assert.ok(Math.abs(lossOf(nchw) - lossOf(channelsLast)) < 1e-5);
    const [a, b] = [nchw.parameters(), channelsLast.parameters()];
    assert.equal(a.length, b.length);
    for (let i = 0; i < a.length; i++) {
      const diff = tidy(() => F.sub(a[i]!.grad!, b[i]!.grad!).abs().max().item());
      const scale = tidy(() => a[i]!.grad!.abs().max().item());
      assert.ok(diff <= 1e-4 * Math.max(1, scale), `parameter ${i}: gradients differ by ${diff}`);
    }
  } finally {
    nchw.dispose();
    channelsLast.dispose();
    images.dispose();
    labels.dispose();
  }
});

test('alternateRounds: every measurement sampled once a round on each side, the side going first alternating, ratios per round', async () => {
  const order: string[] = [];
  let oursValue = 0;
  const rounds = await alternateRounds(
    3,
    (measure) => {
      order.push(`ours:${measure}`);
      return ++oursValue;
    },
    async (measure) => {
      order.push(`peer:${measure}`);
      return 2;
    },
  );
  assert.deepEqual(Object.keys(rounds), [...ENGINE_MEASURES]);
  const perRound = ENGINE_MEASURES.length;
  assert.equal(order.length, 3 * 2 * perRound);
  assert.equal(order[0], `ours:${ENGINE_MEASURES[0]}`);
  assert.equal(order[2 * perRound], `peer:${ENGINE_MEASURES[0]}`, 'the second round starts with the peer');
  const step = rounds.step;
  assert.equal(step.ours.length, 3);
  assert.deepEqual(step.torch, [2, 2, 2]);
  assert.deepEqual(
    step.ratios,
    step.ours.map((v) => v / 2),
  );
  const alone = await alternateRounds(2, () => 1, null);
  assert.equal(alone.conv.torch, null);
  assert.equal(alone.conv.ratios, null);
  assert.deepEqual(alone.conv.ours, [1, 1]);
});
