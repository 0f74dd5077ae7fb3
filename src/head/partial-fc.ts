// The model-parallel classification head (PLSC's dist_* FC, insightface's Partial FC).
//
// Each rank holds the class centres [numLocalClasses, D] of its shard. Per step:
//   X = AllGather(local embeddings), labels likewise (local batch sizes may differ);
//   logits = normalize(X) . normalize(W_shard)^T, margin on the target logit (owning shard only), * s;
//   softmax over all classes from AllReduce(MAX) of row maxima and AllReduce(SUM) of row sums;
//   loss = mean over the global batch of log(sum) + max - target.
// Backward is written out: dW stays local; dX is summed over ranks and each rank keeps its rows.
// Logits are never gathered; the [numLocalClasses, B] buffer exists once and becomes its own
// gradient (or, with chunkSize, not at all: recomputed per tile in backward).
import { Module } from '../torch/nn/module.js';
import { Tensor } from '../torch/tensor.js';
import * as F from '../torch/ops.js';
import { customFunction, noGrad } from '../torch/autograd.js';
import { op } from '../torch/dispatch.js';
import { tidy, keep } from '../torch/scope.js';
import { ProcessGroup } from '../distributed/process-group.js';
import { CombinedMarginLoss, marginForLossType } from './margin.js';
import { sampleClasses, sampledClassCount } from './class-sampler.js';

export interface ShardLayout {
  numClasses: number;
  worldSize: number;
  rank: number;
  /** floor(C / W) + (rank < C mod W ? 1 : 0) */
  numLocalClasses: number;
  /** First global class id of this shard: rank * floor(C / W) + min(rank, C mod W). */
  classOffset: number;
}

/** The class range rank `rank` owns when `numClasses` are split over `worldSize` ranks. */
export function shardLayout(numClasses: number, worldSize: number, rank: number): ShardLayout {
  if (!Number.isInteger(numClasses) || numClasses < 1) throw new RangeError(`numClasses must be a positive integer, got ${numClasses}`);
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new RangeError(`worldSize must be a positive integer, got ${worldSize}`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) throw new RangeError(`rank ${rank} is not in [0, ${worldSize})`);
  if (numClasses < worldSize) throw new RangeError(`numClasses (${numClasses}) must be at least the number of workers (${worldSize})`);
  const base = Math.floor(numClasses / worldSize);
  const extra = numClasses % worldSize;
  return {
    numClasses,
    worldSize,
    rank,
    numLocalClasses: base + (rank < extra ? 1 : 0),
    classOffset: rank * base + Math.min(rank, extra),
  };
}

/** How the shard's weights are updated. */
export interface FusedSgdOptions {
  lr: number;
  momentum?: number;
  weightDecay?: number;
}

export interface PartialFCOptions {
  embeddingSize: number;
  numClasses: number;
  /** Fraction of this shard's centres used per step (positives always included); 1 = all. */
  sampleRate?: number;
  /** A margin, or a PLSC loss type name (arcface, dist_arcface, cosface, softmax, ...). Default ArcFace. */
  margin?: CombinedMarginLoss | string;
  /** The process group; default a group of one. */
  group?: ProcessGroup;
  /** Seeds the class sampling (with the rank and the step). */
  seed?: number;
  /**
   * Keep no [numActive, B] logits between forward and backward: tiles of at most this many classes
   * are recomputed in backward (one more GEMM per step; memory O(chunkSize * B) instead of
   * O(numActive * B)). Unset (or >= the active classes): the logits are kept.
   */
  chunkSize?: number;
  /**
   * Classes processed at a time (default 4096): each tile's logits GEMM, softmax statistics,
   * gradient GEMMs and update run while its data sits in cache.
   */
  updateBlockRows?: number;
  /** Standard deviation of the normal initialization of the centres (PLSC v2 / arcface_torch: 0.01). */
  initStd?: number;
  /**
   * 'dense': backward writes dL/dW into weight.grad (zero rows for unsampled classes) for any optimizer.
   * 'fused': backward applies SGD with momentum to the touched rows only (sparse momentum); no dense
   * gradient is ever allocated. Set the hyperparameters with setFusedSgd() and the lr each step.
   */
  update?: 'dense' | 'fused';
  fusedSgd?: FusedSgdOptions;
  /** Also compute top-1 accuracy of the (pre-margin) cosine over all classes. */
  computeAccuracy?: boolean;
}

export interface PartialFCOutput {
  /** Mean loss over the global batch (same value on every rank). */
  loss: Tensor;
  /** Top-1 accuracy over the global batch, when requested. */
  accuracy: number | null;
  /** Number of class centres of this shard used in the step. */
  numSampled: number;
}

interface LabelStatus {
  code: number;
  index: number;
  value: number;
  batch: number;
}

const LABEL_ERRORS: Record<number, string> = {
  1: 'labels must be an int64 or int32 tensor',
  2: 'labels must be a 1-d tensor with one label per embedding',
  3: 'negative label',
  4: 'label out of range',
  5: 'non-integer label',
  6: 'embeddings have the wrong shape',
};

const NORM_EPS = 1e-12;
const DEFAULT_TILE_ROWS = 4096;

export class PartialFC extends Module<[Tensor, Tensor], PartialFCOutput> {
  readonly embeddingSize: number;
  readonly numClasses: number;
  readonly sampleRate: number;
  readonly margin: CombinedMarginLoss;
  readonly group: ProcessGroup;
  readonly layout: ShardLayout;
  readonly seed: number;
  readonly chunkSize: number;
  readonly updateBlockRows: number;
  readonly update: 'dense' | 'fused';
  computeAccuracy: boolean;
  /** Steps taken (drives the sampling seed; part of the checkpointed state). */
  samplerStep = 0;
  private fusedSgd: Required<FusedSgdOptions> | null = null;

  constructor(options: PartialFCOptions) {
    super();
    const { embeddingSize, numClasses } = options;
    if (!Number.isInteger(embeddingSize) || embeddingSize < 1) throw new RangeError(`embeddingSize must be a positive integer, got ${embeddingSize}`);
    const sampleRate = options.sampleRate ?? 1;
    if (!(sampleRate > 0 && sampleRate <= 1)) throw new RangeError(`sampleRate must be in (0, 1], got ${sampleRate}`);
    this.embeddingSize = embeddingSize;
    this.numClasses = numClasses;
    this.sampleRate = sampleRate;
    this.margin =
      options.margin instanceof CombinedMarginLoss ? options.margin : marginForLossType(options.margin ?? 'dist_arcface').margin;
    this.group = options.group ?? ProcessGroup.local();
    this.layout = shardLayout(numClasses, this.group.worldSize, this.group.rank);
    this.seed = options.seed ?? 0;
    this.chunkSize = options.chunkSize ?? this.layout.numLocalClasses;
    if (!Number.isInteger(this.chunkSize) || this.chunkSize < 1) throw new RangeError(`chunkSize must be a positive integer, got ${this.chunkSize}`);
    this.updateBlockRows = options.updateBlockRows ?? DEFAULT_TILE_ROWS;
    if (!Number.isInteger(this.updateBlockRows) || this.updateBlockRows < 1) throw new RangeError(`updateBlockRows must be a positive integer, got ${this.updateBlockRows}`);
    this.update = options.update ?? 'dense';
    this.computeAccuracy = options.computeAccuracy ?? false;
    const std = options.initStd ?? 0.01;
    const weight = F.mul_(F.randn([this.layout.numLocalClasses, embeddingSize]), std);
    this.registerParameter('weight', weight, this.update === 'dense');
    if (!this.margin.normalized) this.registerParameter('bias', F.zeros([this.layout.numLocalClasses]), this.update === 'dense');
    if (this.update === 'fused') {
      this.registerBuffer('weight_momentum', F.zeros([this.layout.numLocalClasses, embeddingSize]));
      if (!this.margin.normalized) this.registerBuffer('bias_momentum', F.zeros([this.layout.numLocalClasses]));
      if (options.fusedSgd) this.setFusedSgd(options.fusedSgd);
    }
  }

  get numLocalClasses(): number {
    return this.layout.numLocalClasses;
  }
  /** The global id of this shard's first class. */
  get classOffset(): number {
    return this.layout.classOffset;
  }
  get weight(): Tensor {
    return this.parameter('weight');
  }
  get bias(): Tensor | null {
    return this.hasTensor('bias') ? this.parameter('bias') : null;
  }

  /** Hyperparameters of the fused sparse-momentum SGD ('fused' update mode); call with the new lr each step. */
  setFusedSgd(options: FusedSgdOptions): void {
    if (this.update !== 'fused') throw new Error("setFusedSgd: the head was built with update 'dense'");
    const resolved = { lr: options.lr, momentum: options.momentum ?? 0.9, weightDecay: options.weightDecay ?? 5e-4 };
    for (const [name, value] of Object.entries(resolved)) {
      if (!(Number.isFinite(value) && value >= 0)) throw new RangeError(`fused SGD ${name} must be a non-negative number, got ${value}`);
    }
    this.fusedSgd = resolved;
  }

  // Validates labels locally, then exchanges a status with every rank, so that all ranks raise the
  // same error before any large collective (none is left waiting for a peer that gave up).
  private exchangeLabelStatus(embeddings: Tensor, labels: Tensor): { batchSizes: number[]; localLabels: number[] } {
    const status: LabelStatus = { code: 0, index: -1, value: 0, batch: 0 };
    let values: number[] = [];
    const shape = embeddings.shape;
    if (shape.length !== 2 || shape[1] !== this.embeddingSize) {
      status.code = 6;
      status.value = shape[1] ?? -1;
    } else {
      status.batch = shape[0] as number;
      const dtype = labels.dtype;
      if (labels.ndim !== 1 || labels.numel !== status.batch) {
        status.code = 2;
        status.value = labels.numel;
      } else {
        values = labels.toArray();
        const integral = dtype === 'int64' || dtype === 'int32';
        for (let i = 0; i < values.length && status.code === 0; i++) {
          const v = values[i] as number;
          if (!Number.isInteger(v)) Object.assign(status, { code: 5, index: i, value: v });
          else if (v < 0) Object.assign(status, { code: 3, index: i, value: v });
          else if (v >= this.numClasses) Object.assign(status, { code: 4, index: i, value: v });
        }
        if (status.code === 0 && !integral) Object.assign(status, { code: 1, value: 0 });
      }
    }
    const gathered = tidy(() => {
      const local = F.tensor([status.code, status.index, status.value, status.batch], { dtype: 'float64' });
      return this.group.allGather(local).wait().toArray();
    });
    const batchSizes: number[] = [];
    for (let r = 0; r < this.group.worldSize; r++) {
      const [code, index, value, batch] = gathered.slice(4 * r, 4 * r + 4) as [number, number, number, number];
      batchSizes.push(batch);
      if (code === 0) continue;
      const where = this.group.worldSize > 1 ? ` on rank ${r}` : '';
      let detail = '';
      if (code === 3 || code === 4 || code === 5) detail = `: labels[${index}] = ${value}${code === 4 ? ` (numClasses is ${this.numClasses})` : ''}`;
      else if (code === 1) detail = r === this.group.rank ? ` (got ${labels.dtype})` : '';
      else if (code === 2) detail = ` (got ${value} labels)`;
      else if (code === 6) detail = ` (expected [batch, ${this.embeddingSize}])`;
      throw new RangeError(`PartialFC: ${LABEL_ERRORS[code] ?? 'bad input'}${where}${detail}`);
    }
    return { batchSizes, localLabels: values };
  }

  forward(localEmbeddings: Tensor, localLabels: Tensor): PartialFCOutput {
    const { batchSizes } = this.exchangeLabelStatus(localEmbeddings, localLabels);
    const globalBatch = batchSizes.reduce((a, b) => a + b, 0);
    if (globalBatch === 0) throw new RangeError('PartialFC: the global batch is empty');
    const rowStart = batchSizes.slice(0, this.group.rank).reduce((a, b) => a + b, 0);
    const localBatch = batchSizes[this.group.rank] as number;
    const { numLocalClasses, classOffset } = this.layout;

    // Gathered labels decide the sampled set and which targets this shard owns.
    const globalLabels = tidy(() => this.group.allGather(localLabels.to('int64'), { uneven: true }).wait().toArray());
    const owned: { row: number; localClass: number }[] = [];
    for (let row = 0; row < globalLabels.length; row++) {
      const local = (globalLabels[row] as number) - classOffset;
      if (local >= 0 && local < numLocalClasses) owned.push({ row, localClass: local });
    }
    let sampledIndex: Int32Array | null = null;
    if (this.sampleRate < 1 && sampledClassCount(numLocalClasses, this.sampleRate) < numLocalClasses) {
      sampledIndex = sampleClasses(
        owned.map((o) => o.localClass),
        numLocalClasses,
        this.sampleRate,
        { seed: this.seed, rank: this.group.rank, step: this.samplerStep },
      ).index;
    }
    if (this.training) this.samplerStep++;
    const targetRows = owned.map((o) => o.row);
    const targetCols = owned.map((o) => (sampledIndex === null ? o.localClass : sortedPosition(sampledIndex, o.localClass)));
    const targetClasses = owned.map((o) => o.localClass);

    const step = new HeadStep(this, {
      globalBatch,
      rowStart,
      localBatch,
      targetRows,
      targetCols,
      targetClasses,
      sampledIndex,
    });
    const inputs = [localEmbeddings, this.weight, ...(this.bias ? [this.bias] : [])];
    const [loss] = customFunction(
      'PartialFCBackward',
      inputs,
      () => [step.forward(localEmbeddings)],
      ([gradLoss]) => step.backward(gradLoss),
    );
    // Without a graph (no grad, or nothing requires grad) backward never comes: free the step now.
    if (!(loss as Tensor).requiresGrad) step.release();
    return { loss: loss as Tensor, accuracy: step.accuracy, numSampled: sampledIndex?.length ?? numLocalClasses };
  }

  /** @internal used by HeadStep for the fused update */
  fusedHyperparameters(): Required<FusedSgdOptions> {
    if (this.fusedSgd === null) throw new Error('PartialFC: fused update needs setFusedSgd({ lr, momentum, weightDecay }) before backward');
    return this.fusedSgd;
  }

  /** @internal */
  momentumBuffer(name: 'weight_momentum' | 'bias_momentum'): Tensor {
    return this.buffer(name);
  }
}

// Index of `value` in a sorted array that contains it (the sampled set always holds the positives).
function sortedPosition(sorted: Int32Array, value: number): number {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((sorted[mid] as number) < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

interface StepPlan {
  globalBatch: number;
  rowStart: number;
  localBatch: number;
  targetRows: number[];
  /** Position of each owned target in the active set (the shard, or the sampled rows). */
  targetCols: number[];
  /** Shard row of each owned target. */
  targetClasses: number[];
  sampledIndex: Int32Array | null;
}

/** A run of consecutive rows of the active set, processed while it sits in cache. */
interface Tile {
  /** Position of the first row in the active set. */
  start: number;
  length: number;
  /** Shard rows of the tile when sampling (int64 [length]); null when the tile is a slice of the shard. */
  shardRows: Tensor | null;
  /** Owned targets in the tile: their row within the tile, their batch row, their index in the step's target list. */
  targetTileRows: Tensor | null;
  targetBatchRows: Tensor | null;
  targetIndex: Tensor | null;
}

/**
 * One forward/backward of the head; holds what backward needs between the two.
 *
 * Logits are laid out class-major ([numActive, B]) and processed in tiles of a few thousand
 * classes, so every elementwise pass after a tile's GEMM runs on cache-resident data, and the
 * GEMMs themselves are of a shape BLAS runs near peak (one [C, D] x [D, B] call is several times
 * slower here). Each tile keeps exp(logit - tileMax); the global max and sum come from the tile
 * maxima and sums, so no second exp pass is needed. In backward each tile forms dL/dlogits, its
 * share of dL/dX, its weight gradient, and (fused mode) applies SGD to its rows at once.
 */
class HeadStep {
  accuracy: number | null = null;
  private readonly head: PartialFC;
  private readonly plan: StepPlan;
  private readonly kept: Tensor[] = [];
  private features!: Tensor; // Xn (normalized) or X (plain softmax), [B, D]
  private scaledFeaturesTransposed!: Tensor; // s * features^T, [D, B], contiguous
  private featureNorms: Tensor | null = null;
  private inverseWeightNorms: Tensor | null = null; // 1 / |w| of the active rows, [numActive, 1]
  private inverseSquaredNorms: Tensor | null = null; // [numActive, 1]
  private tiles: Tile[] = [];
  private targetValue!: Tensor; // psi(cos) of each owned target
  private targetDerivative!: Tensor;
  /** exp(logits - tileMax), [numActive, B]; null when the logits are recomputed in backward. */
  private exps: Tensor | null = null;
  private tileMax!: Tensor; // [numTiles, B]
  /** exp(tileMax - globalMax) / globalSum, [numTiles, B]: turns a tile's exps into probabilities. */
  private tileScale!: Tensor;

  constructor(head: PartialFC, plan: StepPlan) {
    this.head = head;
    this.plan = plan;
  }

  private keep<T extends Tensor>(t: T): T {
    keep(t);
    this.kept.push(t);
    return t;
  }

  release(): void {
    for (const t of this.kept.splice(0)) t.dispose();
  }

  // The tile's rows of a shard-sized tensor: a view of a slice, or a gathered copy when sampling.
  private static tileRows(tile: Tile, shardTensor: Tensor): Tensor {
    return tile.shardRows === null ? F.narrow(shardTensor, 0, tile.start, tile.length) : F.indexSelect(shardTensor, 0, tile.shardRows);
  }

  // Writes a tile's rows into a shard-sized tensor.
  private static writeTileRows(tile: Tile, shardTensor: Tensor, rows: Tensor): void {
    if (tile.shardRows === null) F.copy_(F.narrow(shardTensor, 0, tile.start, tile.length), rows);
    else F.indexCopy_(shardTensor, 0, tile.shardRows, rows);
  }

  private tileWeight(tile: Tile): Tensor {
    return HeadStep.tileRows(tile, this.head.weight);
  }

  private tileBias(tile: Tile): Tensor {
    return HeadStep.tileRows(tile, this.head.bias as Tensor);
  }

  /**
   * Writes the tile's scaled, margin-applied logits into `out` ([tile.length, B]); with
   * `maxScaledCosine` (forward, when the accuracy is asked for) also folds in the tile's maximum of
   * s * cos per sample.
   */
  private tileLogits(tile: Tile, weight: Tensor, out: Tensor, maxScaledCosine: Tensor | null): void {
    const margin = this.head.margin;
    op('aten::mm', 'out').call([weight, this.scaledFeaturesTransposed, out]);
    if (margin.normalized) {
      // s / |w| per class. A non-target cosine is never clamped: it is within rounding of [-1, 1],
      // and only the targets (computed apart, clamped) go through acos.
      F.mul_(out, F.narrow(this.inverseWeightNorms as Tensor, 0, tile.start, tile.length));
    } else {
      F.add_(out, F.unsqueeze(this.tileBias(tile), 1), margin.s);
    }
    if (maxScaledCosine !== null) F.copy_(maxScaledCosine, F.maximum(maxScaledCosine, F.amax(out, 0)));
    if (tile.targetTileRows !== null) {
      const values = F.mul(F.indexSelect(this.targetValue, 0, tile.targetIndex as Tensor), margin.s);
      F.indexPut_(out, [tile.targetTileRows, tile.targetBatchRows as Tensor], values);
    }
  }

  // 1 / |w| and 1 / |w|^2 of the given rows, [rows, 1] each.
  private static inverseNorms(weight: Tensor): [Tensor, Tensor] {
    const inverse = F.reciprocal(F.clampMin(F.norm(weight, 2, 1, true), NORM_EPS));
    return [inverse, F.mul(inverse, inverse)];
  }

  forward(localEmbeddings: Tensor): Tensor {
    const { head, plan } = this;
    const group = head.group;
    const margin = head.margin;
    return noGrad(() =>
      tidy(() => {
        const gathered = group.allGather(localEmbeddings.detach().contiguous(), { uneven: true }).wait();
        if (margin.normalized) {
          const norms = this.keep(F.clampMin(F.norm(gathered, 2, 1, true), NORM_EPS));
          this.featureNorms = norms;
          this.features = this.keep(F.div(gathered, norms));
        } else {
          this.features = this.keep(gathered);
        }
        this.scaledFeaturesTransposed = this.keep(F.contiguous(F.mul(this.features, margin.s).t()));
        const numActive = plan.sampledIndex?.length ?? head.numLocalClasses;
        const B = plan.globalBatch;

        // Targets owned by this shard: cosine by a row-wise dot product, then psi and its slope.
        const rows = F.tensor(plan.targetRows, { dtype: 'int64' });
        let targetCosine: Tensor;
        if (plan.targetRows.length === 0) {
          targetCosine = F.zeros([0]);
        } else {
          const classes = F.tensor(plan.targetClasses, { dtype: 'int64' });
          const x = F.indexSelect(this.features, 0, rows);
          const w = F.indexSelect(head.weight, 0, classes);
          targetCosine = F.sum(F.mul(x, w), 1);
          if (margin.normalized) {
            F.div_(targetCosine, F.clampMin(F.norm(w, 2, 1), NORM_EPS));
            F.clamp_(targetCosine, -1, 1);
          } else {
            F.add_(targetCosine, F.indexSelect(head.bias as Tensor, 0, classes));
          }
        }
        const { value, derivative } = margin.targetWithDerivative(targetCosine);
        this.targetValue = this.keep(value);
        this.targetDerivative = this.keep(derivative);

        // Tiles: the recompute mode (chunkSize below the active set) keeps no logits at all.
        const recompute = head.chunkSize < numActive;
        const tileRows = Math.max(1, Math.min(head.updateBlockRows, recompute ? head.chunkSize : numActive));
        const sampled = plan.sampledIndex === null ? null : F.tensor(plan.sampledIndex, { dtype: 'int64' });
        const targetsByTile = new Map<number, number[]>();
        plan.targetCols.forEach((col, i) => {
          const tileIndex = Math.floor(col / tileRows);
          const list = targetsByTile.get(tileIndex);
          if (list === undefined) targetsByTile.set(tileIndex, [i]);
          else list.push(i);
        });
        const int64 = (values: number[]): Tensor => this.keep(F.tensor(values, { dtype: 'int64' }));
        for (let start = 0, index = 0; start < numActive; start += tileRows, index++) {
          const length = Math.min(tileRows, numActive - start);
          const targets = targetsByTile.get(index);
          this.tiles.push({
            start,
            length,
            shardRows: sampled === null ? null : this.keep(F.narrow(sampled, 0, start, length)),
            targetTileRows: targets ? int64(targets.map((i) => (plan.targetCols[i] as number) - start)) : null,
            targetBatchRows: targets ? int64(targets.map((i) => plan.targetRows[i] as number)) : null,
            targetIndex: targets ? int64(targets) : null,
          });
        }

        if (margin.normalized) {
          if (sampled === null) {
            // One pass over the whole shard; with sampling, each tile does its gathered rows.
            const [inverse, inverseSquared] = HeadStep.inverseNorms(head.weight);
            this.inverseWeightNorms = this.keep(inverse);
            this.inverseSquaredNorms = this.keep(inverseSquared);
          } else {
            this.inverseWeightNorms = this.keep(F.empty([numActive, 1]));
            this.inverseSquaredNorms = this.keep(F.empty([numActive, 1]));
          }
        }
        if (!recompute) this.exps = this.keep(F.empty([numActive, B]));
        const tileMax = F.empty([this.tiles.length, B]);
        const tileSum = F.empty([this.tiles.length, B]);
        const maxScaledCosine = head.computeAccuracy ? F.full([B], -Infinity) : null;
        this.tiles.forEach((tile, t) => {
          tidy(() => {
            const logits = this.exps !== null ? F.narrow(this.exps, 0, tile.start, tile.length) : F.empty([tile.length, B]);
            const weight = this.tileWeight(tile);
            if (margin.normalized && sampled !== null) {
              const [inverse, inverseSquared] = HeadStep.inverseNorms(weight);
              F.copy_(F.narrow(this.inverseWeightNorms as Tensor, 0, tile.start, tile.length), inverse);
              F.copy_(F.narrow(this.inverseSquaredNorms as Tensor, 0, tile.start, tile.length), inverseSquared);
            }
            this.tileLogits(tile, weight, logits, maxScaledCosine);
            const max = F.narrow(tileMax, 0, t, 1);
            op('aten::amax', 'out').call([logits, [0], true, max]);
            F.exp_(F.sub_(logits, max));
            op('aten::sum', 'IntList_out').call([logits, [0], true, null, F.narrow(tileSum, 0, t, 1)]);
          });
        });
        this.tileMax = this.keep(tileMax);

        const rowMax = F.amax(tileMax, 0);
        this.allReduceMax(rowMax, maxScaledCosine);
        // Each tile's sum, rescaled from its own maximum to the global one.
        const rescale = F.exp(F.sub(tileMax, F.unsqueeze(rowMax, 0)));
        const rowSum = F.sum(F.mul(tileSum, rescale), 0);

        // One AllReduce(SUM) carries the row sums, the target logits and (optionally) target cosines.
        const targetLogits = F.zeros([B]);
        const targetCosines = F.zeros([B]);
        if (rows.numel > 0) {
          F.indexPut_(targetLogits, [rows], F.mul(this.targetValue, margin.s));
          F.indexPut_(targetCosines, [rows], targetCosine);
        }
        const packed = F.cat(head.computeAccuracy ? [rowSum, targetLogits, targetCosines] : [rowSum, targetLogits]);
        group.allReduce(packed, 'sum').wait();
        const [sums, targets, cosines] = F.split(packed, B) as [Tensor, Tensor, Tensor | undefined];
        this.tileScale = this.keep(F.div(rescale, F.unsqueeze(sums, 0)));
        if (maxScaledCosine !== null) {
          // The target cosine comes from a dot product, the maxima from a GEMM: allow their rounding.
          const maxCosine = F.clamp(F.div(maxScaledCosine, margin.s), -1, 1);
          this.accuracy = F.mean(F.ge(F.add(cosines as Tensor, 1e-5), maxCosine).float()).item();
        }
        // loss = mean(log(sum) + max - target)
        return F.mean(F.sub(F.add(F.log(sums), rowMax), targets));
      }),
    );
  }

  private allReduceMax(rowMax: Tensor, maxScaledCosine: Tensor | null): void {
    const group = this.head.group;
    if (maxScaledCosine === null) {
      group.allReduce(rowMax, 'max').wait();
      return;
    }
    const B = this.plan.globalBatch;
    const packed = F.cat([rowMax, maxScaledCosine]);
    group.allReduce(packed, 'max').wait();
    F.copy_(rowMax, F.narrow(packed, 0, 0, B));
    F.copy_(maxScaledCosine, F.narrow(packed, 0, B, B));
  }

  backward(gradLoss: Tensor | null): (Tensor | null)[] {
    const { head, plan } = this;
    const margin = head.margin;
    try {
      return noGrad(() =>
        tidy(() => {
          const scale = gradLoss === null ? 1 : gradLoss.item();
          const coefficient = (scale * margin.s) / plan.globalBatch;
          const B = plan.globalBatch;
          const D = head.embeddingSize;
          const dense = head.update === 'dense';
          const fused = dense ? null : head.fusedHyperparameters();
          const weightGrad = dense ? F.zeros([head.numLocalClasses, D]) : null;
          const biasGrad = dense && head.bias ? F.zeros([head.numLocalClasses]) : null;
          const featureGrad = F.zeros([B, D]);
          const probabilityScale = F.mul(this.tileScale, coefficient);

          const decay = F.full([1], fused?.weightDecay ?? 0);
          this.tiles.forEach((tile, t) => {
            tidy(() => {
              const weight = this.tileWeight(tile);
              // G = dL/dlogits * (1/s chain folded into coefficient), in place on the tile's exps.
              let grad: Tensor;
              if (this.exps !== null) {
                grad = F.narrow(this.exps, 0, tile.start, tile.length);
              } else {
                grad = F.empty([tile.length, B]);
                this.tileLogits(tile, weight, grad, null);
                F.exp_(F.sub_(grad, F.narrow(this.tileMax, 0, t, 1)));
              }
              F.mul_(grad, F.narrow(probabilityScale, 0, t, 1));
              if (tile.targetTileRows !== null) {
                const at = [tile.targetTileRows, tile.targetBatchRows as Tensor];
                const slope = F.indexSelect(this.targetDerivative, 0, tile.targetIndex as Tensor);
                F.indexPut_(grad, at, F.mul(F.sub(F.index(grad, at), coefficient), slope));
              }
              if (margin.normalized) F.mul_(grad, F.narrow(this.inverseWeightNorms as Tensor, 0, tile.start, tile.length));
              // dXn += G^T W
              F.addmm_(featureGrad, grad.t(), weight);
              // dW = G Xn; through the centre normalization dW -= (dW . w) / |w|^2 w, which the
              // update folds into the weight-decay coefficient of w: (wd - (dW . w) / |w|^2).
              const tileWeightGrad = F.mm(grad, this.features);
              let wCoefficient: Tensor | null = null;
              if (margin.normalized) {
                const radial = F.unsqueeze(op('aten::linalg_vecdot').tensor(tileWeightGrad, weight, 1), 1);
                const inverseSquared = F.narrow(this.inverseSquaredNorms as Tensor, 0, tile.start, tile.length);
                wCoefficient = op('aten::addcmul').tensor(decay, radial, inverseSquared, -1);
              }
              const tileBiasGrad = head.bias ? F.sum(grad, 1) : null;
              if (wCoefficient !== null) F.addcmul_(tileWeightGrad, weight, wCoefficient);
              else if (fused !== null && fused.weightDecay !== 0) F.add_(tileWeightGrad, weight, fused.weightDecay);
              if (fused !== null) {
                // torch.optim.SGD on the tile's rows: d = g + wd w; m = mu m + d; w -= lr m.
                this.applySgd(tile, head.weight, weight, head.momentumBuffer('weight_momentum'), tileWeightGrad, fused);
                if (tileBiasGrad !== null) {
                  const bias = this.tileBias(tile);
                  this.applySgd(tile, head.bias as Tensor, bias, head.momentumBuffer('bias_momentum'), tileBiasGrad, fused);
                }
              } else {
                HeadStep.writeTileRows(tile, weightGrad as Tensor, tileWeightGrad);
                if (tileBiasGrad !== null) HeadStep.writeTileRows(tile, biasGrad as Tensor, tileBiasGrad);
              }
            });
          });
          if (this.exps !== null) this.exps.dispose();

          // Through the feature normalization: dX = (dXn - (dXn . Xn) Xn) / |X|.
          let inputGrad = featureGrad;
          if (margin.normalized) {
            const radial = F.sum(F.mul(inputGrad, this.features), 1, true);
            inputGrad = F.div(F.sub(inputGrad, F.mul(this.features, radial)), this.featureNorms as Tensor);
          }
          // Every rank contributed to every row: sum over ranks, keep this rank's rows.
          head.group.allReduce(inputGrad, 'sum').wait();
          const localGrad = F.narrow(inputGrad, 0, plan.rowStart, plan.localBatch).contiguous();

          const result: (Tensor | null)[] = [localGrad, weightGrad];
          if (head.bias) result.push(biasGrad);
          return result;
        }),
      );
    } finally {
      this.release();
    }
  }

  // m = mu m + d; w -= lr m, on the tile's rows of `shardParam` (`param`: the slice, or its gathered copy).
  private applySgd(tile: Tile, shardParam: Tensor, param: Tensor, buffer: Tensor, direction: Tensor, hyper: Required<FusedSgdOptions>): void {
    const momentum = HeadStep.tileRows(tile, buffer);
    op('aten::add', 'out').call([direction, momentum, hyper.momentum, momentum]);
    F.add_(param, momentum, -hyper.lr);
    if (tile.shardRows !== null) {
      HeadStep.writeTileRows(tile, shardParam, param);
      HeadStep.writeTileRows(tile, buffer, momentum);
    }
  }
}
