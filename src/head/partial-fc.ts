// The model-parallel classification head (PLSC's dist_* FC, insightface's Partial FC).
//
// Each rank holds the class centres [numLocalClasses, D] of its shard. Per step:
//   X = AllGather(local embeddings), labels likewise (local batch sizes may differ);
//   logits = normalize(X) . normalize(W_shard)^T, margin on the target logit (owning shard only), * s;
//   softmax over all classes from AllReduce(MAX) of row maxima and AllReduce(SUM) of row sums;
//   loss = mean over the global batch of log(sum) + max - target.
// Backward is written out: dW stays local; dX is summed over ranks and each rank keeps its rows.
// Logits are never gathered; the [B, numLocalClasses] buffer exists once and becomes its own gradient.
import { Module } from '../torch/nn/module.js';
import { Tensor } from '../torch/tensor.js';
import * as F from '../torch/ops.js';
import { customFunction, noGrad } from '../torch/autograd.js';
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
  /** Process the shard in chunks of this many classes (online max/sum, logits recomputed in backward). */
  chunkSize?: number;
  /** Rows of the shard whose weight gradient is formed and applied at a time (default 32768). */
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
const DEFAULT_UPDATE_CHUNK = 32768;

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
    this.updateBlockRows = options.updateBlockRows ?? DEFAULT_UPDATE_CHUNK;
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

    const step = new HeadStep(this, {
      globalBatch,
      rowStart,
      localBatch,
      targetRows,
      targetCols,
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
  targetCols: number[];
  sampledIndex: Int32Array | null;
}

interface Chunk {
  start: number;
  length: number;
  /** Target entries inside this chunk: rows and columns relative to the chunk. */
  rows: Tensor;
  cols: Tensor;
  /** Positions of these targets in the step's target list. */
  which: Tensor;
}

/** One forward/backward of the head; holds what backward needs between the two. */
class HeadStep {
  accuracy: number | null = null;
  private readonly head: PartialFC;
  private readonly plan: StepPlan;
  private readonly kept: Tensor[] = [];
  private features!: Tensor; // Xn (normalized) or X (plain softmax)
  private featureNorms: Tensor | null = null;
  private activeWeight!: Tensor;
  private activeBias: Tensor | null = null;
  private inverseWeightNorms: Tensor | null = null;
  private sampledIndex: Tensor | null = null;
  private chunks: Chunk[] = [];
  private targetValue!: Tensor; // psi(cos) of each owned target
  private targetDerivative!: Tensor;
  private rowMax!: Tensor;
  private rowSum!: Tensor;
  private singleChunkExp: Tensor | null = null;

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

  /** Scaled, margin-applied logits of a chunk of the active classes, [B, chunk.length]. */
  private chunkLogits(chunk: Chunk, maxCosine: Tensor | null): Tensor {
    const margin = this.head.margin;
    const weight = F.narrow(this.activeWeight, 0, chunk.start, chunk.length);
    let logits: Tensor;
    if (margin.normalized) {
      logits = F.mm(this.features, weight.t());
      F.mul_(logits, F.narrow(this.inverseWeightNorms as Tensor, 0, chunk.start, chunk.length));
      F.clamp_(logits, -1, 1);
    } else {
      logits = F.addmm(F.narrow(this.activeBias as Tensor, 0, chunk.start, chunk.length), this.features, weight.t());
    }
    if (maxCosine !== null) {
      const chunkMax = F.amax(logits, 1);
      const merged = F.maximum(maxCosine, chunkMax);
      F.copy_(maxCosine, merged);
    }
    if (chunk.rows.numel > 0) F.indexPut_(logits, [chunk.rows, chunk.cols], F.indexSelect(this.targetValue, 0, chunk.which));
    if (margin.s !== 1) F.mul_(logits, margin.s);
    return logits;
  }

  forward(localEmbeddings: Tensor): Tensor {
    const { head, plan } = this;
    const group = head.group;
    const margin = head.margin;
    return tidy(() => {
      const gathered = group.allGather(localEmbeddings.detach().contiguous(), { uneven: true }).wait();
      if (margin.normalized) {
        const norms = this.keep(F.clampMin(F.norm(gathered, 2, 1, true), NORM_EPS));
        this.featureNorms = norms;
        this.features = this.keep(F.div(gathered, norms));
      } else {
        this.features = this.keep(gathered);
      }
      if (plan.sampledIndex !== null) {
        this.sampledIndex = this.keep(F.tensor(plan.sampledIndex, { dtype: 'int64' }));
        this.activeWeight = this.keep(F.indexSelect(head.weight, 0, this.sampledIndex));
        if (head.bias) this.activeBias = this.keep(F.indexSelect(head.bias, 0, this.sampledIndex));
      } else {
        this.activeWeight = head.weight.detach();
        this.keep(this.activeWeight);
        if (head.bias) this.activeBias = this.keep(head.bias.detach());
      }
      const numActive = this.activeWeight.shape[0] as number;
      if (margin.normalized) {
        this.inverseWeightNorms = this.keep(F.reciprocal(F.clampMin(F.norm(this.activeWeight, 2, 1), NORM_EPS)));
      }

      // Targets owned by this shard: cosine by a row-wise dot product, then psi and its slope.
      const rows = F.tensor(plan.targetRows, { dtype: 'int64' });
      const cols = F.tensor(plan.targetCols, { dtype: 'int64' });
      let targetCosine: Tensor;
      if (plan.targetRows.length === 0) {
        targetCosine = F.zeros([0]);
      } else {
        const x = F.indexSelect(this.features, 0, rows);
        const w = F.indexSelect(this.activeWeight, 0, cols);
        targetCosine = F.sum(F.mul(x, w), 1);
        if (margin.normalized) {
          F.mul_(targetCosine, F.indexSelect(this.inverseWeightNorms as Tensor, 0, cols));
          F.clamp_(targetCosine, -1, 1);
        } else {
          F.add_(targetCosine, F.indexSelect(this.activeBias as Tensor, 0, cols));
        }
      }
      const { value, derivative } = margin.targetWithDerivative(targetCosine);
      this.targetValue = this.keep(value);
      this.targetDerivative = this.keep(derivative);

      const chunkSize = Math.min(head.chunkSize, Math.max(numActive, 1));
      const colsArray = plan.targetCols;
      for (let start = 0; start < numActive; start += chunkSize) {
        const length = Math.min(chunkSize, numActive - start);
        const which: number[] = [];
        for (let i = 0; i < colsArray.length; i++) {
          const c = colsArray[i] as number;
          if (c >= start && c < start + length) which.push(i);
        }
        this.chunks.push({
          start,
          length,
          rows: this.keep(F.tensor(which.map((i) => plan.targetRows[i] as number), { dtype: 'int64' })),
          cols: this.keep(F.tensor(which.map((i) => (colsArray[i] as number) - start), { dtype: 'int64' })),
          which: this.keep(F.tensor(which, { dtype: 'int64' })),
        });
      }

      const B = plan.globalBatch;
      const maxCosine = head.computeAccuracy ? F.full([B], -2) : null;
      const rowMax = F.full([B], -Infinity);
      const rowSum = F.zeros([B]);
      if (this.chunks.length === 1) {
        const logits = this.keep(this.chunkLogits(this.chunks[0] as Chunk, maxCosine));
        F.copy_(rowMax, F.amax(logits, 1));
        this.allReduceMax(rowMax, maxCosine);
        F.sub_(logits, F.unsqueeze(rowMax, 1));
        F.exp_(logits);
        F.copy_(rowSum, F.sum(logits, 1));
        this.singleChunkExp = logits;
      } else {
        // Online max/sum over chunks; logits are recomputed in backward.
        for (const chunk of this.chunks) {
          tidy(() => {
            const logits = this.chunkLogits(chunk, maxCosine);
            const newMax = F.maximum(rowMax, F.amax(logits, 1));
            F.mul_(rowSum, F.exp(F.sub(rowMax, newMax)));
            F.add_(rowSum, F.sum(F.exp(F.sub(logits, F.unsqueeze(newMax, 1))), 1));
            F.copy_(rowMax, newMax);
          });
        }
        const localMax = F.clone(rowMax);
        this.allReduceMax(rowMax, maxCosine);
        F.mul_(rowSum, F.exp(F.sub(localMax, rowMax)));
      }
      this.rowMax = this.keep(rowMax);

      // One AllReduce(SUM) carries the row sums, the target logits and (optionally) target cosines.
      const targetLogits = F.zeros([B]);
      const targetCosines = F.zeros([B]);
      if (rows.numel > 0) {
        F.indexPut_(targetLogits, [rows], F.mul(this.targetValue, margin.s));
        F.indexPut_(targetCosines, [rows], targetCosine);
      }
      const packed = F.cat(head.computeAccuracy ? [rowSum, targetLogits, targetCosines] : [rowSum, targetLogits]);
      group.allReduce(packed, 'sum').wait();
      const [sums, targets, cosines] = F.split(packed, B);
      this.rowSum = this.keep(F.clone(sums as Tensor));
      if (maxCosine !== null) {
        // The target cosine comes from a dot product, the maxima from a GEMM: allow their rounding.
        this.accuracy = F.mean(F.ge(F.add(cosines as Tensor, 1e-5), maxCosine).float()).item();
      }
      // loss = mean(log(sum) + max - target)
      return F.mean(F.sub(F.add(F.log(this.rowSum), this.rowMax), targets as Tensor));
    });
  }

  private allReduceMax(rowMax: Tensor, maxCosine: Tensor | null): void {
    const group = this.head.group;
    if (maxCosine === null) {
      group.allReduce(rowMax, 'max').wait();
      return;
    }
    const B = this.plan.globalBatch;
    const packed = F.cat([rowMax, maxCosine]);
    group.allReduce(packed, 'max').wait();
    F.copy_(rowMax, F.narrow(packed, 0, 0, B));
    F.copy_(maxCosine, F.narrow(packed, 0, B, B));
  }

  backward(gradLoss: Tensor | null): (Tensor | null)[] {
    const { head, plan } = this;
    const margin = head.margin;
    try {
      return noGrad(() =>
        tidy(() => {
          const scale = gradLoss === null ? 1 : gradLoss.item();
          const coefficient = (scale * margin.s) / plan.globalBatch;
          const rowScale = F.unsqueeze(F.div(F.fullLike(this.rowSum, coefficient), this.rowSum), 1);
          const D = head.embeddingSize;
          const numActive = this.activeWeight.shape[0] as number;
          const dense = head.update === 'dense';
          const weightGrad = dense ? F.zeros([numActive, D]) : null;
          const biasGrad = dense && this.activeBias ? F.zeros([numActive]) : null;
          const featureGrad = F.zeros([plan.globalBatch, D]);

          for (const chunk of this.chunks) {
            tidy(() => {
              // G = dL/dcos for the chunk (in place on the exp(logits - max) buffer).
              let grad: Tensor;
              if (this.singleChunkExp !== null) {
                grad = this.singleChunkExp;
              } else {
                grad = this.chunkLogits(chunk, null);
                F.sub_(grad, F.unsqueeze(this.rowMax, 1));
                F.exp_(grad);
              }
              F.mul_(grad, rowScale);
              if (chunk.rows.numel > 0) {
                const atTargets = F.sub(F.index(grad, [chunk.rows, chunk.cols]), coefficient);
                F.indexPut_(grad, [chunk.rows, chunk.cols], F.mul(atTargets, F.indexSelect(this.targetDerivative, 0, chunk.which)));
              }
              const weight = F.narrow(this.activeWeight, 0, chunk.start, chunk.length);
              if (margin.normalized) F.mul_(grad, F.narrow(this.inverseWeightNorms as Tensor, 0, chunk.start, chunk.length));
              // dX (normalized features) += G' W
              F.addmm_(featureGrad, grad, weight);
              // dW = G'^T X in row blocks, so no [numActive, D] gradient (or temporary) ever exists:
              // each block is projected (normalized centres) and then applied or stored.
              for (let offset = 0; offset < chunk.length; offset += head.updateBlockRows) {
                tidy(() => {
                  const rows = Math.min(head.updateBlockRows, chunk.length - offset);
                  const block: Chunk = { ...chunk, start: chunk.start + offset, length: rows };
                  const blockGrad = F.narrow(grad, 1, offset, rows);
                  const blockWeight = F.narrow(weight, 0, offset, rows);
                  const weightBlockGrad = F.mm(blockGrad.t(), this.features);
                  if (margin.normalized) {
                    const inverse = F.narrow(this.inverseWeightNorms as Tensor, 0, block.start, rows);
                    const radial = F.mul(F.sum(F.mul(weightBlockGrad, blockWeight), 1), F.mul(inverse, inverse));
                    F.sub_(weightBlockGrad, F.mul(blockWeight, F.unsqueeze(radial, 1)));
                  }
                  const biasBlockGrad = this.activeBias ? F.sum(blockGrad, 0) : null;
                  if (dense) {
                    F.copy_(F.narrow(weightGrad as Tensor, 0, block.start, rows), weightBlockGrad);
                    if (biasBlockGrad) F.copy_(F.narrow(biasGrad as Tensor, 0, block.start, rows), biasBlockGrad);
                  } else {
                    this.fusedUpdate(block, weightBlockGrad, biasBlockGrad);
                  }
                });
              }
            });
          }
          if (this.singleChunkExp !== null) this.singleChunkExp.dispose();

          // Through the feature normalization: dX = (dXn - (dXn . Xn) Xn) / |X|.
          let inputGrad = featureGrad;
          if (margin.normalized) {
            const radial = F.sum(F.mul(inputGrad, this.features), 1, true);
            inputGrad = F.div(F.sub(inputGrad, F.mul(this.features, radial)), this.featureNorms as Tensor);
          }
          // Every rank contributed to every row: sum over ranks, keep this rank's rows.
          head.group.allReduce(inputGrad, 'sum').wait();
          const localGrad = F.narrow(inputGrad, 0, plan.rowStart, plan.localBatch).contiguous();

          const result: (Tensor | null)[] = [localGrad];
          result.push(dense ? this.scatterToShard(weightGrad as Tensor) : null);
          if (head.bias) result.push(dense ? this.scatterToShard(biasGrad as Tensor) : null);
          return result;
        }),
      );
    } finally {
      this.release();
    }
  }

  // Dense gradients of the sampled rows placed into a zero gradient of the whole shard.
  private scatterToShard(activeGrad: Tensor): Tensor {
    if (this.sampledIndex === null) return activeGrad;
    const full = F.zeros([this.head.numLocalClasses, ...activeGrad.shape.slice(1)]);
    F.indexCopy_(full, 0, this.sampledIndex, activeGrad);
    return full;
  }

  // torch.optim.SGD's rule on the touched rows only: d = g + wd*w; m = mu*m + d; w -= lr*m.
  private fusedUpdate(chunk: Chunk, weightGrad: Tensor, biasGrad: Tensor | null): void {
    const { lr, momentum, weightDecay } = this.head.fusedHyperparameters();
    const apply = (param: Tensor, buffer: Tensor, grad: Tensor, decay: number): void => {
      if (this.sampledIndex === null) {
        const p = F.narrow(param, 0, chunk.start, chunk.length);
        const m = F.narrow(buffer, 0, chunk.start, chunk.length);
        if (decay !== 0) F.add_(grad, p, decay);
        F.add_(F.mul_(m, momentum), grad);
        F.add_(p, m, -lr);
        return;
      }
      const rows = F.narrow(this.sampledIndex, 0, chunk.start, chunk.length);
      // The sampled rows were gathered in forward (and are not modified since): update that copy.
      const gathered = param === this.head.weight ? this.activeWeight : this.activeBias;
      const p = gathered !== null ? F.narrow(gathered, 0, chunk.start, chunk.length) : F.indexSelect(param, 0, rows);
      const m = F.indexSelect(buffer, 0, rows);
      if (decay !== 0) F.add_(grad, p, decay);
      F.add_(F.mul_(m, momentum), grad);
      F.add_(p, m, -lr);
      F.indexCopy_(param, 0, rows, p);
      F.indexCopy_(buffer, 0, rows, m);
    };
    noGrad(() => {
      apply(this.head.weight, this.head.momentumBuffer('weight_momentum'), weightGrad, weightDecay);
      if (biasGrad && this.head.bias) apply(this.head.bias, this.head.momentumBuffer('bias_momentum'), biasGrad, 0);
    });
  }
}
