// The head's fused kernels (fused.ts) written with ordinary operators: what each computes, for the
// parity tests. Slow and allocating; never used in a step.
import * as F from './ops.js';
import type { Tensor } from './tensor.js';
import type { RowSelection, RowSgd, TileTargets } from './fused.js';

export interface TileForwardReference {
  exps: Tensor;
  colMax: Tensor;
  colSum: Tensor;
  /** max(previous, max over the tile of the scaled cosines before the margin) */
  maxScaledCosine: Tensor | null;
}

/** tileForward on a copy of the GEMM output `tile`; `givenMax` plays maxGiven. */
export function tileForwardReference(
  tile: Tensor,
  options: { rowScale?: Tensor | null; rowAdd?: Tensor | null; targets?: TileTargets | null; givenMax?: Tensor | null; maxScaledCosine?: Tensor | null },
): TileForwardReference {
  let x = F.clone(tile);
  if (options.rowScale) x = F.mul(x, F.unsqueeze(options.rowScale, 1));
  if (options.rowAdd) x = F.add(x, F.unsqueeze(options.rowAdd, 1));
  const before = F.amax(x, 0);
  const maxScaledCosine = options.maxScaledCosine ? F.maximum(options.maxScaledCosine, before) : null;
  if (options.targets) F.indexPut_(x, [options.targets.rows, options.targets.cols], options.targets.values);
  const colMax = options.givenMax ? F.clone(options.givenMax) : F.maximum(before, F.amax(x, 0));
  const exps = F.exp(F.sub(x, F.unsqueeze(colMax, 0)));
  return { exps, colMax, colSum: F.sum(exps, 0), maxScaledCosine };
}

/** tileGrad on a copy of `exps`. */
export function tileGradReference(exps: Tensor, colScale: Tensor, rowScale: Tensor | null, targets: TileTargets | null, coefficient: number): Tensor {
  const g = F.mul(exps, F.unsqueeze(colScale, 0));
  if (targets) {
    const at = [targets.rows, targets.cols];
    F.indexPut_(g, at, F.mul(F.sub(F.index(g, at), coefficient), targets.values));
  }
  return rowScale ? F.mul(g, F.unsqueeze(rowScale, 1)) : g;
}

function selectedRows(store: Tensor, rows: RowSelection): Tensor {
  const selected = 'index' in rows ? F.indexSelect(store, 0, rows.index) : F.narrow(store, 0, rows.first, rows.count);
  return F.to(selected, 'float32');
}

/** loadRows: the rows as float32, 1/max(|row|, eps) and its square. */
export function loadRowsReference(store: Tensor, rows: RowSelection, eps: number): { rows: Tensor; inverseNorm: Tensor; inverseSquaredNorm: Tensor } {
  const values = selectedRows(store, rows);
  const inverseNorm = F.reciprocal(F.clampMin(F.norm(values, 2, 1), eps));
  return { rows: values, inverseNorm, inverseSquaredNorm: F.mul(inverseNorm, inverseNorm) };
}

/** rowUpdate in float32: the selected rows' new weight and momentum (stores left unchanged). */
export function rowUpdateReference(
  weight: Tensor,
  momentum: Tensor,
  rows: RowSelection,
  grad: Tensor,
  inverseSquaredNorm: Tensor | null,
  sgd: RowSgd,
): { weight: Tensor; momentum: Tensor } {
  const w = selectedRows(weight, rows);
  const m = selectedRows(momentum, rows);
  const decay = inverseSquaredNorm ? F.sub(F.full([w.shape[0] as number], sgd.weightDecay), F.mul(F.sum(F.mul(grad, w), 1), inverseSquaredNorm)) : F.full([w.shape[0] as number], sgd.weightDecay);
  const direction = F.add(grad, F.mul(w, F.unsqueeze(decay, 1)));
  const newMomentum = F.add(direction, F.mul(m, sgd.momentum));
  return { weight: F.sub(w, F.mul(newMomentum, sgd.lr)), momentum: newMomentum };
}
