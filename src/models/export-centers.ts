// Class-centre files for top-k classification, written by this module only (the trainer's export
// and `plsc export --centers` both go through CentersWriter): the FC weight shards ([numLocalClasses,
// D] each, in rank order, which is class order; float32, bfloat16 or float16) concatenated to
// [C, D], each row L2-normalized in float32, written a tile of rows at a time as the safetensors
// tensor `centers` that `plsc serve --centers` reads.
import type { Tensor } from '../torch/tensor.js';
import * as F from '../torch/ops.js';
import { noGrad } from '../torch/autograd.js';
import { tidy } from '../torch/scope.js';
import { SafetensorsStreamWriter } from '../torch/safetensors-stream.js';
import { positiveInteger } from '../util/validate.js';

export interface ExportCentersOptions extends CentersWriterOptions {
  /** Rows normalized and written at a time (default: about 4 MiB of float32 rows). */
  tileRows?: number;
}

const TILE_BYTES = 4 << 20;

export interface ExportCentersResult {
  numClasses: number;
  embeddingSize: number;
  dtype: 'float32' | 'float16';
}

/** The tensor name the serving side reads. */
export const CENTERS_TENSOR_NAME = 'centers';

/** Rows of a [rows, D] floating tensor as the centres file holds them: float32 on the CPU, each row L2-normalized (zero rows stay zero). */
export function normalizedCenterRows(rows: Tensor): Tensor {
  return noGrad(() =>
    tidy(() => {
      let values = rows.detach();
      if (values.device !== 'cpu') values = values.to('cpu');
      if (values.dtype !== 'float32') values = values.to('float32');
      return F.normalize(values, 2, 1);
    }),
  );
}

export interface CentersWriterOptions {
  /** Store float16 (half the size; rows are normalized in float32 first). Default false: float32. */
  fp16?: boolean;
  /** Extra safetensors metadata. */
  metadata?: Record<string, string>;
}

/**
 * The one writer of class-centre files: the safetensors tensor `centers` [numClasses, embeddingSize]
 * (F32 or F16) with metadata recording the class count, dimension and that rows are L2-normalized.
 * The header is written first; `append` takes rows in class order, any number at a time, and
 * normalizes them. The file appears under `path` only after `finish`.
 */
export class CentersWriter {
  readonly dtype: 'float32' | 'float16';
  private readonly writer: SafetensorsStreamWriter;

  constructor(
    readonly path: string,
    readonly numClasses: number,
    readonly embeddingSize: number,
    options: CentersWriterOptions = {},
  ) {
    this.dtype = options.fp16 ? 'float16' : 'float32';
    this.writer = new SafetensorsStreamWriter(path, [{ name: CENTERS_TENSOR_NAME, dtype: this.dtype, shape: [numClasses, embeddingSize] }], {
      num_classes: String(numClasses),
      embedding_size: String(embeddingSize),
      normalized: 'l2',
      ...(options.metadata ?? {}),
    });
  }

  /** Appends the next rows ([rows, embeddingSize], any floating dtype and device), L2-normalized in float32. */
  append(rows: Tensor): void {
    const normalized = normalizedCenterRows(rows);
    try {
      this.writer.append(CENTERS_TENSOR_NAME, normalized);
    } finally {
      normalized.dispose();
    }
  }

  /** Closes the file and moves it into place; every row must have been appended. */
  finish(): void {
    this.writer.finish();
  }

  /** Closes and deletes the partial file. */
  abort(): void {
    this.writer.abort();
  }
}

/**
 * Writes the L2-normalized class-centre matrix to `path` (safetensors, tensor `centers` [C, D]).
 * `weightShards` are the head's per-rank weights in rank order (or one full [C, D] matrix); rows of
 * zeros stay zero. Metadata records the class count, dimension and that rows are normalized.
 */
export function exportCenters(path: string, weightShards: readonly Tensor[] | Tensor, options: ExportCentersOptions = {}): ExportCentersResult {
  const shards = Array.isArray(weightShards) ? (weightShards as readonly Tensor[]) : [weightShards as Tensor];
  if (shards.length === 0) throw new Error(`exportCenters ${path}: no weight shards given`);
  let embeddingSize = -1;
  shards.forEach((shard, i) => {
    const where = `exportCenters ${path}: shard ${i}`;
    if (shard === null || typeof shard !== 'object' || typeof (shard as Partial<Tensor>).dataSync !== 'function') throw new Error(`${where} is not a Tensor`);
    if (shard.isDisposed) throw new Error(`${where} was already disposed`);
    if (shard.ndim !== 2) throw new Error(`${where} has shape [${shard.shape.join(', ')}], expected [classes, dim]`);
    if (shard.dtype !== 'float32' && shard.dtype !== 'float16' && shard.dtype !== 'bfloat16' && shard.dtype !== 'float64') {
      throw new Error(`${where} has dtype ${shard.dtype}, expected a floating type`);
    }
    const dim = shard.shape[1]!;
    if (embeddingSize === -1) embeddingSize = dim;
    else if (dim !== embeddingSize) throw new Error(`${where} has dimension ${dim} but shard 0 has ${embeddingSize}`);
  });
  const numClasses = shards.reduce((sum, shard) => sum + shard.shape[0]!, 0);
  if (numClasses === 0) throw new Error(`exportCenters ${path}: the shards hold no classes`);
  if (embeddingSize < 1) throw new Error(`exportCenters ${path}: embedding dimension is 0`);
  const tileRows = options.tileRows ?? Math.max(1, Math.floor(TILE_BYTES / (embeddingSize * 4)));
  positiveInteger(tileRows, `exportCenters ${path}: tileRows`);
  const writer = new CentersWriter(path, numClasses, embeddingSize, options);
  try {
    // A tile of rows at a time is widened to float32 and normalized: a bfloat16 or float16 shard is
    // never copied whole, and the output goes straight to the file.
    for (const shard of shards) {
      const rows = shard.shape[0]!;
      for (let first = 0; first < rows; first += tileRows) {
        tidy(() => writer.append(F.narrow(shard.detach(), 0, first, Math.min(tileRows, rows - first))));
      }
    }
    writer.finish();
  } catch (err) {
    writer.abort();
    throw err;
  }
  return { numClasses, embeddingSize, dtype: writer.dtype };
}
