// Fused row kernels of the sharded classification head (native/src/head_kernels.h), typed.
// Each does in one pass over cache-resident rows what would otherwise be several libtorch operators;
// fused-reference.ts computes the same from ordinary operators (the parity tests compare the two).
import { native, type NativeTensor } from './native.js';
import type { Tensor } from './tensor.js';

/** How class rows (weight and momentum of a head shard) are stored; math is float32 per tile. */
export type ClassStorage = 'float32' | 'bfloat16' | 'float16';
export const CLASS_STORAGES: readonly ClassStorage[] = ['float32', 'bfloat16', 'float16'];

/** Owned target logits of a tile, sorted by (row, col); each batch column appears at most once. */
export interface TileTargets {
  /** int64 [n]: row of the tile (class). */
  rows: Tensor;
  /** int64 [n]: column of the tile (batch row). */
  cols: Tensor;
  /** float32 [n]: forward: the margin-applied target logit; backward: the margin's slope. */
  values: Tensor;
}

/** Rows of a [N, D] class store: `index` (int64, each in [0, N)) or the range [first, first + count). */
export type RowSelection = { index: Tensor } | { first: number; count: number };

export interface RowSgd {
  lr: number;
  momentum: number;
  weightDecay: number;
}

interface HeadKernels {
  headTileForward(
    tile: NativeTensor,
    rowScale: NativeTensor | null,
    rowAdd: NativeTensor | null,
    targetRows: NativeTensor | null,
    targetCols: NativeTensor | null,
    targetValues: NativeTensor | null,
    colMax: NativeTensor,
    maxGiven: boolean,
    colSum: NativeTensor | null,
    maxScaledCosine: NativeTensor | null,
  ): void;
  headTileGrad(
    tile: NativeTensor,
    colScale: NativeTensor,
    rowScale: NativeTensor | null,
    targetRows: NativeTensor | null,
    targetCols: NativeTensor | null,
    targetSlopes: NativeTensor | null,
    coefficient: number,
  ): void;
  headLoadRows(
    store: NativeTensor,
    index: NativeTensor | null,
    first: number,
    count: number,
    out: NativeTensor | null,
    inverseNorm: NativeTensor | null,
    inverseSquaredNorm: NativeTensor | null,
    eps: number,
  ): void;
  headRowUpdate(
    weight: NativeTensor,
    momentum: NativeTensor,
    index: NativeTensor | null,
    first: number,
    count: number,
    grad: NativeTensor,
    inverseSquaredNorm: NativeTensor | null,
    lr: number,
    momentumFactor: number,
    weightDecay: number,
    key: number[],
    previousRows: NativeTensor | null,
  ): void;
  headStoreRows(store: NativeTensor, index: NativeTensor | null, first: number, count: number, values: NativeTensor, key: number[], stream: number): void;
  headKernelThreads(tasks: number): number;
}

const kernels = native as unknown as HeadKernels;

const handleOf = (t: Tensor | null | undefined): NativeTensor | null => (t === null || t === undefined ? null : t.handle);

function selection(rows: RowSelection): [NativeTensor | null, number, number] {
  return 'index' in rows ? [rows.index.handle, 0, rows.index.numel] : [null, rows.first, rows.count];
}

export interface TileForwardOptions {
  /** float32 [rows]: multiplies each row (1/|w| of the class: the GEMM gave s * w . xn). */
  rowScale?: Tensor | null;
  /** float32 [rows]: added to each row after the scale (s * bias for plain softmax). */
  rowAdd?: Tensor | null;
  targets?: TileTargets | null;
  /** float32 [cols]: written (the column maxima before and after the margin), or read with maxGiven. */
  colMax: Tensor;
  maxGiven?: boolean;
  /** float32 [cols]: written, the column sums of the exps. */
  colSum?: Tensor | null;
  /** float32 [cols]: max-folded with the scaled cosines before the margin. */
  maxScaledCosine?: Tensor | null;
}

/**
 * Forward epilogue over a class-major logits tile [rows, B], in place: scale (and add) per row,
 * the margin-applied target logits, exp(x - colMax) and the column sums, in two passes.
 */
export function tileForward(tile: Tensor, options: TileForwardOptions): void {
  const t = options.targets ?? null;
  kernels.headTileForward(
    tile.handle,
    handleOf(options.rowScale),
    handleOf(options.rowAdd),
    handleOf(t?.rows),
    handleOf(t?.cols),
    handleOf(t?.values),
    options.colMax.handle,
    options.maxGiven ?? false,
    handleOf(options.colSum),
    handleOf(options.maxScaledCosine),
  );
}

/**
 * dL/dlogits from a tile's exps, in place: g = e * colScale[b]; at a target g = (g - c) * slope;
 * then g *= rowScale[t] when given.
 */
export function tileGrad(tile: Tensor, colScale: Tensor, rowScale: Tensor | null, targets: TileTargets | null, coefficient: number): void {
  kernels.headTileGrad(tile.handle, colScale.handle, handleOf(rowScale), handleOf(targets?.rows), handleOf(targets?.cols), handleOf(targets?.values), coefficient);
}

/**
 * Selected rows of a class store (any ClassStorage) as float32 into `out` [count, D] (null: none),
 * and/or 1/max(|row|, eps) and its square into [count] float32 tensors.
 */
export function loadRows(store: Tensor, rows: RowSelection, out: Tensor | null, inverseNorm: Tensor | null, inverseSquaredNorm: Tensor | null, eps: number): void {
  const [index, first, count] = selection(rows);
  kernels.headLoadRows(store.handle, index, first, count, handleOf(out), handleOf(inverseNorm), handleOf(inverseSquaredNorm), eps);
}

/**
 * SGD with momentum on selected rows of weight and momentum stores (same dtype), in place:
 * decay = weightDecay - (grad . w) * inverseSquaredNorm (when given); d = grad + decay * w;
 * m = d + momentum * m; w -= lr * m. bfloat16 writes round stochastically with bits from
 * (key, row): the same key gives the same result. `previousRows` (float32 [count, D]) receives the
 * rows' weights before the update, widened as loadRows would give them.
 */
export function rowUpdate(
  weight: Tensor,
  momentum: Tensor,
  rows: RowSelection,
  grad: Tensor,
  inverseSquaredNorm: Tensor | null,
  sgd: RowSgd,
  key: readonly number[],
  previousRows: Tensor | null = null,
): void {
  const [index, first, count] = selection(rows);
  kernels.headRowUpdate(weight.handle, momentum.handle, index, first, count, grad.handle, handleOf(inverseSquaredNorm), sgd.lr, sgd.momentum, sgd.weightDecay, checkedKey(key), handleOf(previousRows));
}

/** Writes float32 rows into selected rows of a store with its rounding (bfloat16: stochastic from (key, row, stream)). */
export function storeRows(store: Tensor, rows: RowSelection, values: Tensor, key: readonly number[], stream = 0): void {
  const [index, first, count] = selection(rows);
  kernels.headStoreRows(store.handle, index, first, count, values.handle, checkedKey(key), stream);
}

function checkedKey(key: readonly number[]): number[] {
  for (const part of key) {
    if (!Number.isSafeInteger(part) || part < 0) throw new RangeError(`rounding key parts must be non-negative safe integers, got ${part}`);
  }
  return [...key];
}

/**
 * How many threads the kernels' parallel loop runs `tasks` units of work on: libtorch's intra-op
 * threads (`getNumThreads()`, at most `tasks`). The addon must be compiled with OpenMP for this:
 * without it at::parallel_for silently runs every kernel on the calling thread alone.
 */
export function kernelThreadCount(tasks: number): number {
  return kernels.headKernelThreads(tasks);
}
