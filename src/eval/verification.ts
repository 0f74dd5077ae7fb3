import { positiveInteger } from '../util/validate.js';
/**
 * 1:1 verification (LFW protocol) as insightface's `eval/verification.py` computes it, and as PLSC
 * reports it ("Accuracy-Flip", XNorm, VAL@FAR=1e-3):
 *
 *  - every image is embedded as is and horizontally flipped; the two embeddings are summed and
 *    L2-normalized (a zero vector stays zero, like sklearn.preprocessing.normalize);
 *  - pair i is (row 2i, row 2i+1); its score is the squared L2 distance of the normalized rows;
 *  - 10 folds in order (sklearn KFold without shuffle: the first n % k folds hold one extra pair);
 *    on each fold the threshold from 0, 0.01, ..., 3.99 with the best accuracy on the other 9 folds
 *    (first maximum, like np.argmax) is applied to the held-out fold; accuracy is the mean of the
 *    10 held-out accuracies and std their population standard deviation (np.std);
 *  - XNorm is the mean L2 norm of every raw embedding, original and flipped rows alike (insightface
 *    averages over both entries of embeddings_list before summing them);
 *  - VAL@FAR=1e-3: per fold, the threshold (grid 0, 0.001, ..., 3.999) at which the training folds
 *    reach FAR 1e-3, linearly interpolated (scipy interp1d kind='slinear'), or 0 when the training
 *    folds never reach that FAR; VAL and FAR are then measured on the held-out fold.
 * Pair distances and the fold mean/std use numpy's pairwise summation; folds, thresholds, VAL
 * interpolation, accuracies and stds reproduce a NumPy/SciPy run of insightface's code bit for bit
 * (only row normalization may differ from sklearn's einsum in the last bit).
 */

export interface EmbeddingMatrix {
  /** Row-major rows x dim. */
  data: Float32Array;
  rows: number;
  dim: number;
}

/** A matrix, or one Float32Array per row (all the same length). */
export type Embeddings = EmbeddingMatrix | readonly Float32Array[];

/** Normalized, flip-fused embeddings in float64 (as numpy holds them). */
export interface FusedEmbeddings {
  data: Float64Array;
  rows: number;
  dim: number;
}

export interface RocPoints {
  thresholds: number[];
  tpr: number[];
  fpr: number[];
}

export interface TarAtFar {
  /** The requested false accept rate. */
  far: number;
  /** True accept rate at the largest threshold whose FAR does not exceed `far`; null when there are fewer than 1/far negative pairs (or no positive pair). */
  tar: number | null;
  /** Distance threshold (pairs with distance < threshold are accepted); null with tar. */
  threshold: number | null;
  /** FAR actually reached at that threshold (ties can keep it below `far`); null with tar. */
  achievedFar: number | null;
}

export interface VerificationResult {
  /** Number of pairs P. */
  pairs: number;
  positivePairs: number;
  negativePairs: number;
  folds: number;
  /** Mean held-out accuracy over the folds ("Accuracy-Flip"). */
  accuracy: number;
  /** Population standard deviation of the per-fold accuracies. */
  std: number;
  foldAccuracies: number[];
  /** Per fold, the threshold chosen on the other folds. */
  bestThresholds: number[];
  /** Mean L2 norm of the raw embeddings (original and flipped rows). */
  xnorm: number;
  /** Mean VAL over the folds at the thresholds that give FAR=1e-3 on the training folds. */
  valAtFar1e3: number;
  valStd: number;
  /** Mean FAR over the folds at those thresholds. */
  far: number;
  /** Per fold, the interpolated VAL threshold. */
  valThresholds: number[];
  /** TPR/FPR over all pairs at each accuracy threshold. */
  roc: RocPoints;
  /** TAR at FAR 1e-4, 1e-3, 1e-2, 1e-1 over all pairs. */
  tarAtFar: TarAtFar[];
}

export interface VerificationOptions {
  /** Number of folds (insightface: 10). 1 means train and test on all pairs. */
  folds?: number;
}

/** np.arange(start, stop, step) for floats: length ceil((stop - start) / step), values start + i * delta. */
export function thresholdRange(start: number, stop: number, step: number): number[] {
  const length = Math.max(0, Math.ceil((stop - start) / step));
  const delta = start + step - start;
  return Array.from({ length }, (_, i) => (i === 0 ? start : start + i * delta));
}

/** Thresholds for accuracy/ROC: 0, 0.01, ..., 3.99 (np.arange(0, 4, 0.01)). */
export const ACCURACY_THRESHOLDS: readonly number[] = Object.freeze(thresholdRange(0, 4, 0.01));
/** Thresholds for VAL@FAR: 0, 0.001, ..., 3.999 (np.arange(0, 4, 0.001)). */
export const VAL_THRESHOLDS: readonly number[] = Object.freeze(thresholdRange(0, 4, 0.001));
export const VAL_FAR_TARGET = 1e-3;
export const TAR_FAR_TARGETS: readonly number[] = Object.freeze([1e-4, 1e-3, 1e-2, 1e-1]);

/** numpy's pairwise summation (np.sum / np.add.reduce over a contiguous float64 run). */
export function pairwiseSum(values: ArrayLike<number>, start = 0, n = values.length - start): number {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res += values[start + i]!;
    return res;
  }
  if (n <= 128) {
    let r0 = values[start]!, r1 = values[start + 1]!, r2 = values[start + 2]!, r3 = values[start + 3]!;
    let r4 = values[start + 4]!, r5 = values[start + 5]!, r6 = values[start + 6]!, r7 = values[start + 7]!;
    let i = 8;
    const end8 = n - (n % 8);
    for (; i < end8; i += 8) {
      const b = start + i;
      r0 += values[b]!;
      r1 += values[b + 1]!;
      r2 += values[b + 2]!;
      r3 += values[b + 3]!;
      r4 += values[b + 4]!;
      r5 += values[b + 5]!;
      r6 += values[b + 6]!;
      r7 += values[b + 7]!;
    }
    let res = r0 + r1 + (r2 + r3) + (r4 + r5 + (r6 + r7));
    for (; i < n; i++) res += values[start + i]!;
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return pairwiseSum(values, start, n2) + pairwiseSum(values, start + n2, n - n2);
}

/** np.mean of a 1-D float64 array. */
export function numpyMean(values: ArrayLike<number>): number {
  return pairwiseSum(values) / values.length;
}

/** np.std (population, ddof=0) of a 1-D float64 array. */
export function numpyStd(values: ArrayLike<number>): number {
  const mean = numpyMean(values);
  const sq = Float64Array.from(values, (v) => (v - mean) * (v - mean));
  return Math.sqrt(pairwiseSum(sq) / values.length);
}

/** Copy embeddings into one row-major matrix, checking shape and finiteness. */
export function toEmbeddingMatrix(embeddings: Embeddings, what = 'embeddings'): EmbeddingMatrix {
  let matrix: EmbeddingMatrix;
  if (Array.isArray(embeddings)) {
    const rows = embeddings as readonly Float32Array[];
    if (rows.length === 0) throw new RangeError(`${what}: no rows`);
    const dim = rows[0]!.length;
    const data = new Float32Array(rows.length * dim);
    rows.forEach((row, i) => {
      if (!(row instanceof Float32Array)) throw new TypeError(`${what}: row ${i} is not a Float32Array`);
      if (row.length !== dim) throw new RangeError(`${what}: row ${i} has ${row.length} values, row 0 has ${dim}`);
      data.set(row, i * dim);
    });
    matrix = { data, rows: rows.length, dim };
  } else {
    matrix = embeddings as EmbeddingMatrix;
    const { data, rows, dim } = matrix;
    if (!(data instanceof Float32Array)) throw new TypeError(`${what}: data is not a Float32Array`);
    if (!Number.isInteger(rows) || !Number.isInteger(dim) || rows <= 0 || dim <= 0) {
      throw new RangeError(`${what}: rows (${rows}) and dim (${dim}) must be positive integers`);
    }
    if (data.length !== rows * dim) throw new RangeError(`${what}: data holds ${data.length} values, rows*dim = ${rows * dim}`);
  }
  if (matrix.dim <= 0) throw new RangeError(`${what}: dimension is 0`);
  const { data, dim } = matrix;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) {
      throw new RangeError(`${what}: row ${Math.floor(i / dim)} column ${i % dim} is ${data[i]} (embeddings must be finite)`);
    }
  }
  return matrix;
}

/** L2 norm of a float64 row as numpy would sum it. */
function rowNorm(values: Float64Array): number {
  const sq = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) sq[i] = values[i]! * values[i]!;
  return Math.sqrt(pairwiseSum(sq));
}

/** XNorm: mean L2 norm over all rows of the raw embeddings (original and, when given, flipped). */
export function computeXNorm(original: Embeddings, flipped: Embeddings | null = null): number {
  const sets = [toEmbeddingMatrix(original, 'original embeddings')];
  if (flipped !== null) sets.push(toEmbeddingMatrix(flipped, 'flipped embeddings'));
  let total = 0;
  let count = 0;
  for (const { data, rows, dim } of sets) {
    const row = new Float64Array(dim);
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < dim; j++) row[j] = data[r * dim + j]!;
      total += rowNorm(row);
      count++;
    }
  }
  return total / count;
}

/** Sum original and flipped embeddings (float64) and L2-normalize every row; zero rows stay zero. */
export function fuseFlipEmbeddings(original: Embeddings, flipped: Embeddings | null = null): FusedEmbeddings {
  const a = toEmbeddingMatrix(original, 'original embeddings');
  const b = flipped === null ? null : toEmbeddingMatrix(flipped, 'flipped embeddings');
  if (b && (b.rows !== a.rows || b.dim !== a.dim)) {
    throw new RangeError(`flipped embeddings are ${b.rows}x${b.dim}, original embeddings ${a.rows}x${a.dim}`);
  }
  const { rows, dim } = a;
  const out = new Float64Array(rows * dim);
  const row = new Float64Array(dim);
  for (let r = 0; r < rows; r++) {
    const base = r * dim;
    for (let j = 0; j < dim; j++) row[j] = b ? a.data[base + j]! + b.data[base + j]! : a.data[base + j]!;
    let norm = rowNorm(row);
    if (norm === 0) norm = 1;
    for (let j = 0; j < dim; j++) out[base + j] = row[j]! / norm;
  }
  return { data: out, rows, dim };
}

/** Squared L2 distance of pairs (row 2i, row 2i+1). */
export function pairSquaredDistances(embeddings: FusedEmbeddings): Float64Array {
  const { data, rows, dim } = embeddings;
  if (rows % 2 !== 0) throw new RangeError(`an odd number of rows (${rows}) cannot form pairs`);
  const pairs = rows / 2;
  const out = new Float64Array(pairs);
  const sq = new Float64Array(dim);
  for (let p = 0; p < pairs; p++) {
    const a = 2 * p * dim;
    const b = a + dim;
    for (let j = 0; j < dim; j++) {
      const d = data[a + j]! - data[b + j]!;
      sq[j] = d * d;
    }
    out[p] = pairwiseSum(sq);
  }
  return out;
}

export interface FoldSplit {
  /** Indices used to choose the threshold. */
  train: Int32Array;
  /** Indices the threshold is applied to. */
  test: Int32Array;
}

/**
 * sklearn KFold(n_splits=k, shuffle=False): contiguous test blocks, the first n % k of size
 * floor(n/k)+1, the rest floor(n/k). k = 1 means train = test = everything (insightface LFold).
 */
export function kFoldSplits(n: number, folds: number): FoldSplit[] {
  positiveInteger(folds, 'folds');
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`invalid sample count ${n}`);
  const all = Int32Array.from({ length: n }, (_, i) => i);
  if (folds === 1) return [{ train: all, test: all }];
  if (folds > n) throw new RangeError(`cannot split ${n} pairs into ${folds} folds (need at least one pair per fold)`);
  const splits: FoldSplit[] = [];
  const base = Math.floor(n / folds);
  const extra = n % folds;
  let start = 0;
  for (let f = 0; f < folds; f++) {
    const size = base + (f < extra ? 1 : 0);
    const end = start + size;
    const train = new Int32Array(n - size);
    train.set(all.subarray(0, start), 0);
    train.set(all.subarray(end), start);
    splits.push({ train, test: all.slice(start, end) });
    start = end;
  }
  return splits;
}

/**
 * For ascending thresholds, how many positive and negative pairs among `indices` have
 * distance < threshold (the `np.less(dist, threshold)` prediction).
 */
function acceptCounts(
  dist: ArrayLike<number>,
  issame: readonly boolean[],
  indices: Int32Array,
  thresholds: readonly number[],
): { pos: Int32Array; neg: Int32Array; nPos: number; nNeg: number } {
  const posD: number[] = [];
  const negD: number[] = [];
  for (const i of indices) (issame[i] ? posD : negD).push(dist[i]!);
  const posSorted = Float64Array.from(posD).sort();
  const negSorted = Float64Array.from(negD).sort();
  const pos = new Int32Array(thresholds.length);
  const neg = new Int32Array(thresholds.length);
  let p = 0;
  let q = 0;
  let prev = -Infinity;
  thresholds.forEach((t, k) => {
    if (t < prev) throw new RangeError('thresholds must be ascending');
    prev = t;
    while (p < posSorted.length && posSorted[p]! < t) p++;
    while (q < negSorted.length && negSorted[q]! < t) q++;
    pos[k] = p;
    neg[k] = q;
  });
  return { pos, neg, nPos: posSorted.length, nNeg: negSorted.length };
}

function countBelow(dist: ArrayLike<number>, issame: readonly boolean[], indices: Int32Array, threshold: number) {
  let truePos = 0;
  let falsePos = 0;
  let nPos = 0;
  for (const i of indices) {
    const accepted = dist[i]! < threshold;
    if (issame[i]) {
      nPos++;
      if (accepted) truePos++;
    } else if (accepted) {
      falsePos++;
    }
  }
  return { truePos, falsePos, nPos, nNeg: indices.length - nPos };
}

function checkPairs(dist: ArrayLike<number>, issame: readonly boolean[]): void {
  if (dist.length !== issame.length) throw new RangeError(`${dist.length} distances but ${issame.length} labels`);
}

export interface RocFolds {
  /** Per threshold, the mean over folds of the held-out TPR (insightface's returned tpr). */
  tpr: number[];
  fpr: number[];
  /** Held-out accuracy per fold. */
  accuracy: number[];
  /** Per fold, index into `thresholds` of the best training threshold. */
  bestThresholdIndex: number[];
}

/** insightface calculate_roc on precomputed pair distances. */
export function calculateRoc(
  thresholds: readonly number[],
  dist: ArrayLike<number>,
  issame: readonly boolean[],
  folds = 10,
): RocFolds {
  checkPairs(dist, issame);
  const splits = kFoldSplits(dist.length, folds);
  const tprSum = new Float64Array(thresholds.length);
  const fprSum = new Float64Array(thresholds.length);
  const accuracy: number[] = [];
  const bestThresholdIndex: number[] = [];
  splits.forEach(({ train, test }, f) => {
    const tr = acceptCounts(dist, issame, train, thresholds);
    let best = 0;
    let bestCorrect = -1;
    for (let k = 0; k < thresholds.length; k++) {
      const correct = tr.pos[k]! + (tr.nNeg - tr.neg[k]!);
      if (correct > bestCorrect) {
        bestCorrect = correct;
        best = k;
      }
    }
    bestThresholdIndex.push(best);
    const te = acceptCounts(dist, issame, test, thresholds);
    for (let k = 0; k < thresholds.length; k++) {
      const tpr = te.nPos === 0 ? 0 : te.pos[k]! / te.nPos;
      const fpr = te.nNeg === 0 ? 0 : te.neg[k]! / te.nNeg;
      // numpy's mean over axis 0 adds the fold rows in order.
      tprSum[k] = f === 0 ? tpr : tprSum[k]! + tpr;
      fprSum[k] = f === 0 ? fpr : fprSum[k]! + fpr;
    }
    accuracy.push((te.pos[best]! + (te.nNeg - te.neg[best]!)) / test.length);
  });
  return {
    tpr: Array.from(tprSum, (s) => s / splits.length),
    fpr: Array.from(fprSum, (s) => s / splits.length),
    accuracy,
    bestThresholdIndex,
  };
}

/**
 * scipy.interpolate.interp1d(x, y, kind='slinear')(v) for non-decreasing x with x[0] <= v <= x[-1]:
 * linear on the last segment [x[i], x[i+1]] with x[i] <= v (i <= n-2), evaluated like scipy's
 * degree-1 B-spline (a zero-length last segment evaluates to 0).
 */
export function interpolateSlinear(x: ArrayLike<number>, y: ArrayLike<number>, v: number): number {
  const n = x.length;
  if (n !== y.length || n < 2) throw new RangeError('interpolation needs at least two points and matching x and y');
  if (!(v >= x[0]!) || !(v <= x[n - 1]!)) throw new RangeError(`${v} is outside the interpolation range [${x[0]}, ${x[n - 1]}]`);
  let lo = 0;
  let hi = n - 2;
  // largest i in [0, n-2] with x[i] <= v
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (x[mid]! <= v) lo = mid;
    else hi = mid - 1;
  }
  const xa = x[lo]!;
  const xb = x[lo + 1]!;
  if (xa === xb) return 0;
  const w = 1 / (xb - xa);
  const h0 = w * (xb - v);
  const h1 = w * (v - xa);
  return 0 + y[lo]! * h0 + y[lo + 1]! * h1;
}

export interface ValResult {
  val: number;
  valStd: number;
  far: number;
  foldVal: number[];
  foldFar: number[];
  foldThresholds: number[];
}

/**
 * insightface calculate_val. A held-out fold without positive (negative) pairs counts VAL (FAR) as
 * 0, like calculate_accuracy does for TPR/FPR (insightface itself would divide by zero).
 */
export function calculateVal(
  thresholds: readonly number[],
  dist: ArrayLike<number>,
  issame: readonly boolean[],
  farTarget = VAL_FAR_TARGET,
  folds = 10,
): ValResult {
  checkPairs(dist, issame);
  const splits = kFoldSplits(dist.length, folds);
  const foldVal: number[] = [];
  const foldFar: number[] = [];
  const foldThresholds: number[] = [];
  for (const { train, test } of splits) {
    const tr = acceptCounts(dist, issame, train, thresholds);
    const farTrain = Array.from(tr.neg, (c) => (tr.nNeg === 0 ? 0 : c / tr.nNeg));
    let maxFar = -Infinity;
    for (const v of farTrain) if (v > maxFar) maxFar = v;
    const threshold = maxFar >= farTarget ? interpolateSlinear(farTrain, thresholds, farTarget) : 0;
    const te = countBelow(dist, issame, test, threshold);
    foldThresholds.push(threshold);
    foldVal.push(te.nPos === 0 ? 0 : te.truePos / te.nPos);
    foldFar.push(te.nNeg === 0 ? 0 : te.falsePos / te.nNeg);
  }
  return { val: numpyMean(foldVal), valStd: numpyStd(foldVal), far: numpyMean(foldFar), foldVal, foldFar, foldThresholds };
}

/** TPR / FPR over all pairs at each threshold (accepted when distance < threshold). */
export function rocCurve(dist: ArrayLike<number>, issame: readonly boolean[], thresholds: readonly number[] = ACCURACY_THRESHOLDS): RocPoints {
  checkPairs(dist, issame);
  const all = Int32Array.from({ length: dist.length }, (_, i) => i);
  const c = acceptCounts(dist, issame, all, thresholds);
  return {
    thresholds: [...thresholds],
    tpr: Array.from(c.pos, (v) => (c.nPos === 0 ? 0 : v / c.nPos)),
    fpr: Array.from(c.neg, (v) => (c.nNeg === 0 ? 0 : v / c.nNeg)),
  };
}

/**
 * TAR at a target FAR over all pairs. With N negative distances sorted ascending (d_0 <= d_1 ...),
 * at most floor(far * N) false accepts are allowed; the threshold is d_floor(far*N), so exactly the
 * negatives strictly below it are accepted. Null when N < 1/far or there is no positive pair.
 */
export function tarAtFar(dist: ArrayLike<number>, issame: readonly boolean[], far: number): TarAtFar {
  checkPairs(dist, issame);
  if (!(far > 0 && far <= 1)) throw new RangeError(`FAR must be in (0, 1], got ${far}`);
  const neg: number[] = [];
  const pos: number[] = [];
  for (let i = 0; i < dist.length; i++) (issame[i] ? pos : neg).push(dist[i]!);
  const allowed = Math.floor(far * neg.length * (1 + 1e-12));
  if (allowed < 1 || pos.length === 0) return { far, tar: null, threshold: null, achievedFar: null };
  const negSorted = Float64Array.from(neg).sort();
  const threshold = allowed >= negSorted.length ? Infinity : negSorted[allowed]!;
  let falseAccepts = 0;
  while (falseAccepts < negSorted.length && negSorted[falseAccepts]! < threshold) falseAccepts++;
  let accepted = 0;
  for (const d of pos) if (d < threshold) accepted++;
  return { far, tar: accepted / pos.length, threshold, achievedFar: falseAccepts / negSorted.length };
}

/**
 * The full protocol. `original` and `flipped` hold 2*P rows (pair i = rows 2i and 2i+1); pass
 * `flipped` null to evaluate without flip fusion (XNorm then covers the original rows only).
 */
export function evaluateVerification(
  original: Embeddings,
  flipped: Embeddings | null,
  issame: readonly boolean[],
  options: VerificationOptions = {},
): VerificationResult {
  const folds = options.folds ?? 10;
  const pairs = issame.length;
  if (pairs === 0) throw new RangeError('no pairs to evaluate');
  const a = toEmbeddingMatrix(original, 'original embeddings');
  if (a.rows !== 2 * pairs) throw new RangeError(`original embeddings have ${a.rows} rows; ${pairs} pairs need ${2 * pairs}`);
  const b = flipped === null ? null : toEmbeddingMatrix(flipped, 'flipped embeddings');
  const xnorm = computeXNorm(a, b);
  const dist = pairSquaredDistances(fuseFlipEmbeddings(a, b));
  const roc = calculateRoc(ACCURACY_THRESHOLDS, dist, issame, folds);
  const val = calculateVal(VAL_THRESHOLDS, dist, issame, VAL_FAR_TARGET, folds);
  const positivePairs = issame.filter(Boolean).length;
  return {
    pairs,
    positivePairs,
    negativePairs: pairs - positivePairs,
    folds,
    accuracy: numpyMean(roc.accuracy),
    std: numpyStd(roc.accuracy),
    foldAccuracies: roc.accuracy,
    bestThresholds: roc.bestThresholdIndex.map((k) => ACCURACY_THRESHOLDS[k]!),
    xnorm,
    valAtFar1e3: val.val,
    valStd: val.valStd,
    far: val.far,
    valThresholds: val.foldThresholds,
    roc: rocCurve(dist, issame, ACCURACY_THRESHOLDS),
    tarAtFar: TAR_FAR_TARGETS.map((f) => tarAtFar(dist, issame, f)),
  };
}
