// RowSparseSGD: torch.optim.SGD's momentum update on chosen rows only, in place, for float32 and
// 16-bit parameters; driven by an LrScheduler; state restored into shared momentum buffers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ops as F, tidy, noGrad, optim, manualSeed, type Tensor } from '../../src/index.js';

const ROWS = 10, D = 6;
const HYPER = { lr: 0.1, momentum: 0.9, weightDecay: 0.01 };

function maxRelativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i] as number;
    worst = Math.max(worst, Math.abs((actual[i] as number) - e) / Math.max(1e-6, Math.abs(e)));
  }
  return worst;
}

test('RowSparseSGD.step on dense gradients equals SGD with momentum and weight decay (2-d and 1-d parameters)', () => {
  tidy(() => {
    manualSeed(1);
    const start = [F.randn([ROWS, D]), F.randn([ROWS])];
    const ours = start.map((t) => t.clone().requiresGrad_());
    const theirs = start.map((t) => t.clone().requiresGrad_());
    const rowSgd = new optim.RowSparseSGD(ours, HYPER);
    const sgd = new optim.SGD(theirs, HYPER);
    for (let step = 0; step < 4; step++) {
      const grads = start.map((t) => F.randn(t.shape));
      ours.forEach((p, i) => (p.grad = grads[i] as Tensor));
      theirs.forEach((p, i) => (p.grad = grads[i] as Tensor));
      rowSgd.step();
      sgd.step();
      ours.forEach((p, i) => {
        const error = maxRelativeError(p.dataSync() as Float32Array, (theirs[i] as Tensor).dataSync() as Float32Array);
        assert.ok(error < 1e-5, `parameter ${i} after step ${step}: relative error ${error}`);
      });
    }
  });
});

test('RowSparseSGD.stepRows updates the given rows like SGD and leaves the other rows and their momentum alone', () => {
  tidy(() => {
    manualSeed(2);
    const weight = F.randn([ROWS, D]).requiresGrad_();
    const rowSgd = new optim.RowSparseSGD([weight], HYPER);
    const reference = weight.detach().clone();
    const referenceMomentum = F.zeros([ROWS, D]);
    for (const [step, rows] of [[3, 0, 7], [7, 8], [0, 3, 9]].entries()) {
      const index = F.tensor(rows, { dtype: 'int64' });
      const grad = F.randn([rows.length, D]);
      const untouched = [...Array(ROWS).keys()].filter((r) => !rows.includes(r));
      const momentumBefore = rowSgd.momentumBuffer(weight).clone();
      const weightBefore = weight.detach().clone();
      rowSgd.stepRows(weight, { rows: { index }, grad }, [step]);
      noGrad(() => {
        const w = F.indexSelect(reference, 0, index);
        const m = F.add(F.mul(F.indexSelect(referenceMomentum, 0, index), HYPER.momentum), F.add(grad, w, HYPER.weightDecay));
        F.indexCopy_(referenceMomentum, 0, index, m);
        F.indexCopy_(reference, 0, index, F.sub(w, F.mul(m, HYPER.lr)));
      });
      assert.ok(maxRelativeError(weight.dataSync() as Float32Array, reference.dataSync() as Float32Array) < 1e-5, `weight after step ${step}`);
      assert.ok(maxRelativeError(rowSgd.momentumBuffer(weight).dataSync() as Float32Array, referenceMomentum.dataSync() as Float32Array) < 1e-5, `momentum after step ${step}`);
      const others = F.tensor(untouched, { dtype: 'int64' });
      assert.deepEqual(F.indexSelect(weight.detach(), 0, others).toArray(), F.indexSelect(weightBefore, 0, others).toArray(), 'other rows unchanged');
      assert.deepEqual(F.indexSelect(rowSgd.momentumBuffer(weight), 0, others).toArray(), F.indexSelect(momentumBefore, 0, others).toArray(), 'other momentum unchanged');
    }
  });
});

test('RowSparseSGD.stepRows on a range with the radial term removes the gradient along w', () => {
  tidy(() => {
    manualSeed(3);
    const weight = F.randn([ROWS, D]).requiresGrad_();
    const start = weight.detach().clone();
    const rowSgd = new optim.RowSparseSGD([weight], { lr: 0.5, momentum: 0, weightDecay: 0 });
    const grad = F.randn([4, D]);
    const rows = F.narrow(start, 0, 2, 4);
    const inverseSquaredNorm = F.reciprocal(F.sum(F.mul(rows, rows), 1));
    rowSgd.stepRows(weight, { rows: { first: 2, count: 4 }, grad, inverseSquaredNorm }, [0]);
    // The step is lr * (g - (g . w) / |w|^2 w): orthogonal to w.
    const moved = F.sub(F.narrow(weight.detach(), 0, 2, 4), rows);
    const along = F.sum(F.mul(moved, rows), 1).toArray();
    for (const [r, value] of along.entries()) assert.ok(Math.abs(value) < 1e-5, `row ${r + 2}: step . w = ${value}`);
    assert.ok(F.sum(F.abs(moved)).item() > 0.1, 'the rows moved');
  });
});

test('RowSparseSGD on bfloat16 and float16 rows: within one rounding of float32; bfloat16 rounding keyed and repeatable', () => {
  tidy(() => {
    manualSeed(4);
    const start = F.randn([ROWS, D]);
    const grad = F.randn([ROWS, D]);
    const all = { first: 0, count: ROWS };
    const wide = start.clone().requiresGrad_();
    new optim.RowSparseSGD([wide], HYPER).stepRows(wide, { rows: all, grad }, [0]);
    for (const storage of ['bfloat16', 'float16'] as const) {
      const narrowStart = F.to(start, storage);
      const exact = start.clone().requiresGrad_();
      noGrad(() => exact.copy_(narrowStart)); // the same representable start in float32
      new optim.RowSparseSGD([exact], HYPER).stepRows(exact, { rows: all, grad }, [0]);
      const run = (key: number[]): Tensor => {
        const p = narrowStart.clone().requiresGrad_();
        const optimizer = new optim.RowSparseSGD([p], HYPER);
        assert.equal(optimizer.momentumBuffer(p).dtype, storage);
        optimizer.stepRows(p, { rows: all, grad }, key);
        return F.to(p.detach(), 'float32');
      };
      const stored = run([5, 1]).toArray();
      const expected = exact.toArray();
      const relativeStep = storage === 'bfloat16' ? 2 ** -7 : 2 ** -11;
      for (let i = 0; i < expected.length; i++) {
        const bound = Math.abs(expected[i] as number) * relativeStep * 1.0001 + 1e-7;
        assert.ok(Math.abs((stored[i] as number) - (expected[i] as number)) <= bound, `${storage}[${i}]: ${stored[i]} vs ${expected[i]}`);
      }
      assert.deepEqual(run([5, 1]).toArray(), stored, `${storage}: the same key repeats the same bits`);
      if (storage === 'bfloat16') assert.notDeepEqual(run([6, 1]).toArray(), stored, 'another key rounds differently');
    }
  });
});

test('an LrScheduler drives RowSparseSGD groups like any optimizer (group ratios kept)', () => {
  tidy(() => {
    const weight = F.zeros([ROWS, D]).requiresGrad_();
    const bias = F.zeros([ROWS]).requiresGrad_();
    const rowSgd = new optim.RowSparseSGD([{ params: [weight] }, { params: [bias], lr: 0.05, weightDecay: 0 }], { lr: 0.1, momentum: 0 });
    const schedule = { baseLr: 0.1, warmupSteps: 2, decay: { kind: 'piecewise' as const, boundaries: [3], factor: 0.1 } };
    const scheduler = new optim.LrScheduler(rowSgd, schedule);
    const grad = F.ones([1, D]);
    const steps: number[] = [];
    for (let step = 0; step < 5; step++) {
      const before = weight.detach().clone();
      rowSgd.stepRows(weight, { rows: { first: 0, count: 1 }, grad }, [step]);
      // With no momentum and no decay the row moves by exactly -lr per element.
      steps.push(F.sub(before, weight.detach()).toArray()[0] as number);
      const expected = optim.lrAt(schedule, step);
      assert.ok(Math.abs((steps[step] as number) - expected) < 1e-7, `step ${step}: moved ${steps[step]}, lr ${expected}`);
      assert.ok(Math.abs((rowSgd.paramGroups[1]?.lr as number) - expected / 2) < 1e-12, `step ${step}: bias group keeps half the rate`);
      scheduler.step();
    }
  });
});

test('RowSparseSGD state: saved and restored into the same momentum tensors its owner holds', () => {
  tidy(() => {
    manualSeed(5);
    const weight = F.randn([ROWS, D]).requiresGrad_();
    const first = new optim.RowSparseSGD([weight], HYPER);
    first.stepRows(weight, { rows: { index: F.tensor([1, 4], { dtype: 'int64' }) }, grad: F.randn([2, D]) }, [0]);
    const saved = first.stateDict();
    const other = F.randn([ROWS, D]).requiresGrad_();
    const second = new optim.RowSparseSGD([other], { lr: 1 });
    const shared = second.momentumBuffer(other); // e.g. a head's checkpointed weight_momentum
    second.loadStateDict(saved);
    assert.equal(second.momentumBuffer(other), shared, 'the same tensor object');
    assert.deepEqual(shared.toArray(), first.momentumBuffer(weight).toArray());
    assert.equal(second.paramGroups[0]?.lr, HYPER.lr, 'hyperparameters restored');
    // A saved state without momentum (never stepped) zeroes the shared buffer in place.
    second.loadStateDict(new optim.RowSparseSGD([F.zeros([ROWS, D]).requiresGrad_()], HYPER).stateDict());
    assert.equal(F.sum(F.abs(shared)).item(), 0);
  });
});

test('RowSparseSGD rejects bad parameters and hyperparameters naming them', () => {
  tidy(() => {
    const weight = F.zeros([ROWS, D]).requiresGrad_();
    assert.throws(() => new optim.RowSparseSGD([F.zeros([2, 3, 4]).requiresGrad_()], HYPER), /shape \[2, 3, 4\] \(expected rows: 1-d or 2-d\)/);
    assert.throws(() => new optim.RowSparseSGD([weight], { lr: -1 }), /RowSparseSGD: defaults: invalid learning rate -1/);
    assert.throws(() => new optim.RowSparseSGD([weight], { lr: 0.1, momentum: Number.NaN }), /invalid momentum NaN/);
    const rowSgd = new optim.RowSparseSGD([weight], HYPER);
    assert.throws(() => rowSgd.momentumBuffer(F.zeros([ROWS, D])), /not one of this optimizer's parameters/);
    assert.throws(() => rowSgd.stepRows(weight, { rows: { first: 8, count: 4 }, grad: F.zeros([4, D]) }, [0]), /headRowUpdate/);
  });
});
