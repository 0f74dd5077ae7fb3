// Parity of the head's fused native kernels with their references built from ordinary operators,
// in float32 (1e-6 relative) and in 16-bit storage (within its rounding); stochastic rounding.
import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { ops as F, tidy, manualSeed, getNumThreads, setNumThreads, type Tensor } from '../../src/index.js';
import { tileForward, tileGrad, loadRows, rowUpdate, storeRows, kernelThreadCount, type TileTargets, type ClassStorage, type RowSelection } from '../../src/torch/fused.js';
import { tileForwardReference, tileGradReference, loadRowsReference, rowUpdateReference } from '../../src/torch/fused-reference.js';

/** max |a - b| / max(|b|, floor) over the elements. */
function relativeError(actual: Tensor, expected: Tensor, floor = 1e-6): number {
  const a = F.to(actual, 'float64').toArray();
  const e = F.to(expected, 'float64').toArray();
  assert.equal(a.length, e.length, 'same size');
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs((a[i] as number) - (e[i] as number)) / Math.max(Math.abs(e[i] as number), floor));
  return worst;
}

/**
 * max |a - b| / max |b|: the update's dot product (radial term) sums in another order than the
 * reference's, so single elements near zero differ more than 1e-6 of themselves, not of the rows.
 */
function normwiseError(actual: Tensor, expected: Tensor): number {
  const scale = F.amax(F.abs(F.to(expected, 'float64')), [0, 1]).item();
  return F.amax(F.abs(F.sub(F.to(actual, 'float64'), F.to(expected, 'float64'))), [0, 1]).item() / scale;
}

const int64 = (values: number[]): Tensor => F.tensor(values, { dtype: 'int64' });

// Targets of a [rows, cols] tile: one per listed column, sorted by (row, col).
function tileTargets(pairs: [number, number][], values: number[]): TileTargets {
  const order = pairs.map((_, i) => i).sort((a, b) => (pairs[a] as [number, number])[0] - (pairs[b] as [number, number])[0] || (pairs[a] as [number, number])[1] - (pairs[b] as [number, number])[1]);
  return {
    rows: int64(order.map((i) => (pairs[i] as [number, number])[0])),
    cols: int64(order.map((i) => (pairs[i] as [number, number])[1])),
    values: F.tensor(order.map((i) => values[i] as number)),
  };
}

test('tileForward: scale, margin targets, max, exp and sums match the reference (float32)', () => {
  tidy(() => {
    manualSeed(11);
    const rows = 37, cols = 19, s = 64;
    const gemm = F.mul(F.sub(F.rand([rows, cols]), 0.5), 2 * s * 3); // s * w . xn for |w| up to 3
    const rowScale = F.div(F.ones([rows]), F.add(F.rand([rows]), 0.5));
    const targets = tileTargets([[3, 0], [3, 5], [36, 18], [0, 7]], [10, -20, 30, 63]);
    for (const withAccuracy of [false, true]) {
      const tile = F.clone(gemm);
      const colMax = F.empty([cols]);
      const colSum = F.empty([cols]);
      const maxScaledCosine = withAccuracy ? F.full([cols], -Infinity) : null;
      tileForward(tile, { rowScale, targets, colMax, colSum, maxScaledCosine });
      const ref = tileForwardReference(gemm, { rowScale, targets, maxScaledCosine: withAccuracy ? F.full([cols], -Infinity) : null });
      assert.ok(relativeError(colMax, ref.colMax) < 1e-6, 'column maxima');
      assert.ok(relativeError(tile, ref.exps, 1e-30) < 1e-6, `exps: ${relativeError(tile, ref.exps, 1e-30)}`);
      assert.ok(relativeError(colSum, ref.colSum) < 1e-6, 'column sums');
      if (maxScaledCosine !== null) assert.ok(relativeError(maxScaledCosine, ref.maxScaledCosine as Tensor) < 1e-6, 'max scaled cosine');
    }
  });
});

test('tileForward with a row add (plain softmax) and a given maximum equals the reference', () => {
  tidy(() => {
    manualSeed(12);
    const rows = 9, cols = 33;
    const gemm = F.randn([rows, cols]);
    const rowAdd = F.randn([rows]);
    const given = F.add(F.amax(F.add(gemm, F.unsqueeze(rowAdd, 1)), 0), 0.25);
    const tile = F.clone(gemm);
    tileForward(tile, { rowAdd, colMax: F.clone(given), maxGiven: true });
    const ref = tileForwardReference(gemm, { rowAdd, givenMax: given });
    assert.ok(relativeError(tile, ref.exps, 1e-30) < 1e-6);
  });
});

test('tileGrad: dL/dlogits with target slopes and row scales matches the reference (float32)', () => {
  tidy(() => {
    manualSeed(13);
    const rows = 21, cols = 40;
    const exps = F.rand([rows, cols]);
    const colScale = F.div(F.rand([cols]), 7);
    const targets = tileTargets([[0, 39], [20, 0], [5, 1], [5, 17]], [1.3, 0.7, 1, 2]);
    for (const rowScale of [null, F.add(F.rand([rows]), 0.5)]) {
      const tile = F.clone(exps);
      tileGrad(tile, colScale, rowScale, targets, 0.25);
      const ref = tileGradReference(exps, colScale, rowScale, targets, 0.25);
      assert.ok(relativeError(tile, ref) < 1e-6, `rowScale ${rowScale === null ? 'none' : 'given'}`);
    }
  });
});

function store(values: Tensor, storage: ClassStorage): Tensor {
  return F.contiguous(F.to(values, storage));
}

test('loadRows: widened rows and inverse norms, by range and by index, for every storage', () => {
  tidy(() => {
    manualSeed(14);
    const values = F.randn([50, 24]);
    F.mul_(F.narrow(values, 0, 7, 1), 0); // a zero row: the norm is clamped to eps
    for (const storage of ['float32', 'bfloat16', 'float16'] as const) {
      const rows = store(values, storage);
      const selections: RowSelection[] = [{ first: 5, count: 20 }, { index: int64([49, 0, 7, 7, 13]) }];
      for (const selection of selections) {
        const count = 'index' in selection ? selection.index.numel : selection.count;
        const out = F.empty([count, 24]);
        const inverse = F.empty([count]);
        const inverseSquared = F.empty([count]);
        loadRows(rows, selection, out, inverse, inverseSquared, 1e-12);
        const ref = loadRowsReference(rows, selection, 1e-12);
        assert.equal(relativeError(out, ref.rows), 0, `${storage}: widening is exact`);
        assert.ok(relativeError(inverse, ref.inverseNorm) < 1e-6, `${storage}: inverse norms`);
        assert.ok(relativeError(inverseSquared, ref.inverseSquaredNorm) < 2e-6, `${storage}: inverse squared norms`);
      }
    }
  });
});

test('rowUpdate: float32 SGD with the radial term on selected rows equals the reference; other rows untouched', () => {
  tidy(() => {
    manualSeed(15);
    const sgd = { lr: 0.1, momentum: 0.9, weightDecay: 5e-4 };
    const selections: RowSelection[] = [{ first: 3, count: 10 }, { index: int64([0, 17, 4, 29]) }];
    for (const selection of selections) {
      for (const radial of [false, true]) {
        const weight = F.randn([30, 16]);
        const momentum = F.randn([30, 16]);
        const count = 'index' in selection ? selection.index.numel : selection.count;
        const grad = F.randn([count, 16]);
        const inverseSquared = radial ? F.add(F.rand([count]), 0.1) : null;
        const ref = rowUpdateReference(weight, momentum, selection, grad, inverseSquared, sgd);
        const weightBefore = F.clone(weight);
        rowUpdate(weight, momentum, selection, grad, inverseSquared, sgd, [1, 2, 3]);
        const chosen = 'index' in selection ? selection.index : F.arange(selection.first, selection.first + selection.count, 1, { dtype: 'int64' });
        assert.ok(normwiseError(F.indexSelect(weight, 0, chosen), ref.weight) < 1e-6, 'weight');
        assert.ok(normwiseError(F.indexSelect(momentum, 0, chosen), ref.momentum) < 1e-6, 'momentum');
        if (!radial) assert.ok(relativeError(F.indexSelect(momentum, 0, chosen), ref.momentum) < 1e-6, 'momentum, elementwise');
        const changedRows = F.nonzero(F.ne(F.sum(F.abs(F.sub(weight, weightBefore)), 1), 0)).toArray().sort((a, b) => a - b);
        assert.deepEqual(changedRows, [...new Set(chosen.toArray())].sort((a, b) => a - b), 'only the selected rows change');
      }
    }
  });
});

// Each stored value is a neighbour of the float32 result in the storage's grid: within one unit in the last place.
function assertWithinRounding(stored: Tensor, exact: Tensor, storage: 'bfloat16' | 'float16', what: string): void {
  const s = F.to(stored, 'float64').toArray();
  const e = F.to(exact, 'float64').toArray();
  const mantissaBits = storage === 'bfloat16' ? 7 : 10;
  for (let i = 0; i < s.length; i++) {
    const v = e[i] as number;
    const ulp = Math.pow(2, Math.floor(Math.log2(Math.max(Math.abs(v), 6.1e-5))) - mantissaBits);
    const allowed = storage === 'bfloat16' ? ulp : ulp / 2;
    assert.ok(Math.abs((s[i] as number) - v) <= allowed * (1 + 1e-6), `${what}[${i}]: stored ${s[i]}, exact ${v}`);
  }
}

test('rowUpdate on 16-bit rows: float32 math, each write within its rounding of the float32 result', () => {
  tidy(() => {
    manualSeed(16);
    const sgd = { lr: 0.05, momentum: 0.9, weightDecay: 5e-4 };
    for (const storage of ['bfloat16', 'float16'] as const) {
      const weight = store(F.randn([40, 32]), storage);
      const momentum = store(F.mul(F.randn([40, 32]), 0.1), storage);
      const selection = { index: int64([1, 39, 8]) };
      const grad = F.randn([3, 32]);
      const inverseSquared = F.add(F.rand([3]), 0.5);
      const ref = rowUpdateReference(weight, momentum, selection, grad, inverseSquared, sgd);
      const before = F.empty([3, 32]);
      loadRows(weight, selection, before, null, null, 1e-12);
      const previous = F.full([3, 32], Number.NaN);
      rowUpdate(weight, momentum, selection, grad, inverseSquared, sgd, [7, 0, 0], previous);
      assert.deepEqual(previous.toArray(), before.toArray(), `${storage}: previousRows holds the rows as loadRows widened them before the update`);
      assert.equal(weight.dtype, storage);
      assertWithinRounding(F.indexSelect(momentum, 0, selection.index), ref.momentum, storage, `${storage} momentum`);
      assertWithinRounding(F.indexSelect(weight, 0, selection.index), ref.weight, storage, `${storage} weight`);
    }
  });
});

test('stochastic rounding of bfloat16 writes: deterministic per key and row, different across steps, unbiased', () => {
  tidy(() => {
    manualSeed(17);
    const values = F.randn([64, 48]);
    const write = (key: number[]): number[] => {
      const target = F.zeros([64, 48], { dtype: 'bfloat16' });
      storeRows(target, { first: 0, count: 64 }, values, key);
      return F.to(target, 'float32').toArray();
    };
    assert.deepEqual(write([1, 5, 0]), write([1, 5, 0]), 'same (seed, step, rank): same bits');
    const a = write([1, 5, 0]);
    const b = write([1, 6, 0]);
    assert.ok(a.some((v, i) => v !== b[i]), 'another step draws other bits');
    // The same row written through an index draws the same bits as through a range.
    const byIndex = F.zeros([64, 48], { dtype: 'bfloat16' });
    storeRows(byIndex, { index: F.arange(0, 64, 1, { dtype: 'int64' }) }, values, [1, 5, 0]);
    assert.deepEqual(F.to(byIndex, 'float32').toArray(), a, 'bits depend on the row, not on how it was selected');
    // 1 + 2^-9 lies a quarter of the way from 1 to the next bfloat16 (1 + 2^-7): a quarter round up.
    const x = 1 + 2 ** -9;
    const many = F.zeros([256, 64], { dtype: 'bfloat16' });
    storeRows(many, { first: 0, count: 256 }, F.full([256, 64], x), [3, 1, 0]);
    const mean = F.mean(F.to(many, 'float64')).item();
    assert.ok(Math.abs(mean - x) < 2e-5, `mean of rounded values ${mean} vs ${x}`);
    const up = F.mean(F.gt(F.to(many, 'float32'), 1).float()).item();
    assert.ok(up > 0.2 && up < 0.3, `share rounded up ${up}`);
  });
});

// The kernels parallelize with at::parallel_for, whose OpenMP body is compiled into the addon: built
// without -fopenmp it runs every kernel on the calling thread, silently (each kernel 1.5-2x slower).
test('the kernels run on libtorch\'s intra-op threads, as many as the setting (and the work) allows', () => {
  const threads = getNumThreads();
  try {
    setNumThreads(2);
    assert.equal(kernelThreadCount(64), 2);
    assert.equal(kernelThreadCount(1), 1);
    setNumThreads(1);
    assert.equal(kernelThreadCount(64), 1);
  } finally {
    setNumThreads(threads);
  }
});

test('kernels reject bad arguments with a message naming the argument', () => {
  tidy(() => {
    const tile = F.zeros([4, 3]);
    assert.throws(() => tileForward(F.zeros([4, 3], { dtype: 'float64' }), { colMax: F.zeros([3]) }), /headTileForward tile: expected float/);
    assert.throws(() => tileForward(tile, { colMax: F.zeros([4]) }), /colMax: expected 3 elements/);
    assert.throws(() => tileGrad(tile, F.zeros([3]), null, { rows: int64([2, 1]), cols: int64([0, 1]), values: F.zeros([2]) }, 1), /sorted/);
    assert.throws(() => tileGrad(tile, F.zeros([3]), null, { rows: int64([4]), cols: int64([0]), values: F.zeros([1]) }, 1), /outside the tile/);
    assert.throws(() => loadRows(F.zeros([5, 2], { dtype: 'int32' }), { first: 0, count: 1 }, null, null, null, 1e-12), /float32, bfloat16 or float16/);
    assert.throws(() => loadRows(F.zeros([5, 2]), { index: int64([5]) }, F.empty([1, 2]), null, null, 1e-12), /row index 5 outside the 5 stored rows/);
    assert.throws(() => loadRows(F.zeros([5, 2]), { first: 3, count: 3 }, null, null, null, 1e-12), /rows \[3, 6\) outside/);
    const w = F.zeros([5, 2]);
    assert.throws(() => rowUpdate(w, F.zeros([5, 2], { dtype: 'bfloat16' }), { first: 0, count: 1 }, F.zeros([1, 2]), null, { lr: 1, momentum: 0, weightDecay: 0 }, [0]), /momentum must be/);
    assert.throws(() => rowUpdate(w, F.zeros([5, 2]), { first: 0, count: 1 }, F.zeros([1, 2]), null, { lr: 1, momentum: 0, weightDecay: 0 }, [-1]), /non-negative safe integers/);
    // Written rows are split across threads: a row named twice would be a race, not two updates.
    assert.throws(() => rowUpdate(w, F.zeros([5, 2]), { index: int64([3, 1, 3]) }, F.zeros([3, 2]), null, { lr: 1, momentum: 0, weightDecay: 0 }, [0]), /row index 3 appears more than once/);
    assert.throws(() => storeRows(w, { index: int64([0, 2, 2]) }, F.zeros([3, 2]), [0]), /headStoreRows: row index 2 appears more than once/);
    assert.doesNotThrow(() => rowUpdate(w, F.zeros([5, 2]), { index: int64([4, 0, 2]) }, F.zeros([3, 2]), null, { lr: 1, momentum: 0, weightDecay: 0 }, [0]));
    assert.doesNotThrow(() => loadRows(w, { index: int64([1, 1]) }, F.empty([2, 2]), null, null, 1e-12));
  });
});

test('float16 rows: storeRows rounds like torch (nearest even, subnormals, overflow, signed zero, NaN) and loadRows widens exactly', () => {
  tidy(() => {
    const special = [
      0, -0, 1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, -(1 + 2 ** -11), 65504, 65519.99, 65520, 7e4, -7e4, 2 ** -24, 2 ** -25, 1.5 * 2 ** -25,
      3e-8, 1e-8, 6e-5, -6e-5, 2 ** -14, 2 ** -14 - 2 ** -25, Infinity, -Infinity, NaN, 0.1, -3.14159, 1234.567,
    ];
    manualSeed(3);
    const values = F.cat([F.tensor(special), F.mul(F.randn([6 * 64 - special.length]), 100)]).reshape([6, 64]);
    const stored = F.zeros([8, 64], { dtype: 'float16' });
    storeRows(stored, { first: 1, count: 6 }, values, [1, 2, 3]);
    const expected = F.to(F.to(values, 'float16'), 'float32').toArray();
    const actual = F.to(F.narrow(stored, 0, 1, 6), 'float32').toArray();
    for (let i = 0; i < expected.length; i++) {
      const [a, e] = [actual[i] as number, expected[i] as number];
      assert.ok(Object.is(a, e) || (Number.isNaN(a) && Number.isNaN(e)), `element ${i}: ${values.toArray()[i]} stored as ${a}, torch rounds to ${e}`);
    }
    const widened = F.empty([6, 64]);
    loadRows(stored, { index: int64([1, 2, 3, 4, 5, 6]) }, widened, null, null, 1e-12);
    const back = widened.toArray();
    for (let i = 0; i < expected.length; i++) {
      const [a, e] = [back[i] as number, expected[i] as number];
      assert.ok(Object.is(a, e) || (Number.isNaN(a) && Number.isNaN(e)), `element ${i}: widened to ${a}, expected ${e}`);
    }
  });
});

// On CPUs with F16C, float16 rows are converted with vcvtph2ps/vcvtps2ph; PLSC_F16C=0 keeps the
// portable bit arithmetic. Both must give the same bits (a run resumes exactly on any x86-64 CPU).
test('float16 rows: the F16C path and the portable path write and read the same bits', () => {
  const indexUrl = new URL('../../src/index.js', import.meta.url).href;
  const fusedUrl = new URL('../../src/torch/fused.js', import.meta.url).href;
  const script = `
    const { ops: F, manualSeed } = await import(${JSON.stringify(indexUrl)});
    const { storeRows, loadRows, rowUpdate } = await import(${JSON.stringify(fusedUrl)});
    const out = {};
    for (const dim of [40, 512]) {
      manualSeed(5);
      const special = [0, -0, 65504, 65520, 7e4, -7e4, 2 ** -24, 2 ** -25, 3e-8, 6e-5, Infinity, -Infinity, NaN, 1 + 2 ** -11];
      const values = F.cat([F.tensor(special), F.mul(F.randn([12 * dim - special.length]), 3)]).reshape([12, dim]);
      const weight = F.zeros([16, dim], { dtype: 'float16' });
      const momentum = F.zeros([16, dim], { dtype: 'float16' });
      storeRows(weight, { first: 2, count: 12 }, values, [1]);
      storeRows(momentum, { index: F.tensor([15, 0, 3, 9, 4, 5, 6, 7, 8, 1, 10, 11], { dtype: 'int64' }) }, F.mul(values, 0.5), [2]);
      const rows = { index: F.tensor([1, 3, 4, 8, 13, 14], { dtype: 'int64' }) };
      const widened = F.empty([6, dim]);
      const inverse = F.empty([6]);
      const inverseSquared = F.empty([6]);
      loadRows(weight, rows, widened, inverse, inverseSquared, 1e-12);
      const previous = F.empty([6, dim]);
      rowUpdate(weight, momentum, rows, F.mul(F.randn([6, dim]), 0.1), inverseSquared, { lr: 0.1, momentum: 0.9, weightDecay: 5e-4 }, [3], previous);
      const bits = (t) => F.to(t, 'float32').toArray().map((v) => (Number.isNaN(v) ? 'nan' : Object.is(v, -0) ? '-0' : v));
      out[dim] = { weight: bits(weight), momentum: bits(momentum), widened: bits(widened), inverse: bits(inverse), previous: bits(previous) };
    }
    console.log(JSON.stringify(out));`;
  const run = (env: Record<string, string>): unknown =>
    JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' }));
  assert.deepEqual(run({}), run({ PLSC_F16C: '0' }));
});
