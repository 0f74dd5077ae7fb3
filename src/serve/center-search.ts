// Top-k cosine search over class centres on onnxruntime: the centres are fed chunk by chunk
// through a small graph (Cast for fp16 -> Gemm(queries, chunk^T) -> Mul(1/||row||) -> TopK), and
// the per-chunk winners are folded into a running top-k per query. Only a [queries, chunkRows]
// score block exists at any time, and the work runs on onnxruntime's threads, off the event loop.
import './ort-telemetry.js';
import ort from 'onnxruntime-node';
import { OnnxGraphBuilder } from './onnx/builder.js';
import { RunningTopK, type ClassCenters, type ClassMatch } from './centers.js';

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

export class CenterSearchEngine {
  private constructor(
    readonly centers: ClassCenters,
    private readonly session: ort.InferenceSession,
    readonly chunkRows: number,
  ) {}

  static async create(centers: ClassCenters, options: CenterSearchOptions = {}): Promise<CenterSearchEngine> {
    const chunkRows = options.chunkRows ?? 32768;
    if (!Number.isInteger(chunkRows) || chunkRows < 1) throw new Error(`chunkRows must be a positive integer, got ${chunkRows}`);
    const session = await ort.InferenceSession.create(buildSearchGraph(centers.dim, centers.dtype), {
      ...(options.intraOpThreads ? { intraOpNumThreads: options.intraOpThreads } : {}),
    });
    return new CenterSearchEngine(centers, session, chunkRows);
  }

  /** Best k classes per query (queries need not be normalized), best first. */
  async search(queries: readonly Float32Array[], k: number): Promise<ClassMatch[][]> {
    const { count, dim, rows, inverseNorms } = this.centers;
    if (!Number.isInteger(k) || k < 1 || k > count) throw new Error(`k must be an integer in 1..${count}, got ${k}`);
    if (queries.length === 0) return [];
    const packed = new Float32Array(queries.length * dim);
    queries.forEach((query, q) => {
      if (query.length !== dim) throw new Error(`query ${q} has ${query.length} values, centres have dim ${dim}`);
      let sum = 0;
      for (let d = 0; d < dim; d++) sum += query[d]! * query[d]!;
      const scale = sum > 0 ? 1 / Math.sqrt(sum) : 0;
      for (let d = 0; d < dim; d++) packed[q * dim + d] = query[d]! * scale;
    });
    const queryTensor = new ort.Tensor('float32', packed, [queries.length, dim]);
    const heaps = queries.map(() => new RunningTopK(k));
    for (let first = 0; first < count; first += this.chunkRows) {
      const last = Math.min(count, first + this.chunkRows);
      const chunkK = Math.min(k, last - first);
      const block =
        rows instanceof Float32Array
          ? new ort.Tensor('float32', rows.subarray(first * dim, last * dim), [last - first, dim])
          : new ort.Tensor('float16', rows.subarray(first * dim, last * dim), [last - first, dim]);
      const result = await this.session.run({
        queries: queryTensor,
        centers: block,
        inverse_norms: new ort.Tensor('float32', inverseNorms.subarray(first, last), [last - first]),
        k: new ort.Tensor('int64', BigInt64Array.of(BigInt(chunkK)), [1]),
      });
      const scores = result.top_scores!.data as Float32Array;
      const indices = result.top_indices!.data as BigInt64Array;
      for (let q = 0; q < queries.length; q++) {
        const heap = heaps[q]!;
        for (let j = 0; j < chunkK; j++) {
          const score = scores[q * chunkK + j]!;
          if (score < heap.threshold) break;
          heap.push(score, first + Number(indices[q * chunkK + j]!));
        }
      }
    }
    return heaps.map((heap) => heap.result());
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
