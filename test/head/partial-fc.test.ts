// The sharded head in one process (one shard): exact against the dense reference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ops as F, tidy, manualSeed, PartialFC, CombinedMarginLoss, shardLayout, gradcheck, noGrad, type Tensor } from '../../src/index.js';
import { denseReference, maxRelativeError } from './reference.js';

const margins: [string, CombinedMarginLoss][] = [
  ['arcface', CombinedMarginLoss.arcface()],
  ['cosface', CombinedMarginLoss.cosface()],
  ['combined', new CombinedMarginLoss({ s: 30, m1: 1.2, m2: 0.3, m3: 0.1 })],
  ['softmax', CombinedMarginLoss.softmax()],
];

function runHead(head: PartialFC, x: Tensor, labels: number[]): { loss: number; xGrad: Float32Array } {
  const xLeaf = x.detach().requiresGrad_();
  const { loss } = head.forward(xLeaf, F.tensor(labels, { dtype: 'int64' }));
  loss.backward();
  return { loss: loss.item(), xGrad: xLeaf.grad?.dataSync() as Float32Array };
}

test('shard layout: sizes and offsets cover every class once', () => {
  for (const [C, W] of [[10, 3], [7, 7], [1000, 4], [5, 2]] as const) {
    let next = 0;
    for (let r = 0; r < W; r++) {
      const layout = shardLayout(C, W, r);
      assert.equal(layout.classOffset, next);
      assert.equal(layout.numLocalClasses, Math.floor(C / W) + (r < C % W ? 1 : 0));
      next += layout.numLocalClasses;
    }
    assert.equal(next, C);
  }
  assert.throws(() => shardLayout(2, 3, 0), /at least the number of workers/);
});

for (const [name, margin] of margins) {
  test(`one shard equals the dense reference (${name})`, () => {
    tidy(() => {
      manualSeed(11);
      const B = 12, D = 16, C = 37;
      const head = new PartialFC({ embeddingSize: D, numClasses: C, margin });
      if (head.bias) noGrad(() => head.bias?.copy_(F.mul(F.randn([C]), 0.1)));
      noGrad(() => head.weight.copy_(F.randn([C, D])));
      const x = F.randn([B, D]);
      const labels = [0, 36, 5, 5, 17, 2, 30, 11, 0, 8, 36, 21];
      const ours = runHead(head, x, labels);
      const ref = denseReference(x.dataSync() as Float32Array, head.weight.dataSync() as Float32Array, labels, { batch: B, dim: D, classes: C }, margin, head.bias ? (head.bias.dataSync() as Float32Array) : null);
      assert.ok(Math.abs(ours.loss - ref.loss) <= 1e-5 * Math.abs(ref.loss), `loss ${ours.loss} vs ${ref.loss}`);
      assert.ok(maxRelativeError(head.weight.grad?.dataSync() as Float32Array, ref.weightGrad) < 1e-5, 'weight grad');
      assert.ok(maxRelativeError(ours.xGrad, ref.embeddingGrad) < 1e-5, 'embedding grad');
      if (ref.biasGrad) assert.ok(maxRelativeError(head.bias?.grad?.dataSync() as Float32Array, ref.biasGrad) < 1e-5, 'bias grad');
    });
  });
}

test('chunked and unchunked paths agree (class chunks and weight-gradient row blocks)', () => {
  tidy(() => {
    manualSeed(3);
    const B = 10, D = 8, C = 50;
    const labels = [1, 49, 20, 20, 33, 7, 0, 48, 25, 12];
    const x = F.randn([B, D]);
    const results = [[50, 50], [7, 50], [16, 5], [50, 3]].map(([chunkSize, updateBlockRows]) => {
      manualSeed(5);
      const head = new PartialFC({ embeddingSize: D, numClasses: C, chunkSize, updateBlockRows, computeAccuracy: true });
      const { loss, accuracy } = head.forward(x.detach().requiresGrad_(), F.tensor(labels, { dtype: 'int64' }));
      loss.backward();
      return { loss: loss.item(), grad: head.weight.grad?.dataSync() as Float32Array, accuracy };
    });
    for (const r of results.slice(1)) {
      assert.ok(Math.abs(r.loss - (results[0]?.loss as number)) < 1e-5);
      assert.ok(maxRelativeError(r.grad, results[0]?.grad as Float32Array) < 1e-5);
      assert.equal(r.accuracy, results[0]?.accuracy);
    }
  });
});

test('finite differences through the head for each margin (float64 view of the float32 head)', () => {
  // The head computes in float32; check its gradient against central differences of its own loss.
  for (const [, margin] of margins) {
    tidy(() => {
      manualSeed(21);
      const B = 4, D = 5, C = 6;
      const head = new PartialFC({ embeddingSize: D, numClasses: C, margin, initStd: 1 });
      const labels = F.tensor([0, 5, 2, 2], { dtype: 'int64' });
      const x = F.randn([B, D]).requiresGrad_();
      const result = gradcheck((input) => head.forward(input, labels).loss, [x], { eps: 1e-2, atol: 2e-2, rtol: 5e-2 });
      assert.ok(result.ok, `${margin.describe()}: ${JSON.stringify(result.mismatches[0])}`);
    });
  }
});

test('partial FC at sampleRate 1 is the full head; sampling keeps positives and equals the restricted reference', () => {
  tidy(() => {
    manualSeed(9);
    const B = 8, D = 8, C = 40;
    const labels = [3, 3, 17, 39, 0, 22, 9, 17];
    const x = F.randn([B, D]);
    const full = new PartialFC({ embeddingSize: D, numClasses: C });
    const weight = F.randn([C, D]);
    noGrad(() => full.weight.copy_(weight));
    const fullRun = runHead(full, x, labels);
    const rateOne = new PartialFC({ embeddingSize: D, numClasses: C, sampleRate: 1 });
    noGrad(() => rateOne.weight.copy_(weight));
    assert.equal(runHead(rateOne, x, labels).loss, fullRun.loss);

    const sampled = new PartialFC({ embeddingSize: D, numClasses: C, sampleRate: 0.25, seed: 4 });
    noGrad(() => sampled.weight.copy_(weight));
    const xLeaf = x.detach().requiresGrad_();
    const out = sampled.forward(xLeaf, F.tensor(labels, { dtype: 'int64' }));
    out.loss.backward();
    assert.equal(out.numSampled, 10);
    const grad = sampled.weight.grad as Tensor;
    const rowTouched = F.ne(F.sum(F.abs(grad), 1), 0).toArray();
    const sampledRows = rowTouched.flatMap((t, i) => (t ? [i] : []));
    for (const label of labels) assert.ok(sampledRows.includes(label), `positive ${label} sampled`);
    assert.equal(sampledRows.length, 10);
    // Dense reference on the sampled classes only, labels remapped.
    const remapped = labels.map((l) => sampledRows.indexOf(l));
    const restricted = F.indexSelect(weight, 0, F.tensor(sampledRows, { dtype: 'int64' }));
    const ref = denseReference(x.dataSync() as Float32Array, restricted.dataSync() as Float32Array, remapped, { batch: B, dim: D, classes: 10 }, sampled.margin);
    assert.ok(Math.abs(out.loss.item() - ref.loss) < 1e-5 * Math.abs(ref.loss));
    const ourRows = F.indexSelect(grad, 0, F.tensor(sampledRows, { dtype: 'int64' })).dataSync();
    assert.ok(maxRelativeError(ourRows as Float32Array, ref.weightGrad) < 1e-5);
    assert.ok(maxRelativeError(xLeaf.grad?.dataSync() as Float32Array, ref.embeddingGrad) < 1e-5);
  });
});

test('sampling is deterministic given the seed and changes with the step', () => {
  tidy(() => {
    const draw = (seed: number, steps: number): number[][] => {
      manualSeed(1);
      const head = new PartialFC({ embeddingSize: 4, numClasses: 100, sampleRate: 0.1, seed });
      const sets: number[][] = [];
      for (let s = 0; s < steps; s++) {
        const x = F.randn([4, 4]).requiresGrad_();
        head.forward(x, F.tensor([1, 2, 3, 4], { dtype: 'int64' })).loss.backward();
        const grad = head.weight.grad as Tensor;
        sets.push(F.nonzero(F.ne(F.sum(F.abs(grad), 1), 0)).toArray());
        head.weight.grad = null;
      }
      return sets;
    };
    const a = draw(7, 3);
    assert.deepEqual(a, draw(7, 3));
    assert.notDeepEqual(a[0], a[1]);
    assert.notDeepEqual(a[0], draw(8, 1)[0]);
  });
});

test('fused sparse-momentum update equals SGD on sampled rows and leaves the others untouched', () => {
  // Kept logits, and recomputed ones (chunkSize) whose tiles are updated while later tiles still wait.
  for (const recompute of [{}, { chunkSize: 5 }]) {
    tidy(() => {
      manualSeed(2);
      const B = 6, D = 4, C = 30;
      const labels = [0, 7, 7, 15, 29, 3];
      const weight = F.randn([C, D]);
      const x = F.randn([B, D]);
      const lr = 0.1, momentum = 0.9, weightDecay = 0.01;
      const dense = new PartialFC({ embeddingSize: D, numClasses: C, sampleRate: 0.5, seed: 3 });
      const fused = new PartialFC({ embeddingSize: D, numClasses: C, sampleRate: 0.5, seed: 3, update: 'fused', updateBlockRows: 4, ...recompute, fusedSgd: { lr, momentum, weightDecay } });
      noGrad(() => {
        dense.weight.copy_(weight);
        fused.weight.copy_(weight);
      });
      const manualMomentum = F.zeros([C, D]);
      for (let step = 0; step < 3; step++) {
        const before = fused.weight.clone();
        const momentumBefore = fused.stateDict()['weight_momentum']?.clone() as Tensor;
        runHead(dense, x, labels);
        runHead(fused, x, labels);
        const grad = dense.weight.grad as Tensor;
        const touched = F.nonzero(F.ne(F.sum(F.abs(grad), 1), 0)).toArray();
        const idx = F.tensor(touched, { dtype: 'int64' });
        // Reference: SGD restricted to the touched rows.
        noGrad(() => {
          const g = F.add(F.indexSelect(grad, 0, idx), F.indexSelect(dense.weight, 0, idx), weightDecay);
          const m = F.add(F.mul(F.indexSelect(manualMomentum, 0, idx), momentum), g);
          F.indexCopy_(manualMomentum, 0, idx, m);
          F.indexCopy_(dense.weight, 0, idx, F.sub(F.indexSelect(dense.weight, 0, idx), F.mul(m, lr)));
          dense.weight.grad = null;
        });
        assert.ok(maxRelativeError(fused.weight.dataSync() as Float32Array, dense.weight.dataSync() as Float32Array) < 1e-5, `weights after step ${step} (${JSON.stringify(recompute)})`);
        const untouchedMask = F.eq(F.sum(F.abs(grad), 1), 0);
        const changed = F.ne(F.sum(F.abs(F.sub(fused.weight, before)), 1), 0);
        assert.equal(F.sum(F.logicalAnd(untouchedMask, changed).float()).item(), 0, 'unsampled rows unchanged');
        const momentumNow = fused.stateDict()['weight_momentum'] as Tensor;
        const momentumChanged = F.ne(F.sum(F.abs(F.sub(momentumNow, momentumBefore)), 1), 0);
        assert.equal(F.sum(F.logicalAnd(untouchedMask, momentumChanged).float()).item(), 0, 'unsampled momentum unchanged');
      }
    });
  }
});

test('the fused head steps with its RowSparseSGD: lr from its param groups, the bias (plain softmax) without decay, sampled rows only', () => {
  tidy(() => {
    manualSeed(4);
    const B = 6, D = 4, C = 30;
    const labels = [0, 7, 7, 15, 29, 3];
    const x = F.randn([B, D]);
    const weightDecay = 0.01, momentum = 0.9;
    const margin = CombinedMarginLoss.softmax();
    const common = { embeddingSize: D, numClasses: C, sampleRate: 0.5, seed: 3, margin };
    const dense = new PartialFC(common);
    const fused = new PartialFC({ ...common, update: 'fused', updateBlockRows: 4, fusedSgd: { lr: 1, momentum, weightDecay } });
    assert.ok(fused.optimizer !== null && dense.optimizer === null);
    const rowSgd = fused.optimizer;
    assert.deepEqual(rowSgd.paramGroups.map((g) => g.weightDecay), [weightDecay, 0]);
    noGrad(() => {
      dense.weight.copy_(fused.weight);
      (dense.bias as Tensor).copy_(F.randn([C]));
      (fused.bias as Tensor).copy_(dense.bias as Tensor);
    });
    const reference = { weight: { momentum: F.zeros([C, D]), decay: weightDecay }, bias: { momentum: F.zeros([C]), decay: 0 } };
    for (const [step, lr] of [0.5, 0.2, 0.05].entries()) {
      for (const group of rowSgd.paramGroups) group.lr = lr; // as the trainer's schedule does
      runHead(dense, x, labels);
      runHead(fused, x, labels);
      const touched = F.tensor(F.nonzero(F.ne(dense.bias?.grad as Tensor, 0)).toArray(), { dtype: 'int64' });
      assert.equal(touched.numel, 15, 'half the classes sampled');
      noGrad(() => {
        for (const [name, rule] of Object.entries(reference)) {
          const p = name === 'weight' ? dense.weight : (dense.bias as Tensor);
          const w = F.indexSelect(p, 0, touched);
          const m = F.add(F.mul(F.indexSelect(rule.momentum, 0, touched), momentum), F.add(F.indexSelect(p.grad as Tensor, 0, touched), w, rule.decay));
          F.indexCopy_(rule.momentum, 0, touched, m);
          F.indexCopy_(p, 0, touched, F.sub(w, F.mul(m, lr)));
          p.grad = null;
        }
      });
      assert.ok(maxRelativeError(fused.weight.dataSync() as Float32Array, dense.weight.dataSync() as Float32Array) < 1e-5, `weight after step ${step}`);
      assert.ok(maxRelativeError((fused.bias as Tensor).dataSync() as Float32Array, (dense.bias as Tensor).dataSync() as Float32Array) < 1e-5, `bias after step ${step}`);
      assert.ok(maxRelativeError(rowSgd.momentumBuffer(fused.bias as Tensor).dataSync() as Float32Array, reference.bias.momentum.dataSync() as Float32Array) < 1e-5, `bias momentum after step ${step}`);
    }
    const saved = fused.stateDict();
    assert.deepEqual(saved['weight_momentum']?.toArray(), rowSgd.momentumBuffer(fused.weight).toArray(), 'the checkpointed momentum is the optimizer\'s');
    assert.deepEqual(saved['bias_momentum']?.toArray(), rowSgd.momentumBuffer(fused.bias as Tensor).toArray(), 'the checkpointed momentum is the optimizer\'s');
    assert.throws(() => new PartialFC({ embeddingSize: D, numClasses: C, update: 'fused' }), /update 'fused' needs fusedSgd/);
    const defaults = new PartialFC({ embeddingSize: D, numClasses: C, update: 'fused', fusedSgd: { lr: 0.3, momentum: undefined } }).optimizer;
    assert.deepEqual(defaults?.paramGroups.map((g) => [g.lr, g.momentum, g.weightDecay]), [[0.3, 0.9, 5e-4]], 'PLSC defaults for what fusedSgd leaves out');
  });
});

test('labels are validated with the offending index named', () => {
  tidy(() => {
    const head = new PartialFC({ embeddingSize: 4, numClasses: 10 });
    const x = F.randn([3, 4]).requiresGrad_();
    assert.throws(() => head.forward(x, F.tensor([1, 10, 2], { dtype: 'int64' })), /label out of range: labels\[1\] = 10 \(numClasses is 10\)/);
    assert.throws(() => head.forward(x, F.tensor([1, -1, 2], { dtype: 'int64' })), /negative label: labels\[1\] = -1/);
    assert.throws(() => head.forward(x, F.tensor([1, 2.5, 2])), /non-integer label: labels\[1\] = 2.5/);
    assert.throws(() => head.forward(x, F.tensor([1, 2, 2])), /int64 or int32.*float32/);
    assert.throws(() => head.forward(x, F.tensor([1, 2], { dtype: 'int64' })), /one label per embedding \(got 2 labels\)/);
    assert.throws(() => head.forward(F.randn([3, 5]), F.tensor([1, 2, 3], { dtype: 'int64' })), /wrong shape.*\[batch, 4\]/);
  });
});

test('loss-type shorthands', async () => {
  const { marginForLossType } = await import('../../src/index.js');
  assert.equal(marginForLossType('dist_arcface').sharded, true);
  assert.equal(marginForLossType('arcface').margin.m2, 0.5);
  assert.equal(marginForLossType('cosface').margin.m3, 0.4);
  assert.equal(marginForLossType('softmax').margin.normalized, false);
  assert.throws(() => marginForLossType('nope'), /unknown loss type 'nope'/);
  // theta + m2 > pi: linear fallback keeps the target decreasing in theta
  const arc = CombinedMarginLoss.arcface();
  assert.ok(arc.targetOf(-0.99) < arc.targetOf(-0.9));
  assert.ok(Math.abs(arc.targetOf(Math.cos(Math.PI - 0.5) + 1e-9) - arc.targetOf(Math.cos(Math.PI - 0.5) - 1e-9)) < 1e-6);
});
