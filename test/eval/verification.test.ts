import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ACCURACY_THRESHOLDS,
  calculateRoc,
  calculateVal,
  computeXNorm,
  evaluateVerification,
  fuseFlipEmbeddings,
  interpolateSlinear,
  kFoldSplits,
  numpyMean,
  numpyStd,
  pairSquaredDistances,
  pairwiseSum,
  rocCurve,
  tarAtFar,
  thresholdRange,
  VAL_THRESHOLDS,
  type EmbeddingMatrix,
} from '../../src/eval/verification.js';

/** Pair i = rows (1, 0) and (c, s) on the unit circle with squared distance d_i = 2 - 2c. */
function pairsAt(distances: readonly number[]): EmbeddingMatrix {
  const data = new Float32Array(distances.length * 4);
  distances.forEach((d, i) => {
    const c = 1 - d / 2;
    data.set([1, 0, c, Math.sqrt(1 - c * c)], i * 4);
  });
  return { data, rows: 2 * distances.length, dim: 2 };
}

function lcg(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
}

function gaussian(rnd: () => number): number {
  return Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd());
}

const close = (actual: number, expected: number, tol = 1e-9) =>
  assert.ok(Math.abs(actual - expected) <= tol, `${actual} != ${expected} (tolerance ${tol})`);

test('k-fold splits follow sklearn KFold(shuffle=False): in order, first n % k folds one larger', () => {
  const splits = kFoldSplits(25, 10);
  assert.deepEqual(splits.map((s) => s.test.length), [3, 3, 3, 3, 3, 2, 2, 2, 2, 2]);
  assert.deepEqual([...splits[0]!.test], [0, 1, 2]);
  assert.deepEqual([...splits[5]!.test], [15, 16]);
  assert.deepEqual([...splits[9]!.test], [23, 24]);
  for (const { train, test: held } of splits) {
    assert.equal(train.length + held.length, 25);
    assert.deepEqual([...train, ...held].sort((a, b) => a - b), Array.from({ length: 25 }, (_, i) => i));
  }
  const one = kFoldSplits(4, 1);
  assert.deepEqual([...one[0]!.train], [0, 1, 2, 3]);
  assert.deepEqual([...one[0]!.test], [0, 1, 2, 3]);
  assert.throws(() => kFoldSplits(5, 10), /cannot split 5 pairs into 10 folds/);
});

test('threshold grids are np.arange(0, 4, 0.01) and np.arange(0, 4, 0.001)', () => {
  assert.equal(ACCURACY_THRESHOLDS.length, 400);
  assert.equal(ACCURACY_THRESHOLDS[1], 0.01);
  assert.equal(ACCURACY_THRESHOLDS[399], 399 * 0.01);
  assert.equal(VAL_THRESHOLDS.length, 4000);
  assert.equal(VAL_THRESHOLDS[3999], 3999 * 0.001);
  assert.deepEqual(thresholdRange(0, 1, 0.3), [0, 0.3, 0.6, 3 * 0.3]);
});

test('numpy-compatible reductions: pairwise summation order, mean, population std', () => {
  const tenths = Array.from({ length: 10 }, () => 0.1);
  const a = 0.1;
  assert.equal(pairwiseSum(tenths), a + a + (a + a) + (a + a + (a + a)) + a + a);
  assert.equal(numpyMean([1, 2, 3, 4]), 2.5);
  assert.equal(numpyStd([1, 2, 3, 4]), Math.sqrt(1.25));
});

test('perfectly separable pairs: accuracy 1, std 0, every fold picks 0.31, VAL 1 at FAR 0', () => {
  const distances = Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? 0.3055 : 1.5005));
  const issame = distances.map((_, i) => i % 2 === 0);
  const result = evaluateVerification(pairsAt(distances), null, issame);
  assert.equal(result.pairs, 100);
  assert.equal(result.positivePairs, 50);
  assert.equal(result.accuracy, 1);
  assert.equal(result.std, 0);
  assert.deepEqual(result.foldAccuracies, Array(10).fill(1));
  assert.deepEqual(result.bestThresholds, Array(10).fill(0.31));
  // Training FAR jumps 0 -> 1 between thresholds 1.500 and 1.501: interpolation gives 1.5 + 1e-3 * 0.001.
  for (const t of result.valThresholds) close(t, 1.500001, 1e-9);
  assert.equal(result.valAtFar1e3, 1);
  assert.equal(result.valStd, 0);
  assert.equal(result.far, 0);
  assert.equal(result.roc.thresholds.length, 400);
  close(result.xnorm, 1, 1e-6);
});

test('random embeddings score about 0.5', () => {
  const rnd = lcg(99);
  const pairs = 2000;
  const dim = 32;
  const data = Float32Array.from({ length: 2 * pairs * dim }, () => gaussian(rnd));
  const issame = Array.from({ length: pairs }, () => rnd() < 0.5);
  const result = evaluateVerification({ data, rows: 2 * pairs, dim }, null, issame);
  assert.ok(result.accuracy > 0.45 && result.accuracy < 0.56, `accuracy ${result.accuracy}`);
  assert.ok(result.valAtFar1e3 < 0.05, `VAL ${result.valAtFar1e3}`);
});

test('best threshold differs per fold: hand-computed thresholds, fold accuracies, mean and std', () => {
  // 20 pairs, 10 folds of 2. Even pairs positive at 0.495, odd negative at 1.505, except
  // pair 4 (fold 2): a positive at 1.003, and pair 13 (fold 6): a negative at 0.797.
  const distances: number[] = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? 0.495 : 1.505));
  distances[4] = 1.003;
  distances[13] = 0.797;
  const issame = distances.map((_, i) => i % 2 === 0);
  // Training folds holding both outliers: thresholds in (0.495, 0.797] and in (1.003, 1.505] each
  // make one error; the first maximum is 0.50. Fold 2 held out (no positive outlier): (0.495, 0.797]
  // is error-free, again 0.50. Fold 6 held out (no negative outlier): only (1.003, 1.505] is
  // error-free, first grid point 1.01.
  const expectedThresholds = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1.01, 0.5, 0.5, 0.5];
  // Held out: fold 2's positive at 1.003 is rejected at 0.50; fold 6's negative at 0.797 accepted at 1.01.
  const expectedFoldAccuracy = [1, 1, 0.5, 1, 1, 1, 0.5, 1, 1, 1];

  const roc = calculateRoc(ACCURACY_THRESHOLDS, distances, issame, 10);
  assert.deepEqual(roc.bestThresholdIndex.map((k) => ACCURACY_THRESHOLDS[k]), expectedThresholds);
  assert.deepEqual(roc.accuracy, expectedFoldAccuracy);

  const result = evaluateVerification(pairsAt(distances), null, issame);
  assert.deepEqual(result.bestThresholds, expectedThresholds);
  assert.deepEqual(result.foldAccuracies, expectedFoldAccuracy);
  assert.equal(result.accuracy, 0.9);
  close(result.std, 0.2, 1e-12);
});

test('flip embeddings are summed before normalization; noise that cancels under flip-sum is removed', () => {
  const fused = fuseFlipEmbeddings({ data: Float32Array.from([1, 2, 0, 0]), rows: 2, dim: 2 }, { data: Float32Array.from([2, 2, 0, 0]), rows: 2, dim: 2 });
  assert.deepEqual([...fused.data], [0.6, 0.8, 0, 0], 'sum (3, 4) normalizes to (0.6, 0.8); a zero row stays zero');
  assert.deepEqual([...pairSquaredDistances(fused)], [1]);

  const rnd = lcg(5);
  const pairs = 60;
  const dim = 8;
  const original = new Float32Array(2 * pairs * dim);
  const flipped = new Float32Array(2 * pairs * dim);
  const issame = Array.from({ length: pairs }, (_, i) => i % 2 === 0);
  for (let p = 0; p < pairs; p++) {
    const u = Array.from({ length: 2 }, () => Array.from({ length: dim }, () => gaussian(rnd)));
    for (let s = 0; s < 2; s++) {
      const identity = issame[p] ? u[0]! : u[s]!;
      for (let j = 0; j < dim; j++) {
        const noise = 4 * gaussian(rnd);
        original[(2 * p + s) * dim + j] = identity[j]! + noise;
        flipped[(2 * p + s) * dim + j] = identity[j]! - noise;
      }
    }
  }
  const o = { data: original, rows: 2 * pairs, dim };
  const f = { data: flipped, rows: 2 * pairs, dim };
  const withFlip = evaluateVerification(o, f, issame);
  const withoutFlip = evaluateVerification(o, null, issame);
  assert.equal(withFlip.accuracy, 1);
  assert.ok(withoutFlip.accuracy < 0.85, `without flip ${withoutFlip.accuracy}`);
  // Fusing a set with itself changes nothing but scale, which normalization removes.
  const self = evaluateVerification(o, o, issame);
  assert.deepEqual(self.foldAccuracies, withoutFlip.foldAccuracies);
  assert.deepEqual(self.bestThresholds, withoutFlip.bestThresholds);
  assert.throws(() => evaluateVerification(o, { data: flipped.subarray(0, dim * 4), rows: 4, dim }, issame), /flipped embeddings are 4x8/);
});

test('XNorm is the mean raw norm over original and flipped rows', () => {
  const original = [Float32Array.from([3, 4]), Float32Array.from([0, 2])];
  const flipped = [Float32Array.from([6, 8]), Float32Array.from([1, 0])];
  assert.equal(computeXNorm(original, flipped), (5 + 2 + 10 + 1) / 4);
  assert.equal(computeXNorm(original, null), (5 + 2) / 2);
  assert.equal(evaluateVerification(original, flipped, [true], { folds: 1 }).xnorm, 4.5);
});

test('VAL@FAR: per-fold interpolated thresholds, VAL and FAR computed by hand', () => {
  const dist = [0.7, 0.6, 0.9, 0.8, 0.5, 0.5, 1.5, 2.5];
  const issame = [true, false, false, true, true, false, false, false];
  const thresholds = [0, 1, 2, 3];
  // Fold 0 trains on pairs 4..7: FAR over thresholds = [0, 1/3, 2/3, 1]; FAR 0.25 lies on the first
  // segment: threshold 0.25 / (1/3) = 0.75. Held-out pairs 0..3: positive 0.7 accepted, 0.8 not
  // (VAL 0.5); negative 0.6 accepted, 0.9 not (FAR 0.5).
  // Fold 1 trains on pairs 0..3: FAR = [0, 1, 1, 1]; threshold 0.25. Held out 4..7: nothing below
  // 0.25 (VAL 0, FAR 0).
  const r = calculateVal(thresholds, dist, issame, 0.25, 2);
  close(r.foldThresholds[0]!, 0.75, 1e-15);
  close(r.foldThresholds[1]!, 0.25, 1e-15);
  assert.deepEqual(r.foldVal, [0.5, 0]);
  assert.deepEqual(r.foldFar, [0.5, 0]);
  assert.equal(r.val, 0.25);
  assert.equal(r.valStd, 0.25);
  assert.equal(r.far, 0.25);
  // A FAR the training folds never reach gives threshold 0 (nothing accepted).
  const unreachable = calculateVal(thresholds, [0.5, 3.5, 0.5, 3.5], [true, false, true, false], 0.1, 2);
  assert.deepEqual(unreachable.foldThresholds, [0, 0]);
  assert.equal(unreachable.val, 0);
});

test('slinear interpolation matches scipy<=1.8 interp1d on plateaus and at the ends', () => {
  const x = [0, 0, 0.5, 0.5, 1];
  const y = [0, 1, 2, 3, 4];
  assert.equal(interpolateSlinear(x, y, 0), 1, 'the last knot of a plateau starts the segment');
  assert.equal(interpolateSlinear(x, y, 0.25), 1.5);
  assert.equal(interpolateSlinear(x, y, 0.5), 3);
  assert.equal(interpolateSlinear(x, y, 1), 4);
  assert.equal(interpolateSlinear([0, 1, 1], [0, 1, 2], 1), 0, 'a zero-length last segment evaluates to 0');
  assert.throws(() => interpolateSlinear(x, y, 1.5), /outside the interpolation range/);
});

test('ROC points over all pairs', () => {
  const roc = rocCurve([0.1, 0.5, 0.3, 0.7], [true, false, true, false], [0, 0.4, 0.6, 1]);
  assert.deepEqual(roc.tpr, [0, 1, 1, 1]);
  assert.deepEqual(roc.fpr, [0, 0, 0.5, 1]);
});

test('TAR@FAR: threshold at the floor(FAR*N)-th negative; null without enough negatives', () => {
  const negatives = Array.from({ length: 100 }, (_, j) => 1 + j * 0.01);
  const positives = [0.5, 0.9, 1.05, 1.095, 1.1, 1.2, 1.5, 2, 3, 0.1];
  const dist = [...positives, ...negatives];
  const issame = dist.map((_, i) => i < positives.length);
  const at01 = tarAtFar(dist, issame, 0.1);
  assert.deepEqual(at01, { far: 0.1, tar: 0.5, threshold: 1 + 10 * 0.01, achievedFar: 0.1 });
  const at001 = tarAtFar(dist, issame, 0.01);
  assert.deepEqual(at001, { far: 0.01, tar: 0.3, threshold: 1 + 1 * 0.01, achievedFar: 0.01 });
  assert.equal(tarAtFar(dist, issame, 1e-3).tar, null);
  assert.equal(tarAtFar(dist, issame, 1e-4).threshold, null);
  // ties keep the achieved FAR below the target
  assert.deepEqual(tarAtFar([0.5, 1, 1, 1, 2], [true, false, false, false, false], 0.5), { far: 0.5, tar: 1, threshold: 1, achievedFar: 0 });

  const separable = evaluateVerification(pairsAt([...positives.map(() => 0.2), ...negatives.map((d) => d)]), null, issame);
  assert.deepEqual(separable.tarAtFar.map((t) => t.far), [1e-4, 1e-3, 1e-2, 1e-1]);
  assert.deepEqual(separable.tarAtFar.map((t) => t.tar), [null, null, 1, 1]);
});

test('input errors are explicit', () => {
  const m = pairsAt([0.5, 1.5]);
  assert.throws(() => evaluateVerification(m, null, [true]), /original embeddings have 4 rows; 1 pairs need 2/);
  const bad = { data: Float32Array.from(m.data), rows: 4, dim: 2 };
  bad.data[5] = NaN;
  assert.throws(() => evaluateVerification(bad, null, [true, false], { folds: 2 }), /row 2 column 1 is NaN/);
  assert.throws(() => evaluateVerification(m, null, [true, false]), /cannot split 2 pairs into 10 folds/);
  assert.throws(() => evaluateVerification([Float32Array.of(1, 2), Float32Array.of(1)], null, [true], { folds: 1 }), /row 1 has 1 values, row 0 has 2/);
});
