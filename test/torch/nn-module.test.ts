// nn: Module registration, naming, state dicts, train/eval, BatchNorm statistics, layer shapes, init.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ops as F, manualSeed, tidy, noGrad, nn, Module, saveSafetensors, loadSafetensors, type Tensor } from '../../src/index.js';

class Block extends Module {
  readonly conv1 = this.registerModule('conv1', new nn.Conv2d(4, 4, 3, { padding: 1, bias: false }));
  readonly bn1 = this.registerModule('bn1', new nn.BatchNorm2d(4));
  readonly prelu = this.registerModule('prelu', new nn.PReLU(4));
  readonly conv2 = this.registerModule('conv2', new nn.Conv2d(4, 4, 3, { padding: 1, bias: false }));
  readonly bn2 = this.registerModule('bn2', new nn.BatchNorm2d(4));
  forward(x: Tensor): Tensor {
    return tidy(() => F.add(this.bn2.call(this.conv2.call(this.prelu.call(this.bn1.call(this.conv1.call(x))))), x));
  }
}

class TinyNet extends Module {
  readonly stem = this.registerModule('stem', new nn.Conv2d(3, 4, 3, { padding: 1 }));
  readonly layer1 = this.registerModule('layer1', new nn.Sequential(new Block(), new Block()));
  readonly head = this.registerModule(
    'head',
    new nn.Sequential(new nn.AdaptiveAvgPool2d(2), new nn.Flatten(), new nn.Dropout(0.2), new nn.Linear(16, 5), new nn.BatchNorm1d(5)),
  );
  forward(x: Tensor): Tensor {
    return tidy(() => this.head.call(this.layer1.call(this.stem.call(x))));
  }
}

function values(t: Tensor): number[] {
  return t.toArray();
}

function assertClose(actual: readonly number[], expected: readonly number[], tolerance: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  actual.forEach((a, i) => {
    const e = expected[i] as number;
    assert.ok(Math.abs(a - e) <= tolerance * Math.max(1, Math.abs(e)), `${what}[${i}]: ${a} vs ${e}`);
  });
}

test('layer parameter shapes and counts', () => {
  const conv = new nn.Conv2d(3, 8, [3, 5], { stride: 2, padding: [1, 2] });
  assert.deepEqual(conv.weight.shape, [8, 3, 3, 5]);
  assert.deepEqual(conv.bias?.shape, [8]);
  assert.equal(conv.numParameters(), 8 * 3 * 15 + 8);
  const grouped = new nn.Conv2d(8, 4, 1, { groups: 2, bias: false });
  assert.deepEqual(grouped.weight.shape, [4, 4, 1, 1]);
  assert.equal(grouped.bias, null);
  assert.throws(() => new nn.Conv2d(6, 4, 3, { groups: 4 }), /groups \(4\) must divide/);
  const linear = new nn.Linear(128, 10);
  assert.equal(linear.numParameters(), 1290);
  const bn = new nn.BatchNorm2d(8);
  assert.equal(bn.numParameters(), 16);
  assert.deepEqual(bn.namedBuffers().map(([n, t]) => [n, t.dtype]), [
    ['running_mean', 'float32'],
    ['running_var', 'float32'],
    ['num_batches_tracked', 'int64'],
  ]);
  assert.equal(new nn.BatchNorm1d(8, { affine: false }).numParameters(), 0);
  assert.equal(new nn.BatchNorm1d(8, { trackRunningStats: false }).buffers().length, 0);
  assert.equal(new nn.PReLU(8).numParameters(), 8);
  assert.equal(new nn.PReLU().numParameters(), 1);
  for (const m of [conv, grouped, linear, bn]) m.dispose();
  assert.ok(conv.weight.isDisposed);
});

test('forward output shapes through conv, pooling, flatten and linear', () => {
  tidy(() => {
    const x = F.randn([2, 3, 17, 15]);
    assert.deepEqual(new nn.Conv2d(3, 6, 3, { stride: 2, padding: 1 }).call(x).shape, [2, 6, 9, 8]);
    assert.deepEqual(new nn.Conv2d(3, 6, 3, { dilation: 2 }).call(x).shape, [2, 6, 13, 11]);
    assert.deepEqual(new nn.MaxPool2d(2).call(x).shape, [2, 3, 8, 7]);
    assert.deepEqual(new nn.MaxPool2d(3, { stride: 2, padding: 1 }).call(x).shape, [2, 3, 9, 8]);
    assert.deepEqual(new nn.MaxPool2d(2, { ceilMode: true }).call(x).shape, [2, 3, 9, 8]);
    assert.deepEqual(new nn.AvgPool2d(2).call(x).shape, [2, 3, 8, 7]);
    assert.deepEqual(new nn.AdaptiveAvgPool2d(1).call(x).shape, [2, 3, 1, 1]);
    assert.deepEqual(new nn.AdaptiveAvgPool2d([4, 2]).call(x).shape, [2, 3, 4, 2]);
    assert.deepEqual(new nn.Flatten().call(x).shape, [2, 3 * 17 * 15]);
    assert.deepEqual(new nn.Flatten(2).call(x).shape, [2, 3, 17 * 15]);
    assert.deepEqual(new nn.Linear(15, 4).call(x).shape, [2, 3, 17, 4]);
    const identity = new nn.Identity().call(x);
    assert.notEqual(identity, x);
    assert.deepEqual(values(identity), values(x));
    const net = new TinyNet();
    assert.deepEqual(net.call(F.randn([3, 3, 8, 8])).shape, [3, 5]);
    net.dispose();
  });
});

test('layers compute what their functional forms compute', () => {
  tidy(() => {
    const x = F.randn([2, 3, 6, 6]);
    const conv = new nn.Conv2d(3, 4, 3, { stride: 2, padding: 1 });
    assert.ok(F.allclose(conv.call(x), F.conv2d(x, conv.weight, conv.bias, { stride: 2, padding: 1 })));
    const prelu = new nn.PReLU(3, 0.1);
    assertClose(values(prelu.weight), [0.1, 0.1, 0.1], 1e-7, 'prelu init');
    const y = prelu.call(x);
    const xs = values(x);
    assertClose(values(y), xs.map((v) => (v >= 0 ? v : 0.1 * v)), 1e-6, 'prelu');
    assertClose(values(new nn.ReLU().call(x)), xs.map((v) => Math.max(0, v)), 0, 'relu');
    const linear = new nn.Linear(6, 2);
    assert.ok(F.allclose(linear.call(x), F.linear(x, linear.weight, linear.bias)));
  });
});

test('named parameters, buffers and modules use dotted PyTorch names', () => {
  const net = new TinyNet();
  const names = net.namedParameters().map(([n]) => n);
  assert.deepEqual(names.slice(0, 8), [
    'stem.weight',
    'stem.bias',
    'layer1.0.conv1.weight',
    'layer1.0.bn1.weight',
    'layer1.0.bn1.bias',
    'layer1.0.prelu.weight',
    'layer1.0.conv2.weight',
    'layer1.0.bn2.weight',
  ]);
  assert.ok(names.includes('layer1.1.bn2.bias'));
  assert.ok(names.includes('head.3.weight'));
  assert.ok(names.includes('head.4.bias'));
  assert.equal(names.length, 2 + 2 * 7 + 2 + 2);
  assert.deepEqual(
    net.namedBuffers().map(([n]) => n).filter((n) => n.startsWith('layer1.0.bn1')),
    ['layer1.0.bn1.running_mean', 'layer1.0.bn1.running_var', 'layer1.0.bn1.num_batches_tracked'],
  );
  const modules = net.namedModules().map(([n]) => n);
  assert.deepEqual(modules.slice(0, 5), ['', 'stem', 'layer1', 'layer1.0', 'layer1.0.conv1']);
  assert.deepEqual(net.namedChildren().map(([n]) => n), ['stem', 'layer1', 'head']);
  assert.equal(net.layer1.at(1), net.layer1.child('1'));
  assert.equal(net.layer1.at(-1), net.layer1.at(1));
  assert.equal(net.layer1.length, 2);
  assert.throws(() => net.layer1.at(2), /index 2 out of range/);
  const expectedCount = 3 * 4 * 9 + 4 + 2 * (2 * 4 * 4 * 9 + 4 * 4 + 4) + 16 * 5 + 5 + 10;
  assert.equal(net.numParameters(), expectedCount);
  net.layer1.requiresGrad_(false);
  assert.equal(net.numParameters({ trainableOnly: true }), expectedCount - 2 * (2 * 4 * 4 * 9 + 4 * 4 + 4));
  const keys = Object.keys(tidy(() => {
    const sd = net.stateDict();
    return Object.fromEntries(Object.entries(sd).map(([k, v]) => [k, v.dtype]));
  }));
  // PyTorch order: each module's parameters, then its buffers, then its children.
  assert.deepEqual(keys.slice(0, 9), [
    'stem.weight',
    'stem.bias',
    'layer1.0.conv1.weight',
    'layer1.0.bn1.weight',
    'layer1.0.bn1.bias',
    'layer1.0.bn1.running_mean',
    'layer1.0.bn1.running_var',
    'layer1.0.bn1.num_batches_tracked',
    'layer1.0.prelu.weight',
  ]);
  assert.equal(keys.length, names.length + 3 * 5);
  net.dispose();
});

test('registration rejects duplicate and dotted names; shared parameters count once', () => {
  class Shared extends Module {
    readonly a = this.registerModule('a', new nn.Linear(3, 3));
    forward(x: Tensor): Tensor {
      return this.a.call(x);
    }
  }
  const m = new Shared();
  assert.throws(() => m.registerModule('a', new nn.ReLU()), /'a' is already registered/);
  assert.throws(() => m.registerParameter('x.y', F.zeros([1])), /must not contain '\.'/);
  m.registerModule('b', m.a);
  assert.equal(m.parameters().length, 2);
  assert.equal(m.numParameters(), 12);
  assert.throws(() => m.registerParameter('nonleaf', F.mul(F.ones([2], { requiresGrad: true }), 2)), /must be a leaf/);
  m.dispose();
});

test('parameters survive tidy scopes; stateDict handles are independent aliases', () => {
  const model = tidy(() => new nn.Linear(4, 3));
  assert.ok(!model.weight.isDisposed);
  assert.ok(model.weight.requiresGrad && model.weight.isLeaf);
  const sd = model.stateDict();
  noGrad(() => model.weight.fill_(0.5));
  assert.deepEqual(values(sd.weight as Tensor), new Array(12).fill(0.5), 'state dict shares memory');
  assert.equal((sd.weight as Tensor).requiresGrad, false);
  for (const t of Object.values(sd)) t.dispose();
  assert.ok(!model.weight.isDisposed, 'disposing the state dict leaves the module intact');
  model.dispose();
  assert.ok(model.weight.isDisposed && model.bias?.isDisposed);
});

test('stateDict round-trip through safetensors gives identical outputs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-nn-'));
  try {
    manualSeed(1);
    const source = new TinyNet();
    tidy(() => {
      for (let i = 0; i < 3; i++) source.call(F.randn([4, 3, 8, 8]));
    });
    const path = join(dir, 'model.safetensors');
    tidy(() => saveSafetensors(path, source.stateDict(), { format: 'pt' }));
    manualSeed(2);
    const target = new TinyNet();
    const x = F.randn([2, 3, 8, 8]);
    source.eval();
    target.eval();
    tidy(() => assert.ok(!F.allclose(source.call(x), target.call(x)), 'different seeds differ before loading'));
    const loaded = loadSafetensors(path);
    const result = target.loadStateDict(loaded);
    assert.deepEqual(result, { missingKeys: [], unexpectedKeys: [] });
    for (const t of Object.values(loaded)) t.dispose();
    tidy(() => {
      assert.deepEqual(values(target.call(x)), values(source.call(x)));
      const tracked = (target.layer1.at(0) as Block).bn1.numBatchesTracked as Tensor;
      assert.equal(tracked.item(), 3);
      assert.equal(tracked.dtype, 'int64');
    });
    x.dispose();
    source.dispose();
    target.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('loadStateDict names missing, unexpected, mis-shaped and mis-typed keys and changes nothing', () => {
  const model = new TinyNet();
  tidy(() => {
    const before = values(model.stem.weight);
    const sd = model.stateDict();
    const bad: Record<string, Tensor> = { ...sd };
    delete bad['head.3.bias'];
    delete bad['stem.bias'];
    bad['head.9.weight'] = F.zeros([2]);
    bad['stem.weight'] = F.ones([4, 3, 5, 5]);
    bad['layer1.0.bn1.num_batches_tracked'] = F.zeros([]);
    bad['layer1.1.conv1.weight'] = F.zeros([4, 4, 3, 3]);
    assert.throws(
      () => model.loadStateDict(bad),
      (err: Error) => {
        assert.match(err.message, /loadStateDict\(TinyNet\)/);
        assert.match(err.message, /2 missing keys: stem\.bias, head\.3\.bias/);
        assert.match(err.message, /1 unexpected key: head\.9\.weight/);
        assert.match(err.message, /size mismatch for stem\.weight: checkpoint has \[4, 3, 5, 5\], model has \[4, 3, 3, 3\]/);
        assert.match(err.message, /dtype mismatch for layer1\.0\.bn1\.num_batches_tracked: checkpoint has float32, model has int64/);
        return true;
      },
    );
    assert.deepEqual(values(model.stem.weight), before);
    assert.notDeepEqual(values((model.layer1.at(1) as Block).conv1.weight), new Array(144).fill(0));
    // Non-strict: missing and unexpected keys are reported, the rest is loaded.
    const partial: Record<string, Tensor> = { 'stem.weight': F.zeros([4, 3, 3, 3]), extra: F.zeros([1]) };
    const result = model.loadStateDict(partial, { strict: false });
    assert.deepEqual(result.unexpectedKeys, ['extra']);
    assert.ok(result.missingKeys.includes('stem.bias') && !result.missingKeys.includes('stem.weight'));
    assert.deepEqual(values(model.stem.weight), new Array(108).fill(0));
    assert.throws(() => model.loadStateDict({ 'stem.weight': F.zeros([1]) }, { strict: false }), /size mismatch for stem\.weight/);
  });
  model.dispose();
});

test('train/eval switch dropout and batch norm behaviour', () => {
  tidy(() => {
    manualSeed(3);
    const dropout = new nn.Dropout(0.5);
    const x = F.ones([1000]);
    const trained = values(dropout.call(x));
    const zeros = trained.filter((v) => v === 0).length;
    assert.ok(zeros > 350 && zeros < 650, `about half dropped, got ${zeros}`);
    assert.ok(trained.every((v) => v === 0 || v === 2), 'survivors scaled by 1/(1-p)');
    const model = new nn.Sequential(new nn.Linear(4, 4), dropout);
    model.eval();
    assert.equal(dropout.training, false);
    assert.deepEqual(values(dropout.call(x)), values(x));
    model.train();
    assert.equal(dropout.training, true);

    const bn = new nn.BatchNorm2d(2);
    const input = F.add(F.mul(F.randn([8, 2, 3, 3]), 3), 5);
    const out = bn.call(input);
    const meanPerChannel = values(F.mean(out, [0, 2, 3]));
    assertClose(meanPerChannel, [0, 0], 1e-5, 'training normalizes with batch statistics');
    assert.equal((bn.numBatchesTracked as Tensor).item(), 1);
    bn.eval();
    const runningMean = values(bn.runningMean as Tensor);
    const runningVar = values(bn.runningVar as Tensor);
    const evalOut = bn.call(input);
    assert.equal((bn.numBatchesTracked as Tensor).item(), 1, 'eval does not count batches');
    assert.deepEqual(values(bn.runningMean as Tensor), runningMean, 'eval leaves running stats alone');
    const xs = values(input);
    const expected = xs.map((v, i) => {
      const c = Math.floor(i / 9) % 2;
      return (v - (runningMean[c] as number)) / Math.sqrt((runningVar[c] as number) + 1e-5);
    });
    assertClose(values(evalOut), expected, 1e-5, 'eval normalizes with running statistics');
    bn.dispose();
    model.dispose();
  });
});

function channelStats(data: readonly number[], n: number, c: number, spatial: number): { mean: number[]; unbiasedVar: number[]; biasedVar: number[] } {
  const mean: number[] = [];
  const unbiasedVar: number[] = [];
  const biasedVar: number[] = [];
  for (let ch = 0; ch < c; ch++) {
    const items: number[] = [];
    for (let b = 0; b < n; b++) for (let s = 0; s < spatial; s++) items.push(data[(b * c + ch) * spatial + s] as number);
    const m = items.reduce((a, v) => a + v, 0) / items.length;
    const ss = items.reduce((a, v) => a + (v - m) ** 2, 0);
    mean.push(m);
    unbiasedVar.push(ss / (items.length - 1));
    biasedVar.push(ss / items.length);
  }
  return { mean, unbiasedVar, biasedVar };
}

test('BatchNorm running statistics equal the hand computation', () => {
  tidy(() => {
    manualSeed(4);
    const bn = new nn.BatchNorm2d(3, { momentum: 0.1, eps: 1e-3 });
    noGrad(() => {
      bn.weight?.copy_(F.tensor([1.5, -0.5, 2]));
      bn.bias?.copy_(F.tensor([0.1, 0.2, -0.3]));
    });
    const a = F.randn([4, 3, 2, 5]);
    const b = F.add(F.randn([4, 3, 2, 5]), 1);
    const out = bn.call(a);
    bn.call(b);
    const sa = channelStats(values(a), 4, 3, 10);
    const sb = channelStats(values(b), 4, 3, 10);
    const mean1 = sa.mean.map((m) => 0.9 * 0 + 0.1 * m);
    const var1 = sa.unbiasedVar.map((v) => 0.9 * 1 + 0.1 * v);
    const mean2 = mean1.map((m, i) => 0.9 * m + 0.1 * (sb.mean[i] as number));
    const var2 = var1.map((v, i) => 0.9 * v + 0.1 * (sb.unbiasedVar[i] as number));
    assertClose(values(bn.runningMean as Tensor), mean2, 1e-5, 'running_mean');
    assertClose(values(bn.runningVar as Tensor), var2, 1e-5, 'running_var');
    assert.equal((bn.numBatchesTracked as Tensor).item(), 2);
    // The training output uses the biased batch variance, eps, weight and bias.
    const gamma = [1.5, -0.5, 2];
    const beta = [0.1, 0.2, -0.3];
    const expected = values(a).map((v, i) => {
      const c = Math.floor(i / 10) % 3;
      return (gamma[c] as number) * ((v - (sa.mean[c] as number)) / Math.sqrt((sa.biasedVar[c] as number) + 1e-3)) + (beta[c] as number);
    });
    assertClose(values(out), expected, 1e-5, 'training output');

    // momentum null: cumulative moving average over the batches seen.
    const cumulative = new nn.BatchNorm1d(3, { momentum: null });
    const x1 = F.randn([6, 3]);
    const x2 = F.randn([6, 3]);
    cumulative.call(x1);
    cumulative.call(x2);
    const s1 = channelStats(values(x1), 6, 3, 1);
    const s2 = channelStats(values(x2), 6, 3, 1);
    assertClose(values(cumulative.runningMean as Tensor), s1.mean.map((m, i) => (m + (s2.mean[i] as number)) / 2), 1e-5, 'cumulative mean');
    assertClose(values(cumulative.runningVar as Tensor), s1.unbiasedVar.map((v, i) => (v + (s2.unbiasedVar[i] as number)) / 2), 1e-5, 'cumulative var');

    // BatchNorm1d over (N, C, L), and input checks.
    const seq = new nn.BatchNorm1d(3);
    seq.call(F.randn([2, 3, 4]));
    assert.equal((seq.numBatchesTracked as Tensor).item(), 1);
    assert.throws(() => seq.call(F.randn([2, 3, 4, 4])), /BatchNorm1d: expected 2D or 3D input/);
    assert.throws(() => bn.call(F.randn([2, 4, 3, 3])), /expected 3 channels/);
    seq.resetRunningStats();
    assert.equal((seq.numBatchesTracked as Tensor).item(), 0);
    for (const m of [bn, cumulative, seq]) m.dispose();
  });
});

test('zeroGrad clears gradients; backward flows through Sequential', () => {
  const model = new nn.Sequential(new nn.Linear(3, 4), new nn.ReLU(), new nn.Linear(4, 2));
  tidy(() => F.sum(model.call(F.randn([5, 3]))).backward());
  for (const p of model.parameters()) {
    const g = p.grad;
    assert.ok(g !== null, 'every parameter got a gradient');
    assert.deepEqual(g.shape, p.shape);
    g.dispose();
  }
  model.zeroGrad(false);
  const zeroed = (model.at(0) as nn.Linear).weight.grad as Tensor;
  assert.deepEqual(values(zeroed), new Array(12).fill(0));
  zeroed.dispose();
  model.zeroGrad();
  assert.ok(model.parameters().every((p) => p.grad === null));
  model.dispose();
});

test('apply visits every module; children precede their parent', () => {
  const model = new nn.Sequential(new nn.Linear(2, 2), new nn.Sequential(new nn.ReLU()));
  const seen: string[] = [];
  model.apply((m) => seen.push(m.typeName));
  assert.deepEqual(seen, ['Linear', 'ReLU', 'Sequential', 'Sequential']);
  model.dispose();
});

test('initializers: gains, fans, bounds and spreads', () => {
  tidy(() => {
    manualSeed(5);
    assert.equal(nn.init.calculateGain('linear'), 1);
    assert.equal(nn.init.calculateGain('relu'), Math.SQRT2);
    assertClose([nn.init.calculateGain('leaky_relu')], [Math.sqrt(2 / (1 + 0.0001))], 1e-12, 'leaky default');
    assertClose([nn.init.calculateGain('leaky_relu', Math.sqrt(5))], [Math.sqrt(1 / 3)], 1e-12, 'leaky sqrt5');
    assertClose([nn.init.calculateGain('tanh')], [5 / 3], 1e-12, 'tanh');
    const w = F.empty([64, 32, 3, 3]);
    assert.deepEqual(nn.init.calculateFanInAndFanOut(w), [288, 576]);
    assert.throws(() => nn.init.calculateFanInAndFanOut(F.empty([5])), /fewer than 2 dimensions/);

    const std = (t: Tensor): number => Math.sqrt(F.variance(t).item());
    nn.init.kaimingNormal_(w, { mode: 'fan_out', nonlinearity: 'relu' });
    assertClose([std(w)], [Math.SQRT2 / Math.sqrt(576)], 0.03, 'kaiming normal fan_out std');
    nn.init.kaimingNormal_(w, { nonlinearity: 'relu' });
    assertClose([std(w)], [Math.SQRT2 / Math.sqrt(288)], 0.03, 'kaiming normal fan_in std');
    nn.init.kaimingUniform_(w, { nonlinearity: 'relu' });
    const bound = Math.sqrt(3) * (Math.SQRT2 / Math.sqrt(288));
    assert.ok(F.abs(w).max().item() <= bound + 1e-7);
    assert.ok(F.abs(w).max().item() > 0.95 * bound);
    nn.init.xavierUniform_(w, 2);
    const xavierBound = 2 * Math.sqrt(6 / (288 + 576));
    assert.ok(F.abs(w).max().item() <= xavierBound + 1e-7 && F.abs(w).max().item() > 0.95 * xavierBound);
    nn.init.xavierNormal_(w);
    assertClose([std(w)], [Math.sqrt(2 / (288 + 576))], 0.03, 'xavier normal std');
    nn.init.normal_(w, 3, 0.5);
    assertClose([F.mean(w).item(), std(w)], [3, 0.5], 0.03, 'normal');
    nn.init.constant_(w, 0.25);
    assert.equal(F.min(w).item(), 0.25);
    nn.init.zeros_(w);
    assert.equal(F.abs(w).max().item(), 0);
    nn.init.ones_(w);
    assert.equal(F.min(w).item(), 1);

    // PyTorch's default Conv2d/Linear init: weight and bias within 1/sqrt(fanIn).
    const conv = new nn.Conv2d(16, 32, 3);
    const convBound = 1 / Math.sqrt(16 * 9);
    assert.ok(F.abs(conv.weight).max().item() <= convBound + 1e-7);
    assert.ok(F.abs(conv.weight).max().item() > 0.95 * convBound);
    assert.ok(F.abs(conv.bias as Tensor).max().item() <= convBound + 1e-7);
    assertClose([std(conv.weight)], [convBound / Math.sqrt(3)], 0.05, 'conv default std');
    const linear = new nn.Linear(400, 300);
    assert.ok(F.abs(linear.weight).max().item() <= 1 / 20 + 1e-7);
    assert.ok(F.abs(linear.bias as Tensor).max().item() <= 1 / 20 + 1e-7);
    // Initializing a parameter (a leaf that requires grad) works and records no graph.
    assert.equal(nn.init.normal_(linear.weight).gradFn, null);
    conv.dispose();
    linear.dispose();
  });
});
