/**
 * 1:N identification (MegaFace-style rank-k): every probe is compared with every gallery entry by
 * cosine similarity; a probe is correct at rank k when one of its k most similar gallery entries
 * has the probe's label. Ties are broken by the lower gallery index, so results do not depend on
 * the chunk sizes. The gallery is scanned in chunks and probes in blocks, keeping a running top-k
 * per probe: memory is O(probes*k + chunk*D + block*chunk), never O(probes*gallery).
 */
import { toEmbeddingMatrix, type Embeddings, type EmbeddingMatrix } from './verification.js';
import { positiveInteger } from '../util/validate.js';

/**
 * a (aRows x dim) times b (bRows x dim) transposed -> aRows x bRows, row-major. Both inputs are
 * already L2-normalized; plug a libtorch matmul here for large galleries.
 */
export type MatmulFunction = (a: Float32Array, aRows: number, b: Float32Array, bRows: number, dim: number) => Float32Array | Promise<Float32Array>;

export interface SearchOptions {
  /** Gallery rows per chunk (default 4096). */
  galleryChunkSize?: number;
  /** Probe rows per block (default 1024). */
  probeBlockSize?: number;
  /** Similarity kernel; default: a float64-accumulating loop in TypeScript. */
  matmul?: MatmulFunction;
}

export interface TopKResult {
  /** k actually kept per probe (min(k, gallery size)). */
  k: number;
  probes: number;
  /** probes x k gallery indices, most similar first. */
  indices: Int32Array;
  /** probes x k cosine similarities matching `indices`. */
  scores: Float64Array;
}

export interface IdentificationOptions extends SearchOptions {
  /** Ranks to report (default [1, 5]). */
  ranks?: readonly number[];
}

export interface RankAccuracy {
  rank: number;
  /** Correct probes / probes whose label occurs in the gallery. */
  accuracy: number;
  correct: number;
}

export interface IdentificationResult {
  probes: number;
  galleryRows: number;
  /** Probes whose label is in the gallery: the denominator of every accuracy. */
  evaluatedProbes: number;
  /** Probes without any gallery entry of their label (not counted). */
  probesWithoutMate: number;
  ranks: RankAccuracy[];
  /** Accuracy at rank 1 / rank 5 (null when that rank was not requested). */
  rank1: number | null;
  rank5: number | null;
}

/** L2-normalize rows into a new Float32Array (zero rows stay zero). */
function normalizeRows(data: Float32Array, start: number, rows: number, dim: number): Float32Array {
  const out = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    const base = (start + r) * dim;
    let s = 0;
    for (let j = 0; j < dim; j++) s += data[base + j]! * data[base + j]!;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let j = 0; j < dim; j++) out[r * dim + j] = data[base + j]! * inv;
  }
  return out;
}

/** Plain TypeScript a * b^T. */
export function matmulTransposed(a: Float32Array, aRows: number, b: Float32Array, bRows: number, dim: number): Float64Array {
  const out = new Float64Array(aRows * bRows);
  const tail = dim - (dim % 4);
  for (let i = 0; i < aRows; i++) {
    const ai = i * dim;
    for (let j = 0; j < bRows; j++) {
      const bj = j * dim;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      let k = 0;
      for (; k < tail; k += 4) {
        s0 += a[ai + k]! * b[bj + k]!;
        s1 += a[ai + k + 1]! * b[bj + k + 1]!;
        s2 += a[ai + k + 2]! * b[bj + k + 2]!;
        s3 += a[ai + k + 3]! * b[bj + k + 3]!;
      }
      for (; k < dim; k++) s0 += a[ai + k]! * b[bj + k]!;
      out[i * bRows + j] = s0 + s1 + (s2 + s3);
    }
  }
  return out;
}


/** Top-k most similar gallery rows for every probe (cosine similarity). */
export async function searchTopK(gallery: Embeddings, probes: Embeddings, k: number, options: SearchOptions = {}): Promise<TopKResult> {
  const g = toEmbeddingMatrix(gallery, 'gallery embeddings');
  const p = toEmbeddingMatrix(probes, 'probe embeddings');
  if (g.dim !== p.dim) throw new RangeError(`gallery embeddings have dimension ${g.dim}, probe embeddings ${p.dim}`);
  positiveInteger(k, 'k');
  const chunkSize = positiveInteger(options.galleryChunkSize ?? 4096, 'galleryChunkSize');
  const blockSize = positiveInteger(options.probeBlockSize ?? 1024, 'probeBlockSize');
  const keep = Math.min(k, g.rows);
  const dim = g.dim;
  const indices = new Int32Array(p.rows * keep).fill(-1);
  const scores = new Float64Array(p.rows * keep).fill(-Infinity);
  const filled = new Int32Array(p.rows);
  const probeNorm = normalizeRows(p.data, 0, p.rows, dim);

  for (let gStart = 0; gStart < g.rows; gStart += chunkSize) {
    const gRows = Math.min(chunkSize, g.rows - gStart);
    const chunk = normalizeRows(g.data, gStart, gRows, dim);
    for (let pStart = 0; pStart < p.rows; pStart += blockSize) {
      const pRows = Math.min(blockSize, p.rows - pStart);
      const block = probeNorm.subarray(pStart * dim, (pStart + pRows) * dim);
      const sims = options.matmul ? await options.matmul(block, pRows, chunk, gRows, dim) : matmulTransposed(block, pRows, chunk, gRows, dim);
      if (sims.length !== pRows * gRows) throw new RangeError(`matmul returned ${sims.length} values, expected ${pRows}x${gRows}`);
      for (let i = 0; i < pRows; i++) {
        const probe = pStart + i;
        const base = probe * keep;
        let count = filled[probe]!;
        for (let j = 0; j < gRows; j++) {
          let s = sims[i * gRows + j]!;
          if (Number.isNaN(s)) s = -Infinity;
          // Gallery indices arrive in increasing order, so an equal score never displaces a kept one.
          if (count === keep && !(s > scores[base + keep - 1]!)) continue;
          let pos = count === keep ? keep - 1 : count;
          while (pos > 0 && scores[base + pos - 1]! < s) {
            scores[base + pos] = scores[base + pos - 1]!;
            indices[base + pos] = indices[base + pos - 1]!;
            pos--;
          }
          scores[base + pos] = s;
          indices[base + pos] = gStart + j;
          if (count < keep) count++;
        }
        filled[probe] = count;
      }
    }
  }
  return { k: keep, probes: p.rows, indices, scores };
}

function labelsOf(labels: ArrayLike<number>, rows: number, what: string): ArrayLike<number> {
  if (labels.length !== rows) throw new RangeError(`${what}: ${labels.length} labels for ${rows} embeddings`);
  for (let i = 0; i < labels.length; i++) {
    if (!Number.isInteger(labels[i])) throw new RangeError(`${what}: label ${i} is ${labels[i]}, expected an integer`);
  }
  return labels;
}

/** Rank-k identification accuracy of probes against a gallery. */
export async function evaluateIdentification(
  gallery: Embeddings,
  galleryLabels: ArrayLike<number>,
  probes: Embeddings,
  probeLabels: ArrayLike<number>,
  options: IdentificationOptions = {},
): Promise<IdentificationResult> {
  const g: EmbeddingMatrix = toEmbeddingMatrix(gallery, 'gallery embeddings');
  const p: EmbeddingMatrix = toEmbeddingMatrix(probes, 'probe embeddings');
  const gl = labelsOf(galleryLabels, g.rows, 'gallery labels');
  const pl = labelsOf(probeLabels, p.rows, 'probe labels');
  const ranks = [...(options.ranks ?? [1, 5])];
  if (ranks.length === 0) throw new RangeError('no ranks requested');
  ranks.forEach((r) => positiveInteger(r, 'rank'));
  const top = await searchTopK(g, p, Math.max(...ranks), options);
  const galleryLabelSet = new Set<number>();
  for (let i = 0; i < gl.length; i++) galleryLabelSet.add(gl[i]!);

  // firstHit[probe] = 1-based rank of the first gallery entry with the probe's label (0: none in top-k).
  let evaluated = 0;
  const hitsAtRank = new Int32Array(top.k + 1);
  for (let i = 0; i < p.rows; i++) {
    if (!galleryLabelSet.has(pl[i]!)) continue;
    evaluated++;
    for (let r = 0; r < top.k; r++) {
      if (gl[top.indices[i * top.k + r]!] === pl[i]) {
        hitsAtRank[r + 1]!++;
        break;
      }
    }
  }
  const cumulative = new Int32Array(top.k + 1);
  for (let r = 1; r <= top.k; r++) cumulative[r] = cumulative[r - 1]! + hitsAtRank[r]!;
  const rankResults = ranks.map((rank) => {
    const correct = cumulative[Math.min(rank, top.k)]!;
    return { rank, correct, accuracy: evaluated === 0 ? 0 : correct / evaluated };
  });
  const at = (rank: number) => rankResults.find((r) => r.rank === rank)?.accuracy ?? null;
  return {
    probes: p.rows,
    galleryRows: g.rows,
    evaluatedProbes: evaluated,
    probesWithoutMate: p.rows - evaluated,
    ranks: rankResults,
    rank1: at(1),
    rank5: at(5),
  };
}
