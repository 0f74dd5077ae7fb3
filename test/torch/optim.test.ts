// optim: SGD and AdamW against hand-computed updates, state dict round-trips, clipGradNorm.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ops as F, tidy, noGrad, optim, nn, manualSeed, saveSafetensors, loadSafetensors, readSafetensorsHeader, type Tensor } from '../../src/index.js';

function param(data: number[]): Tensor {
  return F.tensor(data).requiresGrad_(true);
}

function setGrad(p: Tensor, data: number[]): void {
  const g = F.tensor(data, { shape: p.shape });
  p.grad = g;
  g.dispose();
}

function assertClose(actual: readonly number[], expected: readonly number[], tolerance: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  actual.forEach((a, i) => {
    const e = expected[i] as number;
    assert.ok(Math.abs(a - e) <= tolerance * Math.max(1, Math.abs(e)), `${what}[${i}]: got ${a}, expected ${e}`);
  });
}

const GRADS = [
  [0.5, -1.0, 2.0],
  [0.25, 0.75, -0.5],
  [-1.5, 0.1, 0.3],
  [0.0, -0.2, 1.0],
];

interface SgdSettings {
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
  maximize?: boolean;
}

/** The SGD rule written out per element in double precision. */
function referenceSgd(start: number[], grads: number[][], s: SgdSettings): number[][] {
  const p = [...start];
  let buf: number[] | null = null;
  const history: number[][] = [];
  for (const grad of grads) {
    let d = grad.map((g, i) => (s.maximize ? -g : g) + (s.weightDecay ?? 0) * (p[i] as number));
    const momentum = s.momentum ?? 0;
    if (momentum !== 0) {
      const prev: number[] | null = buf;
      const next: number[] = prev === null ? [...d] : prev.map((b, i) => momentum * b + (1 - (s.dampening ?? 0)) * (d[i] as number));
      buf = next;
      d = s.nesterov ? d.map((v, i) => v + momentum * (next[i] as number)) : next;
    }
    d.forEach((v, i) => (p[i] = (p[i] as number) - s.lr * v));
    history.push([...p]);
  }
  return history;
}

for (const settings of [
  { lr: 0.1 },
  { lr: 0.1, momentum: 0.9 },
  { lr: 0.05, momentum: 0.9, dampening: 0.3, weightDecay: 0.01 },
  { lr: 0.05, momentum: 0.8, weightDecay: 0.1, nesterov: true },
  { lr: 0.2, momentum: 0.5, maximize: true },
] as SgdSettings[]) {
  test(`SGD ${JSON.stringify(settings)} matches the hand computation`, () => {
    const start = [1.0, -2.0, 0.5];
    const p = param(start);
    const opt = new optim.SGD([p], settings);
    const expected = referenceSgd(start, GRADS, settings);
    GRADS.forEach((g, step) => {
      setGrad(p, g);
      opt.step();
      assertClose(p.toArray(), expected[step] as number[], 1e-6, `step ${step + 1}`);
    });
    assert.ok(p.isLeaf && p.requiresGrad, 'the parameter stays a trainable leaf');
    opt.dispose();
    p.dispose();
  });
}

test('SGD: the first momentum buffer is the gradient itself (hand values)', () => {
  const p = param([1, 2]);
  const opt = new optim.SGD([p], { lr: 0.1, momentum: 0.9, dampening: 0.5 });
  setGrad(p, [1, -1]);
  opt.step(); // buf = g = [1, -1]; p = [0.9, 2.1]
  assertClose(p.toArray(), [0.9, 2.1], 1e-6, 'step 1');
  setGrad(p, [2, 0]);
  opt.step(); // buf = 0.9 * [1, -1] + 0.5 * [2, 0] = [1.9, -0.9]; p = [0.71, 2.19]
  assertClose(p.toArray(), [0.71, 2.19], 1e-6, 'step 2');
  const saved = opt.stateDict();
  assertClose((saved.state[0]?.momentum_buffer as Tensor).toArray(), [1.9, -0.9], 1e-6, 'momentum buffer');
  (saved.state[0]?.momentum_buffer as Tensor).dispose();
  opt.dispose();
  p.dispose();
});

interface AdamWSettings {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
}

/** The AdamW rule written out per element in double precision. */
function referenceAdamW(start: number[], grads: number[][], s: AdamWSettings): number[][] {
  const p = [...start];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  const vmax = p.map(() => 0);
  const [b1, b2] = s.betas;
  const history: number[][] = [];
  grads.forEach((grad, index) => {
    const t = index + 1;
    for (let i = 0; i < p.length; i++) {
      const g = grad[i] as number;
      p[i] = (p[i] as number) * (1 - s.lr * s.weightDecay);
      m[i] = b1 * (m[i] as number) + (1 - b1) * g;
      v[i] = b2 * (v[i] as number) + (1 - b2) * g * g;
      vmax[i] = Math.max(vmax[i] as number, v[i] as number);
      const second = s.amsgrad ? (vmax[i] as number) : (v[i] as number);
      const mHat = (m[i] as number) / (1 - b1 ** t);
      const denom = Math.sqrt(second) / Math.sqrt(1 - b2 ** t) + s.eps;
      p[i] = (p[i] as number) - s.lr * (mHat / denom);
    }
    history.push([...p]);
  });
  return history;
}

for (const amsgrad of [false, true]) {
  test(`AdamW (amsgrad ${amsgrad}) matches the hand computation`, () => {
    const settings: AdamWSettings = { lr: 0.01, betas: [0.8, 0.95], eps: 1e-6, weightDecay: 0.1, amsgrad };
    // Large gradients first then small ones, so that v decreases and amsgrad's max matters.
    const grads = [[3, -4, 5], [0.1, 0.2, -0.1], [0.05, -0.02, 0.01], ...GRADS];
    const start = [0.3, -0.7, 1.2];
    const p = param(start);
    const opt = new optim.AdamW([p], settings);
    const expected = referenceAdamW(start, grads, settings);
    grads.forEach((g, step) => {
      setGrad(p, g);
      opt.step();
      assertClose(p.toArray(), expected[step] as number[], 2e-6, `step ${step + 1}`);
    });
    const other = referenceAdamW(start, grads, { ...settings, amsgrad: !amsgrad });
    assert.ok(Math.abs((other.at(-1) as number[])[0] as number - (expected.at(-1) as number[])[0]!) > 1e-5, 'amsgrad changes the result on this sequence');
    const saved = opt.stateDict();
    assert.equal(saved.state[0]?.step, grads.length);
    assert.equal('max_exp_avg_sq' in (saved.state[0] ?? {}), amsgrad);
    for (const v of Object.values(saved.state[0] ?? {})) if (typeof v !== 'number') v.dispose();
    opt.dispose();
    p.dispose();
  });
}

test('AdamW first step moves each element by about lr (hand values)', () => {
  // With zero weight decay, step 1 gives p -= lr * g / (|g| + eps * sqrt(1 - beta2)) ~ lr * sign(g).
  const p = param([1, 1]);
  const opt = new optim.AdamW([p], { lr: 0.1, weightDecay: 0, eps: 1e-8 });
  setGrad(p, [2, -0.001]);
  opt.step();
  assertClose(p.toArray(), [0.9, 1.1], 1e-5, 'step 1');
  opt.dispose();
  p.dispose();
});

test('parameters without gradients are skipped; groups keep their own hyperparameters', () => {
  const a = param([1, 1]);
  const b = param([1, 1]);
  const c = param([5]);
  const opt = new optim.SGD([{ params: [a] }, { params: [b], lr: 1 }, { params: [c], weightDecay: 1 }], { lr: 0.1 });
  assert.equal(opt.paramGroups[1]?.lr, 1);
  assert.equal(opt.paramGroups[2]?.lr, 0.1);
  setGrad(a, [1, 2]);
  setGrad(b, [1, 2]);
  opt.step();
  assertClose(a.toArray(), [0.9, 0.8], 1e-6, 'group 0 (default lr)');
  assertClose(b.toArray(), [0, -1], 1e-6, 'group 1 (lr 1)');
  assert.deepEqual(c.toArray(), [5], 'no gradient: untouched, even with weight decay');
  assert.deepEqual(Object.keys(opt.stateDict().state), []);
  opt.zeroGrad();
  assert.equal(a.grad, null);
  assert.throws(() => new optim.SGD([a, a], { lr: 0.1 }), /appears in more than one place/);
  assert.throws(() => new optim.SGD([{ params: [a] }, { params: [a] }], { lr: 0.1 }), /appears in more than one place/);
  assert.throws(() => new optim.SGD([], { lr: 0.1 }), /empty parameter list/);
  assert.throws(() => new optim.SGD([a], { lr: -1 }), /invalid learning rate -1/);
  assert.throws(() => new optim.SGD([a], { lr: 0.1, nesterov: true }), /Nesterov momentum requires/);
  assert.throws(() => new optim.AdamW([a], { betas: [0.9, 1] }), /invalid beta2 1/);
  assert.throws(() => new optim.AdamW([{ params: [a], eps: -1 }]), /param group 0: invalid epsilon -1/);
  assert.throws(() => new optim.SGD([F.mul(a, 2)], { lr: 0.1 }), /non-leaf/);
  opt.dispose();
  for (const t of [a, b, c]) t.dispose();
});

function runSteps(opt: { step(): void }, params: Tensor[], grads: number[][][]): void {
  for (const perParam of grads) {
    params.forEach((p, i) => setGrad(p, perParam[i] as number[]));
    opt.step();
  }
}

for (const kind of ['SGD', 'AdamW'] as const) {
  test(`${kind} stateDict round-trip (through safetensors) then continuing gives identical parameters`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'plsc-optim-'));
    try {
      manualSeed(11);
      const gradsFor = (): number[][][] =>
        Array.from({ length: 6 }, () => [F.randn([3]).toArray(), F.randn([2, 2]).toArray().slice(0, 4)]);
      const grads = tidy(gradsFor);
      type AnyOptimizer = optim.Optimizer<optim.Hyperparameters>;
      const make = (params: Tensor[]): AnyOptimizer =>
        kind === 'SGD'
          ? new optim.SGD([{ params: [params[0] as Tensor] }, { params: [params[1] as Tensor], lr: 0.03 }], { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01 })
          : new optim.AdamW([{ params: [params[0] as Tensor] }, { params: [params[1] as Tensor], lr: 0.03 }], { lr: 0.01, amsgrad: true });
      const original = [param([1, 2, 3]), F.tensor([[1, -1], [0.5, 2]]).requiresGrad_(true)];
      const first = make(original);
      runSteps(first, original, grads.slice(0, 3));
      // Save the optimizer with the parameters, then restore both into fresh objects.
      const path = join(dir, 'opt.safetensors');
      tidy(() => {
        const packed = optim.packOptimizerState(first.stateDict());
        saveSafetensors(path, { ...packed.tensors, 'param.0': original[0] as Tensor, 'param.1': original[1] as Tensor }, packed.metadata);
      });
      const loaded = loadSafetensors(path);
      const restoredParams = [(loaded['param.0'] as Tensor).requiresGrad_(true), (loaded['param.1'] as Tensor).requiresGrad_(true)];
      delete loaded['param.0'];
      delete loaded['param.1'];
      const state = optim.unpackOptimizerState(loaded, readSafetensorsHeader(path).metadata);
      // A different group structure (1 group instead of 2) is rejected with a clear error.
      const single: AnyOptimizer = kind === 'SGD' ? new optim.SGD(restoredParams, { lr: 5 }) : new optim.AdamW(restoredParams, { lr: 5 });
      assert.throws(() => single.loadStateDict(state), /saved state has 2 param groups, optimizer has 1/);
      single.dispose();
      const restored = make(restoredParams);
      restored.paramGroups[1]!.lr = 7;
      restored.loadStateDict(state);
      for (const t of Object.values(loaded)) t.dispose();
      assert.equal(restored.paramGroups[1]?.lr, 0.03, 'hyperparameters come from the saved state');
      runSteps(first, original, grads.slice(3));
      runSteps(restored, restoredParams, grads.slice(3));
      original.forEach((p, i) => assert.deepEqual((restoredParams[i] as Tensor).toArray(), p.toArray(), `param ${i} identical`));

      // In memory: snapshot, step, roll back (state and parameters), repeat the step: same result.
      const snapshot = first.stateDict();
      const paramsBefore = original.map((p) => p.detach().clone());
      runSteps(first, original, grads.slice(0, 1));
      const once = original.map((p) => p.toArray());
      first.loadStateDict(snapshot);
      tidy(() => original.forEach((p, i) => noGrad(() => p.copy_(paramsBefore[i] as Tensor))));
      runSteps(first, original, grads.slice(0, 1));
      assert.deepEqual(original.map((p) => p.toArray()), once);
      for (const fields of Object.values(snapshot.state)) for (const v of Object.values(fields)) if (typeof v !== 'number') v.dispose();
      for (const o of [first, restored]) o.dispose();
      for (const p of [...original, ...restoredParams, ...paramsBefore]) p.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('loadStateDict rejects mismatched parameter counts and state shapes, changing nothing', () => {
  const a = param([1, 2, 3]);
  const opt = new optim.SGD([a], { lr: 0.1, momentum: 0.9 });
  setGrad(a, [1, 1, 1]);
  opt.step();
  tidy(() => {
    const good = opt.stateDict();
    assert.throws(() => opt.loadStateDict({ ...good, paramGroups: [{ ...good.paramGroups[0]!, params: [0, 1] }] }), /param group 0 has 2 parameters saved, 1 in the optimizer/);
    assert.throws(() => opt.loadStateDict({ ...good, state: { 0: { momentum_buffer: F.zeros([4]) } } }), /state 'momentum_buffer' of parameter 0 has shape \[4\], parameter has \[3\]/);
    assert.throws(() => opt.loadStateDict({ ...good, state: { 7: { momentum_buffer: F.zeros([3]) } } }), /parameter index 7, which no param group lists/);
    assert.throws(() => opt.loadStateDict({ ...good, paramGroups: [{ ...good.paramGroups[0]!, lr: -3 }] }), /saved param group 0: invalid learning rate -3/);
    const after = opt.stateDict();
    assertClose((after.state[0]?.momentum_buffer as Tensor).toArray(), [1, 1, 1], 0, 'state unchanged');
    assert.equal(opt.paramGroups[0]?.lr, 0.1);
  });
  opt.dispose();
  a.dispose();
});

test('clipGradNorm returns the total norm and scales gradients to maxNorm', () => {
  const a = param([0, 0]);
  const b = param([0]);
  const c = param([0]);
  setGrad(a, [3, 4]);
  setGrad(b, [12]);
  // c has no gradient: ignored.
  const total = optim.clipGradNorm([a, b, c], 6.5);
  assertClose([total], [13], 1e-6, 'total 2-norm');
  const coef = 6.5 / (13 + 1e-6);
  const ga = a.grad as Tensor;
  const gb = b.grad as Tensor;
  assertClose(ga.toArray(), [3 * coef, 4 * coef], 1e-6, 'clipped a');
  assertClose(gb.toArray(), [12 * coef], 1e-6, 'clipped b');
  ga.dispose();
  gb.dispose();
  // Below the limit: unchanged.
  setGrad(a, [3, 4]);
  setGrad(b, [12]);
  assertClose([optim.clipGradNorm([a, b], 100)], [13], 1e-6, 'total');
  tidy(() => assert.deepEqual((a.grad as Tensor).toArray(), [3, 4]));
  // Infinity norm and 1-norm.
  assertClose([optim.clipGradNorm([a, b], 100, Infinity)], [12], 1e-6, 'inf norm');
  assertClose([optim.clipGradNorm([a, b], 100, 1)], [19], 1e-6, '1-norm');
  assert.equal(optim.clipGradNorm([c], 1), 0);
  setGrad(b, [Number.NaN]);
  assert.throws(() => optim.clipGradNorm([a, b], 1, 2, { errorIfNonfinite: true }), /total 2-norm of the gradients is NaN/);
  assert.throws(() => optim.clipGradNorm([a], -1), /clipGradNorm: maxNorm must be in \[0, Infinity\], got -1/);
  for (const t of [a, b, c]) t.dispose();
});

test('an optimizer trains a small model (loss decreases)', () => {
  manualSeed(21);
  const model = new nn.Sequential(new nn.Linear(4, 16), new nn.ReLU(), new nn.Linear(16, 3));
  const opt = new optim.AdamW(model.parameters(), { lr: 0.01 });
  const x = F.randn([64, 4]);
  const y = tidy(() => F.argmax(F.linear(x, F.randn([3, 4])), 1));
  const lossAt = (): number => tidy(() => F.crossEntropy(model.call(x), y).item());
  const before = lossAt();
  for (let i = 0; i < 60; i++) {
    tidy(() => F.crossEntropy(model.call(x), y).backward());
    opt.step();
    opt.zeroGrad();
  }
  const after = lossAt();
  assert.ok(after < 0.5 * before, `loss ${before} -> ${after}`);
  opt.dispose();
  model.dispose();
  x.dispose();
  y.dispose();
});
