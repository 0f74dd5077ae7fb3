// Class centres of a training checkpoint, streamed: every FC shard's `weight` rows (float32,
// bfloat16 or float16 class storage) are read from the shard file a chunk at a time, widened to
// float32, L2-normalized on libtorch and appended to one safetensors file (tensor `centers` [C, D],
// F32 or F16, classes in global order). The header is written first because C and D are known from
// meta.json, so memory stays at one chunk whatever the class count.
import { mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as F from '../torch/ops.js';
import { noGrad } from '../torch/autograd.js';
import { tidy } from '../torch/scope.js';
import { safetensorsElementBytes, type SafetensorsDType } from '../torch/safetensors.js';
import { SafetensorsRowReader, SafetensorsStreamWriter } from '../torch/safetensors-stream.js';
import { shardLayout } from '../head/shard-layout.js';
import { shardFileName, type CheckpointMeta } from '../train/checkpoint.js';

export interface CheckpointCentersOptions {
  /** Store float16 (rows are normalized in float32 first). Default false: float32. */
  fp16?: boolean;
  /** Rows normalized and written per step (default: about 4 MiB of float32 rows). */
  chunkRows?: number;
  /** Extra safetensors metadata. */
  metadata?: Record<string, string>;
}

export interface CheckpointCentersResult {
  path: string;
  numClasses: number;
  embeddingSize: number;
  dtype: 'float32' | 'float16';
  /** Size of the written file in bytes. */
  bytes: number;
  /** Rows taken from each FC shard, in rank order. */
  shardRows: number[];
}

const READABLE: ReadonlySet<SafetensorsDType> = new Set<SafetensorsDType>(['F32', 'F16', 'BF16', 'F64']);

const DEFAULT_CHUNK_BYTES = 4 << 20;

/**
 * Writes the L2-normalized rows of the checkpoint's FC `weight` (all `meta.numClasses` classes,
 * shard by shard in rank order) to `outPath` as the safetensors tensor `centers` that
 * `plsc serve --centers` reads. Zero rows stay zero. The file appears only once complete.
 */
export function writeCheckpointCenters(checkpointDir: string, meta: CheckpointMeta, outPath: string, options: CheckpointCentersOptions = {}): CheckpointCentersResult {
  const { numClasses, embeddingSize, worldSize } = meta;
  const metaFile = join(checkpointDir, 'meta.json');
  if (!Number.isInteger(numClasses) || numClasses < 1) throw new Error(`${metaFile}: numClasses must be a positive integer, got ${String(numClasses)}`);
  if (!Number.isInteger(embeddingSize) || embeddingSize < 1) throw new Error(`${metaFile}: embeddingSize must be a positive integer, got ${String(embeddingSize)}`);
  if (!Number.isInteger(worldSize) || worldSize < 1 || worldSize > numClasses) throw new Error(`${metaFile}: worldSize ${String(worldSize)} does not split ${numClasses} classes`);
  const chunkRows = options.chunkRows ?? Math.max(1, Math.floor(DEFAULT_CHUNK_BYTES / (embeddingSize * 4)));
  if (!Number.isInteger(chunkRows) || chunkRows < 1) throw new Error(`writeCheckpointCenters: chunkRows must be a positive integer, got ${chunkRows}`);
  const fp16 = options.fp16 ?? false;

  const metadata = {
    num_classes: String(numClasses),
    embedding_size: String(embeddingSize),
    normalized: 'l2',
    ...(Number.isInteger(meta.step) ? { step: String(meta.step) } : {}),
    ...(options.metadata ?? {}),
  };
  const dtype = fp16 ? 'float16' : 'float32';
  mkdirSync(dirname(outPath), { recursive: true });
  const writer = new SafetensorsStreamWriter(outPath, [{ name: 'centers', dtype, shape: [numClasses, embeddingSize] }], metadata);
  const shardRows: number[] = [];
  // One staging buffer for the raw rows of every chunk: memory stays at a chunk, and a bfloat16 or
  // float16 shard is widened to float32 a chunk at a time only.
  let staging = new Uint8Array(0);
  try {
    let written = 0;
    for (let rank = 0; rank < worldSize; rank++) {
      const layout = shardLayout(numClasses, worldSize, rank);
      const file = join(checkpointDir, shardFileName(rank, worldSize));
      const reader = SafetensorsRowReader.open(file);
      try {
        const weight = reader.header.entries.find((e) => e.name === 'weight');
        if (weight === undefined) throw new Error(`${file}: no tensor 'weight' (it holds ${reader.header.entries.map((e) => e.name).join(', ') || 'nothing'})`);
        const where = `${file}: tensor 'weight'`;
        if (weight.shape.length !== 2 || weight.shape[0] !== layout.numLocalClasses || weight.shape[1] !== embeddingSize) {
          throw new Error(`${where} has shape [${weight.shape.join(', ')}], expected [${layout.numLocalClasses}, ${embeddingSize}] (rank ${rank} of ${worldSize}, ${numClasses} classes)`);
        }
        if (!READABLE.has(weight.dtype)) throw new Error(`${where} has dtype ${weight.dtype}, expected F32, F16, BF16 or F64`);
        const chunkBytes = Math.min(chunkRows, layout.numLocalClasses) * embeddingSize * safetensorsElementBytes(weight.dtype);
        if (staging.length < chunkBytes) staging = new Uint8Array(chunkBytes);
        for (let first = 0; first < layout.numLocalClasses; first += chunkRows) {
          const rows = Math.min(chunkRows, layout.numLocalClasses - first);
          noGrad(() =>
            tidy(() => {
              const raw = reader.readRows('weight', first, rows, staging);
              writer.append('centers', F.normalize(raw.dtype === 'float32' ? raw : raw.to('float32'), 2, 1));
            }),
          );
          written += rows;
        }
      } finally {
        reader.close();
      }
      shardRows.push(layout.numLocalClasses);
    }
    if (written !== numClasses) throw new Error(`writeCheckpointCenters: wrote ${written} rows, expected ${numClasses}`);
    writer.finish();
  } catch (error) {
    writer.abort();
    throw error;
  }
  const bytes = statSync(outPath).size;
  return { path: outPath, numClasses, embeddingSize, dtype, bytes, shardRows };
}
