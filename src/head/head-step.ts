// One forward/backward of the sharded head over its class tiles (the math of PartialFC, step 3-5 of
// ../shared/REFERENCE.md). Holds what backward needs between the two.
//
// Logits are class-major ([numActive, B]) and processed in tiles of a few thousand classes: per tile
// one GEMM (BLAS, on the shard's rows or on a cache-sized float32 copy of them), then one fused
// native pass (scale, margin on owned targets, exp, column sums); in backward one fused pass forms
// dL/dlogits, two GEMMs give the tile's share of dL/dX and its dL/dW, and (fused update) one more
// pass applies SGD with momentum to the tile's rows in place. No pass of the step reads a shard-sized
// float32 temporary; 16-bit class stores are widened tile by tile.
import { Tensor } from '../torch/tensor.js';
import * as F from '../torch/ops.js';
import { noGrad } from '../torch/autograd.js';
import { tidy, keep } from '../torch/scope.js';
import { loadRows, tileForward, tileGrad, type RowSelection, type TileTargets } from '../torch/fused.js';
import type { ClassStorage } from '../torch/fused.js';
import type { RowSparseSGD } from '../torch/optim/row-sparse-sgd.js';
import type { ProcessGroup } from '../distributed/process-group.js';
import type { CombinedMarginLoss } from './margin.js';

export const NORM_EPS = 1e-12;

/** What a step reads and updates of its head (PartialFC is one). */
export interface ShardedHead {
  readonly embeddingSize: number;
  readonly margin: CombinedMarginLoss;
  readonly group: ProcessGroup;
  readonly seed: number;
  readonly chunkSize: number;
  readonly updateBlockRows: number;
  readonly classStorage: ClassStorage;
  readonly computeAccuracy: boolean;
  readonly numLocalClasses: number;
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  /** Applies the update to each tile's rows in backward (update 'fused'); null: dense gradients. */
  readonly optimizer: RowSparseSGD | null;
}

export interface StepPlan {
  /** The sampler step of this forward: with the seed and rank, it keys the stochastic rounding. */
  step: number;
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
  /** The tile's rows of the shard: a range, or (sampling) an int64 index. */
  rows: RowSelection;
  /** The tile's owned targets, sorted by (tile row, batch row): their index in the step's target list. */
  targetIndex: Tensor | null;
  forwardTargets: TileTargets | null;
  backwardTargets: TileTargets | null;
}

export class HeadStep {
  accuracy: number | null = null;
  private readonly head: ShardedHead;
  private readonly plan: StepPlan;
  private readonly kept: Tensor[] = [];
  private features!: Tensor; // Xn (normalized) or X (plain softmax), [B, D]
  private scaledFeaturesTransposed!: Tensor; // s * features^T, [D, B], contiguous
  private featureNorms: Tensor | null = null;
  private inverseWeightNorms: Tensor | null = null; // 1 / |w| of the active rows, [numActive]
  private inverseSquaredNorms: Tensor | null = null; // [numActive]
  private tiles: Tile[] = [];
  private tileRows = 1;
  /** exp(logits - tileMax), [numActive, B]; null when the logits are recomputed in backward. */
  private exps: Tensor | null = null;
  private tileMax!: Tensor; // [numTiles, B]
  /** exp(tileMax - globalMax) / globalSum, [numTiles, B]: turns a tile's exps into probabilities. */
  private tileScale!: Tensor;

  constructor(head: ShardedHead, plan: StepPlan) {
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

  /** The GEMMs read the shard's own rows (float32, no sampling); otherwise a float32 copy per tile. */
  private get readsShardDirectly(): boolean {
    return this.head.classStorage === 'float32' && this.plan.sampledIndex === null;
  }

  /**
   * The tile's weight rows as float32 for the GEMMs: a view of the shard, or its rows widened into
   * `buffer` (with their inverse norms when `withNorms`).
   */
  private tileWeight(tile: Tile, buffer: Tensor | null, withNorms: boolean): Tensor {
    const weight = this.head.weight;
    if (buffer === null) return F.narrow(weight, 0, tile.start, tile.length);
    const out = F.narrow(buffer, 0, 0, tile.length);
    const norms = withNorms && this.inverseWeightNorms !== null;
    loadRows(weight, tile.rows, out, norms ? this.tileSlice(this.inverseWeightNorms, tile) : null, norms ? this.tileSlice(this.inverseSquaredNorms, tile) : null, NORM_EPS);
    return out;
  }

  private tileSlice(perActiveRow: Tensor | null, tile: Tile): Tensor | null {
    return perActiveRow === null ? null : F.narrow(perActiveRow, 0, tile.start, tile.length);
  }

  private tileBiasRows(tile: Tile): Tensor {
    const bias = this.head.bias as Tensor;
    return 'index' in tile.rows ? F.indexSelect(bias, 0, tile.rows.index) : F.narrow(bias, 0, tile.start, tile.length);
  }

  /** Writes a tile's logits (the tile's GEMM and the forward epilogue) into `out`, [tile.length, B]. */
  private tileLogits(tile: Tile, t: number, weight: Tensor, out: Tensor, stats: { colSum: Tensor; maxScaledCosine: Tensor | null } | null): void {
    const margin = this.head.margin;
    F.mmOut(weight, this.scaledFeaturesTransposed, out);
    tileForward(out, {
      rowScale: this.tileSlice(this.inverseWeightNorms, tile),
      rowAdd: margin.normalized ? null : F.mul(this.tileBiasRows(tile), margin.s),
      targets: tile.forwardTargets,
      colMax: F.narrow(this.tileMax, 0, t, 1),
      maxGiven: stats === null,
      colSum: stats?.colSum ?? null,
      maxScaledCosine: stats?.maxScaledCosine ?? null,
    });
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
          const w = F.to(F.indexSelect(head.weight, 0, classes), 'float32');
          targetCosine = F.sum(F.mul(x, w), 1);
          if (margin.normalized) {
            F.div_(targetCosine, F.clampMin(F.norm(w, 2, 1), NORM_EPS));
            F.clamp_(targetCosine, -1, 1);
          } else {
            F.add_(targetCosine, F.indexSelect(head.bias as Tensor, 0, classes));
          }
        }
        const { value, derivative } = margin.targetWithDerivative(targetCosine);
        const scaledTargetValue = F.mul(value, margin.s);

        // Tiles: the recompute mode (chunkSize below the active set) keeps no logits at all.
        const recompute = head.chunkSize < numActive;
        const tileRows = Math.max(1, Math.min(head.updateBlockRows, recompute ? head.chunkSize : numActive));
        this.tileRows = tileRows;
        this.buildTiles(numActive, tileRows, scaledTargetValue, derivative);

        if (margin.normalized) {
          this.inverseWeightNorms = this.keep(F.empty([numActive]));
          this.inverseSquaredNorms = this.keep(F.empty([numActive]));
          // One pass over the whole shard; otherwise each tile finds its rows' norms as it widens them.
          if (this.readsShardDirectly) loadRows(head.weight, { first: 0, count: numActive }, null, this.inverseWeightNorms, this.inverseSquaredNorms, NORM_EPS);
        }
        if (!recompute) this.exps = this.keep(F.empty([numActive, B]));
        this.tileMax = this.keep(F.empty([this.tiles.length, B]));
        const tileSum = F.empty([this.tiles.length, B]);
        const maxScaledCosine = head.computeAccuracy ? F.full([B], -Infinity) : null;
        const weightBuffer = this.readsShardDirectly ? null : F.empty([tileRows, head.embeddingSize]);
        const logitsBuffer = recompute ? F.empty([tileRows, B]) : null;
        this.forEachTile((tile, t) => {
          const logits = F.narrow((this.exps ?? logitsBuffer) as Tensor, 0, this.exps !== null ? tile.start : 0, tile.length);
          const weight = this.tileWeight(tile, weightBuffer, true);
          this.tileLogits(tile, t, weight, logits, { colSum: F.narrow(tileSum, 0, t, 1), maxScaledCosine });
        });

        const rowMax = F.amax(this.tileMax, 0);
        this.allReduceMax(rowMax, maxScaledCosine);
        // Each tile's sum, rescaled from its own maximum to the global one.
        const rescale = F.exp(F.sub(this.tileMax, F.unsqueeze(rowMax, 0)));
        const rowSum = F.sum(F.mul(tileSum, rescale), 0);

        // One AllReduce(SUM) carries the row sums, the target logits and (optionally) target cosines.
        const targetLogits = F.zeros([B]);
        const targetCosines = F.zeros([B]);
        if (rows.numel > 0) {
          F.indexPut_(targetLogits, [rows], scaledTargetValue);
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

  private buildTiles(numActive: number, tileRows: number, scaledTargetValue: Tensor, derivative: Tensor): void {
    const { plan } = this;
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
      const rows: RowSelection = sampled === null ? { first: start, count: length } : { index: this.keep(F.narrow(sampled, 0, start, length).contiguous()) };
      const targets = targetsByTile.get(index);
      let tile: Tile = { start, length, rows, targetIndex: null, forwardTargets: null, backwardTargets: null };
      if (targets !== undefined) {
        const col = (i: number): number => (plan.targetCols[i] as number) - start;
        const row = (i: number): number => plan.targetRows[i] as number;
        targets.sort((a, b) => col(a) - col(b) || row(a) - row(b));
        const targetIndex = int64(targets);
        const tileRowsOf = int64(targets.map(col));
        const batchRows = int64(targets.map(row));
        tile = {
          ...tile,
          targetIndex,
          forwardTargets: { rows: tileRowsOf, cols: batchRows, values: this.keep(F.indexSelect(scaledTargetValue, 0, targetIndex)) },
          backwardTargets: { rows: tileRowsOf, cols: batchRows, values: this.keep(F.indexSelect(derivative, 0, targetIndex)) },
        };
      }
      this.tiles.push(tile);
    }
  }

  /** The one loop over the class tiles (forward and backward): each tile in its own scope. */
  private forEachTile(body: (tile: Tile, index: number) => void): void {
    this.tiles.forEach((tile, index) => tidy(() => body(tile, index)));
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
          const sgd = head.optimizer;
          const dense = sgd === null;
          const roundingKey = [head.seed, plan.step, head.group.rank];
          const weightGrad = dense ? F.zeros([head.numLocalClasses, D]) : null;
          const biasGrad = dense && head.bias ? F.zeros([head.numLocalClasses]) : null;
          const featureGrad = F.zeros([B, D]);
          const probabilityScale = F.mul(this.tileScale, coefficient);
          const weightBuffer = this.readsShardDirectly ? null : F.empty([this.tileRows, D]);
          const weightGradBuffer = F.empty([this.tileRows, D]);
          const logitsBuffer = this.exps === null ? F.empty([this.tileRows, B]) : null;

          // With kept exps, rows read through a buffer and the fused update, the update itself widens
          // the tile's old rows into the buffer for dXn: the store is read once in backward, not twice.
          const rowsFromUpdate = this.exps !== null && weightBuffer !== null && sgd !== null;
          this.forEachTile((tile, t) => {
            const weight = rowsFromUpdate ? F.narrow(weightBuffer, 0, 0, tile.length) : this.tileWeight(tile, weightBuffer, false);
            let grad: Tensor;
            if (this.exps !== null) {
              grad = F.narrow(this.exps, 0, tile.start, tile.length);
            } else {
              grad = F.narrow(logitsBuffer as Tensor, 0, 0, tile.length);
              this.tileLogits(tile, t, weight, grad, null);
            }
            // G = dL/dlogits (the 1/s of the chain folded into the coefficient), in place on the exps.
            tileGrad(grad, F.narrow(probabilityScale, 0, t, 1), this.tileSlice(this.inverseWeightNorms, tile), tile.backwardTargets, coefficient);
            // dW = G Xn; dXn += G^T W (W as it was before this step's update)
            const tileWeightGrad = F.mmOut(grad, this.features, F.narrow(weightGradBuffer, 0, 0, tile.length));
            if (!rowsFromUpdate) F.addmm_(featureGrad, grad.t(), weight);
            const tileBiasGrad = head.bias ? F.sum(grad, 1) : null;
            const inverseSquared = this.tileSlice(this.inverseSquaredNorms, tile);
            if (sgd !== null) {
              // Through the centre normalization dW -= (dW . w) / |w|^2 w: the kernel folds it into
              // the decay of w, then runs torch.optim.SGD's update on the tile's rows in place.
              sgd.stepRows(head.weight, { rows: tile.rows, grad: tileWeightGrad, inverseSquaredNorm: inverseSquared, previousRows: rowsFromUpdate ? weight : null }, roundingKey);
              if (rowsFromUpdate) F.addmm_(featureGrad, grad.t(), weight);
              if (tileBiasGrad !== null) sgd.stepRows(head.bias as Tensor, { rows: tile.rows, grad: tileBiasGrad }, roundingKey);
            } else {
              if (inverseSquared !== null) {
                const radial = F.mul(F.sum(F.mul(tileWeightGrad, weight), 1), inverseSquared);
                F.sub_(tileWeightGrad, F.mul(weight, F.unsqueeze(radial, 1)));
              }
              HeadStep.writeTileRows(tile, weightGrad as Tensor, tileWeightGrad);
              if (tileBiasGrad !== null) HeadStep.writeTileRows(tile, biasGrad as Tensor, tileBiasGrad);
            }
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

  // Writes a tile's rows into a shard-sized float32 tensor.
  private static writeTileRows(tile: Tile, shardTensor: Tensor, rows: Tensor): void {
    if ('index' in tile.rows) F.indexCopy_(shardTensor, 0, tile.rows.index, rows);
    else F.copy_(F.narrow(shardTensor, 0, tile.start, tile.length), rows);
  }
}
