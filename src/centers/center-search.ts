// Top-k cosine search over class centres on onnxruntime: the centres are fed chunk by chunk
// through a small graph (Cast for fp16 -> Gemm(queries, chunk^T) -> Mul(1/||row||) -> TopK), and
// the per-chunk winners are folded into a running top-k per query. Only a [queries, chunkRows]
// score block exists at any time, and the work runs on onnxruntime's threads, off the event loop.
import '../onnx/ort-telemetry.js';
import ort from 'onnxruntime-node';
import { OnnxGraphBuilder } from '../onnx/builder.js';
import { RunningTopK, type ClassCenters, type ClassMatch } from './centers.js';
import { integerInRange, positiveInteger } from '../util/validate.js';

export interface CenterSearchOptions {
  /** Centre rows per chunk (default 32768). */
  chunkRows?: number;
  /** onnxruntime intra-op threads (default: onnxruntime's choice). */
  intraOpThreads?: number;
}

function buildSearchGraph(dim: number, dtype: 'float32' | 'float16'): Uint8Array {
  const g = new OnnxGraphBuilder('center_search');
  g.input('queries', 'float32', ['Q', dim]);
  g.input('centers', dtype, ['R', dim]);
  g.input('inverse_norms', 'float32', ['R']);
  g.input('k', 'int64', [1]);
  let rows = 'centers';
  if (dtype === 'float16') {
    g.node('Cast', ['centers'], ['centers_f32'], { to: 1 });
    rows = 'centers_f32';
  }
  g.node('Gemm', ['queries', rows], ['dots'], { transB: 1 });
  g.node('Mul', ['dots', 'inverse_norms'], ['scores']);
  g.node('TopK', ['scores', 'k'], ['top_scores', 'top_indices'], { axis: 1, largest: 1, sorted: 1 });
  g.output('top_scores', 'float32', ['Q', 'K']);
  g.output('top_indices', 'int64', ['Q', 'K']);
  return g.toBytes({ opset: 17 });
}

/** One block of centre rows: rows first..first+count-1 of the whole class set. */
export interface CenterBlock {
  /** Class index of the block's first row. */
  first: number;
  count: number;
  /** Row-major [count, dim]: float32 values, or binary16 bit patterns for float16 engines. */
  rows: Float32Array | Uint16Array;
  /** 1 / ||row|| per row (0 for zero rows). */
  inverseNorms: Float32Array;
}

/**
 * The chunked search itself, for centres that arrive block by block (a checkpoint's FC shards read
 * from disk, a training worker's own shard): each block goes through the search graph and its
 * per-query winners are folded into running top-k heaps.
 */
export class CenterBlockSearch {
  private constructor(
    readonly dim: number,
    readonly dtype: 'float32' | 'float16',
    private readonly session: ort.InferenceSession,
  ) {}

  static async create(dim: number, dtype: 'float32' | 'float16', options: Pick<CenterSearchOptions, 'intraOpThreads'> = {}): Promise<CenterBlockSearch> {
    positiveInteger(dim, 'centre dim');
    const session = await ort.InferenceSession.create(buildSearchGraph(dim, dtype), {
      ...(options.intraOpThreads ? { intraOpNumThreads: options.intraOpThreads } : {}),
    });
    return new CenterBlockSearch(dim, dtype, session);
  }

  /** L2-normalized queries packed as one [Q, dim] tensor, and an empty top-k heap per query. */
  start(queries: readonly Float32Array[], k: number): CenterSearchState {
    const dim = this.dim;
    positiveInteger(k, 'k');
    const packed = new Float32Array(queries.length * dim);
    queries.forEach((query, q) => {
      if (query.length !== dim) throw new Error(`query ${q} has ${query.length} values, centres have dim ${dim}`);
      let sum = 0;
      for (let d = 0; d < dim; d++) sum += query[d]! * query[d]!;
      const scale = sum > 0 ? 1 / Math.sqrt(sum) : 0;
      for (let d = 0; d < dim; d++) packed[q * dim + d] = query[d]! * scale;
    });
    return { k, queryCount: queries.length, queries: new ort.Tensor('float32', packed, [queries.length, dim]), heaps: queries.map(() => new RunningTopK(k)) };
  }

  /** Scores one block against the queries and keeps each query's k best so far. */
  async fold(state: CenterSearchState, block: CenterBlock): Promise<void> {
    const { first, count, rows, inverseNorms } = block;
    const dim = this.dim;
    if (state.queryCount === 0 || count === 0) return;
    if (rows.length !== count * dim || inverseNorms.length !== count) throw new Error(`centre block at class ${first}: ${rows.length} values and ${inverseNorms.length} norms do not form [${count}, ${dim}]`);
    if ((rows instanceof Float32Array) !== (this.dtype === 'float32')) throw new Error(`centre block at class ${first}: rows are ${rows instanceof Float32Array ? 'float32' : 'float16'}, the search expects ${this.dtype}`);
    const chunkK = Math.min(state.k, count);
    const result = await this.session.run({
      queries: state.queries,
      centers: rows instanceof Float32Array ? new ort.Tensor('float32', rows, [count, dim]) : new ort.Tensor('float16', rows, [count, dim]),
      inverse_norms: new ort.Tensor('float32', inverseNorms, [count]),
      k: new ort.Tensor('int64', BigInt64Array.of(BigInt(chunkK)), [1]),
    });
    const scores = result.top_scores!.data as Float32Array;
    const indices = result.top_indices!.data as BigInt64Array;
    for (let q = 0; q < state.queryCount; q++) {
      const heap = state.heaps[q]!;
      for (let j = 0; j < chunkK; j++) {
        const score = scores[q * chunkK + j]!;
        if (score < heap.threshold) break;
        heap.push(score, first + Number(indices[q * chunkK + j]!));
      }
    }
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** Queries and their running top-k during a block-by-block search. */
export interface CenterSearchState {
  readonly k: number;
  readonly queryCount: number;
  readonly queries: ort.Tensor;
  /** One heap per query; `heap.result()` gives its matches, best first. */
  readonly heaps: RunningTopK[];
}

export class CenterSearchEngine {
  private constructor(
    readonly centers: ClassCenters,
    private readonly blocks: CenterBlockSearch,
    readonly chunkRows: number,
  ) {}

  static async create(centers: ClassCenters, options: CenterSearchOptions = {}): Promise<CenterSearchEngine> {
    const chunkRows = options.chunkRows ?? 32768;
    positiveInteger(chunkRows, 'chunkRows');
    return new CenterSearchEngine(centers, await CenterBlockSearch.create(centers.dim, centers.dtype, options), chunkRows);
  }

  /** Best k classes per query (queries need not be normalized), best first. */
  async search(queries: readonly Float32Array[], k: number): Promise<ClassMatch[][]> {
    const { count, dim, rows, inverseNorms } = this.centers;
    integerInRange(k, 'k', 1, count);
    if (queries.length === 0) return [];
    const state = this.blocks.start(queries, k);
    for (let first = 0; first < count; first += this.chunkRows) {
      const last = Math.min(count, first + this.chunkRows);
      await this.blocks.fold(state, { first, count: last - first, rows: rows.subarray(first * dim, last * dim), inverseNorms: inverseNorms.subarray(first, last) });
    }
    return state.heaps.map((heap) => heap.result());
  }

  async release(): Promise<void> {
    await this.blocks.release();
  }
}
