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
import { customFunction } from '../torch/autograd.js';
import { tidy } from '../torch/scope.js';
import { storeRows, CLASS_STORAGES, type ClassStorage } from '../torch/fused.js';
import { RowSparseSGD } from '../torch/optim/row-sparse-sgd.js';
import { ProcessGroup } from '../distributed/process-group.js';
import { agreeOnInput } from '../distributed/agree.js';
import { CombinedMarginLoss, marginForLossType } from './margin.js';
import { sampleClasses, sampledClassCount } from './class-sampler.js';
import { shardLayout, type ShardLayout } from './shard-layout.js';
import { HeadStep } from './head-step.js';
import { positiveInteger } from '../util/validate.js';

export { CLASS_STORAGES, type ClassStorage } from '../torch/fused.js';

/** Hyperparameters of the shard's row-sparse SGD (momentum default 0.9, weight decay 5e-4). */
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
   * gradient is ever allocated. The update is `optimizer` (a RowSparseSGD built from fusedSgd):
   * set its param groups' lr each step, as for the backbone's SGD.
   */
  update?: 'dense' | 'fused';
  /** Required with update 'fused'. */
  fusedSgd?: FusedSgdOptions;
  /** Also compute top-1 accuracy of the (pre-margin) cosine over all classes. */
  computeAccuracy?: boolean;
  /**
   * dtype of the class centres and their momentum (default float32). 16-bit stores halve the bytes
   * per class; every GEMM and update still computes in float32, a tile at a time; bfloat16 writes
   * round stochastically (keyed by seed, step, rank and row, so a resumed run repeats them).
   * 16-bit needs update 'fused'.
   */
  classStorage?: ClassStorage;
}

export interface PartialFCOutput {
  /** Mean loss over the global batch (same value on every rank). */
  loss: Tensor;
  /** Top-1 accuracy over the global batch, when requested. */
  accuracy: number | null;
  /** Number of class centres of this shard used in the step. */
  numSampled: number;
}

const DEFAULT_TILE_ROWS = 4096;
// Rows initialized at a time into a 16-bit store (a float32 tile of them exists at once).
const INIT_TILE_ROWS = 4096;
// Stream of the rounding bits of initialization (the update uses 0 for weight, 1 for momentum).
const INIT_ROUNDING_STREAM = 2;

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
  readonly classStorage: ClassStorage;
  computeAccuracy: boolean;
  /**
   * The sparse-momentum update of update 'fused' (null for 'dense'). Group 0 holds the weight; group 1
   * (plain softmax only) the bias, without weight decay. Its momentum buffers are this head's
   * weight_momentum and bias_momentum, checkpointed with the shard.
   */
  readonly optimizer: RowSparseSGD | null = null;
  /** Steps taken (drives the sampling seed; part of the checkpointed state). */
  samplerStep = 0;

  constructor(options: PartialFCOptions) {
    super();
    const { embeddingSize, numClasses } = options;
    positiveInteger(embeddingSize, 'embeddingSize');
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
    positiveInteger(this.chunkSize, 'chunkSize');
    this.updateBlockRows = options.updateBlockRows ?? DEFAULT_TILE_ROWS;
    positiveInteger(this.updateBlockRows, 'updateBlockRows');
    this.update = options.update ?? 'dense';
    this.computeAccuracy = options.computeAccuracy ?? false;
    this.classStorage = options.classStorage ?? 'float32';
    if (!CLASS_STORAGES.includes(this.classStorage)) throw new RangeError(`classStorage must be one of ${CLASS_STORAGES.join(', ')}, got ${String(this.classStorage)}`);
    if (this.classStorage !== 'float32' && this.update !== 'fused') throw new RangeError(`classStorage '${this.classStorage}' needs update 'fused' (a dense gradient would be stored in 16 bits)`);
    const std = options.initStd ?? 0.01;
    this.registerParameter('weight', this.initialWeight(std), this.update === 'dense');
    if (!this.margin.normalized) this.registerParameter('bias', F.zeros([this.layout.numLocalClasses]), this.update === 'dense');
    if (this.update === 'fused') {
      if (options.fusedSgd === undefined) throw new RangeError("update 'fused' needs fusedSgd: { lr, momentum?, weightDecay? } (the SGD that backward applies to the shard's rows)");
      const { lr, momentum, weightDecay } = options.fusedSgd;
      const bias = this.bias;
      this.optimizer = new RowSparseSGD([{ params: [this.weight] }, ...(bias ? [{ params: [bias], weightDecay: 0 }] : [])], {
        lr,
        momentum: momentum ?? 0.9,
        weightDecay: weightDecay ?? 5e-4,
      });
      this.registerBuffer('weight_momentum', this.optimizer.momentumBuffer(this.weight));
      if (bias) this.registerBuffer('bias_momentum', this.optimizer.momentumBuffer(bias));
    }
  }

  // Normal(0, std) centres. A 16-bit store is filled a tile at a time (no shard-sized float32 copy).
  private initialWeight(std: number): Tensor {
    const rows = this.layout.numLocalClasses;
    if (this.classStorage === 'float32') return F.mul_(F.randn([rows, this.embeddingSize]), std);
    const weight = F.empty([rows, this.embeddingSize], { dtype: this.classStorage });
    for (let first = 0; first < rows; first += INIT_TILE_ROWS) {
      const count = Math.min(INIT_TILE_ROWS, rows - first);
      tidy(() => storeRows(weight, { first, count }, F.mul_(F.randn([count, this.embeddingSize]), std), [this.seed, this.group.rank], INIT_ROUNDING_STREAM));
    }
    return weight;
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

  // What is wrong with this rank's input, or null (see agreeOnInput: every rank raises it).
  private inputProblem(embeddings: Tensor, labels: Tensor): string | null {
    const shape = embeddings.shape;
    if (shape.length !== 2 || shape[1] !== this.embeddingSize) return `embeddings have the wrong shape [${shape.join(', ')}] (expected [batch, ${this.embeddingSize}])`;
    if (labels.ndim !== 1 || labels.numel !== shape[0]) return `labels must be a 1-d tensor with one label per embedding (got ${labels.numel} labels)`;
    const values = labels.toArray();
    for (let i = 0; i < values.length; i++) {
      const v = values[i] as number;
      if (!Number.isInteger(v)) return `non-integer label: labels[${i}] = ${v}`;
      if (v < 0) return `negative label: labels[${i}] = ${v}`;
      if (v >= this.numClasses) return `label out of range: labels[${i}] = ${v} (numClasses is ${this.numClasses})`;
    }
    if (labels.dtype !== 'int64' && labels.dtype !== 'int32') return `labels must be an int64 or int32 tensor (got ${labels.dtype})`;
    return null;
  }

  forward(localEmbeddings: Tensor, localLabels: Tensor): PartialFCOutput {
    agreeOnInput(this.group, this.inputProblem(localEmbeddings, localLabels), 'PartialFC');
    // Gathered labels give the local batch sizes, the sampled set and which targets this shard owns.
    const { batchSizes, globalLabels } = tidy(() => {
      const perRank = this.group.allGatherList(localLabels.to('int64'), { uneven: true }).wait();
      return { batchSizes: perRank.map((t) => t.numel), globalLabels: perRank.flatMap((t) => t.toArray()) };
    });
    const globalBatch = batchSizes.reduce((a, b) => a + b, 0);
    if (globalBatch === 0) throw new RangeError('PartialFC: the global batch is empty');
    const rowStart = batchSizes.slice(0, this.group.rank).reduce((a, b) => a + b, 0);
    const localBatch = batchSizes[this.group.rank] as number;
    const { numLocalClasses, classOffset } = this.layout;

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
    const samplerStep = this.samplerStep;
    if (this.training) this.samplerStep++;
    const targetRows = owned.map((o) => o.row);
    const targetCols = owned.map((o) => (sampledIndex === null ? o.localClass : sortedPosition(sampledIndex, o.localClass)));
    const targetClasses = owned.map((o) => o.localClass);

    const step = new HeadStep(this, {
      step: samplerStep,
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
