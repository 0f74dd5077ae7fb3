// Class centres for top-k classification: a [C, D] matrix stored in safetensors (tensor 'centers',
// F32 or F16), written by models/export-centers. Read here without libtorch: the header through the
// shared safetensors header codec, then the raw little-endian rows.
import { open, type FileHandle } from 'node:fs/promises';
import { decodeSafetensorsHeader, safetensorsHeaderLength } from '../torch/safetensors-header.js';
import { halfToFloat32 } from './float16.js';
import { integerInRange } from '../util/validate.js';

export interface ClassCenters {
  /** Number of classes C. */
  readonly count: number;
  /** Embedding dimension D. */
  readonly dim: number;
  readonly dtype: 'float32' | 'float16';
  /** Row-major [C, D]: float32 values, or binary16 bit patterns when dtype is float16. */
  readonly rows: Float32Array | Uint16Array;
  /** 1 / ||row||, so scores are exact cosines even if rows were not normalized (0 for zero rows). */
  readonly inverseNorms: Float32Array;
}

export interface ClassMatch {
  /** Row index of the class in the centres matrix (the class id). */
  index: number;
  /** Cosine similarity between the query embedding and the class centre. */
  score: number;
}

const READ_CHUNK_BYTES = 1 << 30;

async function readAt(handle: FileHandle, target: Uint8Array, position: number, where: string): Promise<void> {
  for (let done = 0; done < target.length; ) {
    const length = Math.min(READ_CHUNK_BYTES, target.length - done);
    const { bytesRead } = await handle.read(target, done, length, position + done);
    if (bytesRead === 0) throw new Error(`${where}: unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}

/** Load a [C, D] F32/F16 tensor (default name 'centers') from a safetensors file. */
export async function loadClassCenters(path: string, options: { tensorName?: string } = {}): Promise<ClassCenters> {
  const tensorName = options.tensorName ?? 'centers';
  const source = `class centres ${path}`;
  const handle = await open(path, 'r').catch((error: NodeJS.ErrnoException) => {
    throw new Error(`${source}: cannot open (${error.code ?? error.message})`);
  });
  try {
    const fileSize = (await handle.stat()).size;
    const prefix = new Uint8Array(8);
    if (fileSize >= 8) await readAt(handle, prefix, 0, source);
    const headerBytes = new Uint8Array(safetensorsHeaderLength(source, prefix, fileSize));
    await readAt(handle, headerBytes, 8, source);
    const header = decodeSafetensorsHeader(source, headerBytes, fileSize);
    const entry = header.entries.find((candidate) => candidate.name === tensorName);
    if (entry === undefined) throw new Error(`${source}: no tensor '${tensorName}' (tensors: ${header.entries.map((e) => e.name).join(', ') || 'none'})`);
    const where = `${source}: tensor '${tensorName}'`;
    if (entry.dtype !== 'F32' && entry.dtype !== 'F16') throw new Error(`${where}: dtype ${entry.dtype} is not supported (use F32 or F16)`);
    if (entry.shape.length !== 2 || !entry.shape.every((d) => d > 0)) {
      throw new Error(`${where}: shape ${JSON.stringify(entry.shape)} must be [classes, dim] with positive sizes`);
    }
    const [count, dim] = entry.shape as [number, number];
    const rows = entry.dtype === 'F32' ? new Float32Array(count * dim) : new Uint16Array(count * dim);
    await readAt(handle, new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength), header.dataStart + entry.begin, where);
    return { count, dim, dtype: entry.dtype === 'F32' ? 'float32' : 'float16', rows, inverseNorms: computeInverseNorms(rows, count, dim, where) };
  } finally {
    await handle.close();
  }
}

/** Wrap an in-memory [count, dim] float32 matrix as ClassCenters. */
export function classCentersFromArray(rows: Float32Array, count: number, dim: number): ClassCenters {
  if (rows.length !== count * dim) throw new Error(`class centres: ${rows.length} values do not form [${count}, ${dim}]`);
  return { count, dim, dtype: 'float32', rows, inverseNorms: computeInverseNorms(rows, count, dim) };
}

/**
 * 1 / ||row|| of each row of a [count, dim] matrix (0 for zero rows). With `where` (a file and
 * tensor), a row holding NaN or infinity is an error naming it: it would otherwise score NaN
 * against every query and silently never match.
 */
export function computeInverseNorms(rows: Float32Array | Uint16Array, count: number, dim: number, where?: string): Float32Array {
  const inverse = new Float32Array(count);
  const chunkRows = Math.max(1, Math.floor(65536 / dim));
  const scratch = rows instanceof Uint16Array ? new Float32Array(chunkRows * dim) : undefined;
  for (let first = 0; first < count; first += chunkRows) {
    const last = Math.min(count, first + chunkRows);
    const block = scratch ? halfToFloat32((rows as Uint16Array).subarray(first * dim, last * dim), scratch) : (rows as Float32Array).subarray(first * dim, last * dim);
    for (let r = 0; r < last - first; r++) {
      let sum = 0;
      const base = r * dim;
      for (let d = 0; d < dim; d++) sum += block[base + d]! * block[base + d]!;
      if (where !== undefined && !Number.isFinite(sum)) throw new Error(`${where}: row ${first + r} (class ${first + r}) holds NaN or infinity`);
      inverse[first + r] = sum > 0 ? 1 / Math.sqrt(sum) : 0;
    }
  }
  return inverse;
}

/**
 * Running top-k of (score, index) pairs: a min-heap of size k whose root is the weakest kept score,
 * so a candidate costs one comparison unless it beats the current k-th best.
 */
export class RunningTopK {
  private readonly scores: Float64Array;
  private readonly indices: Int32Array;
  private size = 0;

  constructor(readonly k: number) {
    this.scores = new Float64Array(k);
    this.indices = new Int32Array(k);
  }

  /** The weakest kept score (-Infinity until k candidates have been seen). */
  get threshold(): number {
    return this.size < this.k ? -Infinity : this.scores[0]!;
  }

  push(score: number, index: number): void {
    if (this.size < this.k) {
      let child = this.size++;
      while (child > 0) {
        const parent = (child - 1) >> 1;
        if (!this.before(score, index, this.scores[parent]!, this.indices[parent]!)) break;
        this.scores[child] = this.scores[parent]!;
        this.indices[child] = this.indices[parent]!;
        child = parent;
      }
      this.scores[child] = score;
      this.indices[child] = index;
      return;
    }
    if (!this.before(this.scores[0]!, this.indices[0]!, score, index)) return;
    let parent = 0;
    for (;;) {
      let child = 2 * parent + 1;
      if (child >= this.size) break;
      if (child + 1 < this.size && this.before(this.scores[child + 1]!, this.indices[child + 1]!, this.scores[child]!, this.indices[child]!)) child += 1;
      if (!this.before(this.scores[child]!, this.indices[child]!, score, index)) break;
      this.scores[parent] = this.scores[child]!;
      this.indices[parent] = this.indices[child]!;
      parent = child;
    }
    this.scores[parent] = score;
    this.indices[parent] = index;
  }

  // Heap order: a is weaker than b (lower score; on equal scores the higher index is weaker).
  private before(scoreA: number, indexA: number, scoreB: number, indexB: number): boolean {
    return scoreA < scoreB || (scoreA === scoreB && indexA > indexB);
  }

  /** Kept entries, best first (ties broken by lower index). */
  result(): ClassMatch[] {
    const out: ClassMatch[] = [];
    for (let i = 0; i < this.size; i++) out.push({ index: this.indices[i]!, score: this.scores[i]! });
    return out.sort((a, b) => b.score - a.score || a.index - b.index);
  }
}

export interface TopKScanOptions {
  /** Centre rows scored per chunk (default 4096); only one chunk of fp16 rows is converted at a time. */
  chunkRows?: number;
}

/**
 * Top-k cosine similarity of each query against all centres, in plain TypeScript: the centres are
 * scanned in chunks, each chunk scored against every query and folded into a running top-k per
 * query, so memory beyond the centres is O(chunkRows * D + queries * k).
 */
export function topKCosineScan(centers: ClassCenters, queries: readonly Float32Array[], k: number, options: TopKScanOptions = {}): ClassMatch[][] {
  const { count, dim } = centers;
  integerInRange(k, 'k', 1, count);
  const chunkRows = options.chunkRows ?? 4096;
  const normalized = queries.map((query, q) => {
    if (query.length !== dim) throw new Error(`query ${q} has ${query.length} values, centres have dim ${dim}`);
    let sum = 0;
    for (let d = 0; d < dim; d++) sum += query[d]! * query[d]!;
    const scale = sum > 0 ? 1 / Math.sqrt(sum) : 0;
    return query.map((value) => value * scale);
  });
  const heaps = queries.map(() => new RunningTopK(k));
  const scratch = centers.rows instanceof Uint16Array ? new Float32Array(chunkRows * dim) : undefined;
  const inverseNorms = centers.inverseNorms;
  for (let first = 0; first < count; first += chunkRows) {
    const last = Math.min(count, first + chunkRows);
    const block = scratch
      ? halfToFloat32((centers.rows as Uint16Array).subarray(first * dim, last * dim), scratch)
      : (centers.rows as Float32Array).subarray(first * dim, last * dim);
    for (let q = 0; q < normalized.length; q++) {
      const query = normalized[q]!;
      const heap = heaps[q]!;
      let threshold = heap.threshold;
      for (let r = 0, base = 0; r < last - first; r++, base += dim) {
        let s0 = 0;
        let s1 = 0;
        let s2 = 0;
        let s3 = 0;
        let d = 0;
        for (; d + 3 < dim; d += 4) {
          s0 += query[d]! * block[base + d]!;
          s1 += query[d + 1]! * block[base + d + 1]!;
          s2 += query[d + 2]! * block[base + d + 2]!;
          s3 += query[d + 3]! * block[base + d + 3]!;
        }
        for (; d < dim; d++) s0 += query[d]! * block[base + d]!;
        const score = Math.fround((s0 + s1 + s2 + s3) * inverseNorms[first + r]!);
        if (score >= threshold) {
          heap.push(score, first + r);
          threshold = heap.threshold;
        }
      }
    }
  }
  return heaps.map((heap) => heap.result());
}
