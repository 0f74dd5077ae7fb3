// Class-centre export for top-k classification: the FC weight shards ([numLocalClasses, D] each,
// in rank order, which is class order) concatenated to [C, D], each row L2-normalized, written as
// the safetensors tensor `centers` that `plsc serve --centers` reads.
import type { Tensor } from '../torch/tensor.js';
import * as F from '../torch/ops.js';
import { noGrad } from '../torch/autograd.js';
import { tidy } from '../torch/scope.js';
import { saveSafetensors } from '../torch/safetensors.js';

export interface ExportCentersOptions {
  /** Store float16 (half the size; rows are normalized in float32 first). Default false: float32. */
  fp16?: boolean;
  /** Extra safetensors metadata. */
  metadata?: Record<string, string>;
}

export interface ExportCentersResult {
  numClasses: number;
  embeddingSize: number;
  dtype: 'float32' | 'float16';
}

/** The tensor name the serving side reads. */
export const CENTERS_TENSOR_NAME = 'centers';

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
  const dtype = options.fp16 ? 'float16' : 'float32';
  noGrad(() =>
    tidy(() => {
      // Normalize and convert shard by shard so only the output matrix is ever held whole.
      const pieces = shards.map((shard) =>
        tidy(() => {
          let rows = shard.detach();
          if (rows.device !== 'cpu') rows = rows.to('cpu');
          if (rows.dtype !== 'float32') rows = rows.to('float32');
          const normalized = F.normalize(rows, 2, 1);
          return dtype === 'float16' ? normalized.to('float16') : normalized;
        }),
      );
      const centers = pieces.length === 1 ? F.contiguous(pieces[0]!) : F.cat(pieces, 0);
      for (const piece of pieces) if (piece !== centers) piece.dispose();
      saveSafetensors(path, { [CENTERS_TENSOR_NAME]: centers }, {
        num_classes: String(numClasses),
        embedding_size: String(embeddingSize),
        normalized: 'l2',
        ...(options.metadata ?? {}),
      });
    }),
  );
  return { numClasses, embeddingSize, dtype };
}
