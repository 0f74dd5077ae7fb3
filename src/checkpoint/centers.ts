// Class centres of a training checkpoint, streamed: every FC shard's `weight` rows (float32,
// bfloat16 or float16 class storage) are read from the shard file a chunk at a time (each shard
// verified against the digest meta.json records), widened to float32, L2-normalized on libtorch
// and either handed out block by block (plsc eval --classify) or appended to one safetensors file
// through CentersWriter (tensor `centers` [C, D], F32 or F16, classes in global order). The header is written first
// because C and D are known from meta.json, so memory stays at one chunk whatever the class count.
import { mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { noGrad } from '../torch/autograd.js';
import { tidy } from '../torch/scope.js';
import { safetensorsElementBytes, type SafetensorsDType } from '../torch/safetensors.js';
import { SafetensorsRowReader } from '../torch/safetensors-stream.js';
import type { Tensor } from '../torch/tensor.js';
import { shardLayout } from '../head/shard-layout.js';
import { CentersWriter, normalizedCenterRows } from '../models/export-centers.js';
import { shardFileName, type CheckpointMeta } from './format.js';
import { assertFiniteTensor, verifyCheckpointFile } from './integrity.js';
import { positiveInteger } from '../util/validate.js';

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

/** One block of a checkpoint's class centres: rows first..first+count-1, L2-normalized float32. */
export interface CheckpointCenterRows {
  first: number;
  count: number;
  /** Row-major [count, embeddingSize]. */
  rows: Float32Array;
  /** FC shard (rank) the rows come from. */
  shard: number;
}

const READABLE: ReadonlySet<SafetensorsDType> = new Set<SafetensorsDType>(['F32', 'F16', 'BF16', 'F64']);

const DEFAULT_CHUNK_BYTES = 4 << 20;

function checkCenterMeta(checkpointDir: string, meta: CheckpointMeta): void {
  const { numClasses, embeddingSize, worldSize } = meta;
  const metaFile = join(checkpointDir, 'meta.json');
  positiveInteger(numClasses, `${metaFile}: numClasses`);
  positiveInteger(embeddingSize, `${metaFile}: embeddingSize`);
  if (!Number.isInteger(worldSize) || worldSize < 1 || worldSize > numClasses) throw new Error(`${metaFile}: worldSize ${String(worldSize)} does not split ${numClasses} classes`);
}

function chunkRowsOption(embeddingSize: number, chunkRows: number | undefined): number {
  const rows = chunkRows ?? Math.max(1, Math.floor(DEFAULT_CHUNK_BYTES / (embeddingSize * 4)));
  return positiveInteger(rows, 'checkpoint centres: chunkRows');
}

/**
 * The float32 blocks of the class centres as stored (not normalized; a float32 block views the
 * staging buffer); each block is disposed once the consumer moves on.
 */
function* storedCenterBlocks(checkpointDir: string, meta: CheckpointMeta, chunkRows: number): Generator<{ first: number; count: number; block: Tensor; shard: number }> {
  const { numClasses, embeddingSize, worldSize } = meta;
  // One staging buffer for the raw rows of every chunk: a bfloat16 or float16 shard is widened to
  // float32 a chunk at a time only.
  let staging = new Uint8Array(0);
  let first = 0;
  for (let rank = 0; rank < worldSize; rank++) {
    const layout = shardLayout(numClasses, worldSize, rank);
    const name = shardFileName(rank, worldSize);
    const file = join(checkpointDir, name);
    verifyCheckpointFile(checkpointDir, meta, name);
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
      for (let local = 0; local < layout.numLocalClasses; local += chunkRows) {
        const count = Math.min(chunkRows, layout.numLocalClasses - local);
        const block = noGrad(() =>
          tidy(() => {
            const raw = reader.readRows('weight', local, count, staging);
            const values = raw.dtype === 'float32' ? raw : raw.to('float32');
            assertFiniteTensor(file, `weight (rows ${local} to ${local + count - 1})`, values);
            return values;
          }),
        );
        try {
          yield { first, count, block, shard: rank };
        } finally {
          block.dispose();
        }
        first += count;
      }
    } finally {
      reader.close();
    }
  }
  if (first !== numClasses) throw new Error(`checkpoint centres: read ${first} rows, expected ${numClasses}`);
}

/**
 * The L2-normalized rows of the checkpoint's FC `weight`, all `meta.numClasses` classes in global
 * order, read shard by shard and `chunkRows` rows at a time (memory stays at one block whatever
 * the class count). Every shard file is checked against its recorded digest before it is read, and
 * every block for NaN/Inf. Zero rows stay zero.
 */
export function* checkpointCenterRows(checkpointDir: string, meta: CheckpointMeta, options: { chunkRows?: number } = {}): Generator<CheckpointCenterRows> {
  checkCenterMeta(checkpointDir, meta);
  for (const { first, count, block, shard } of storedCenterBlocks(checkpointDir, meta, chunkRowsOption(meta.embeddingSize, options.chunkRows))) {
    const normalized = normalizedCenterRows(block);
    try {
      yield { first, count, rows: normalized.dataSync() as Float32Array, shard };
    } finally {
      normalized.dispose();
    }
  }
}

/**
 * Writes the L2-normalized rows of the checkpoint's FC `weight` (all `meta.numClasses` classes,
 * shard by shard in rank order) to `outPath` as the safetensors tensor `centers` that
 * `plsc serve --centers` reads. Zero rows stay zero. The file appears only once complete.
 */
export function writeCheckpointCenters(checkpointDir: string, meta: CheckpointMeta, outPath: string, options: CheckpointCentersOptions = {}): CheckpointCentersResult {
  checkCenterMeta(checkpointDir, meta);
  const { numClasses, embeddingSize, worldSize } = meta;
  const chunkRows = chunkRowsOption(embeddingSize, options.chunkRows);
  const metadata = { ...(Number.isInteger(meta.step) ? { step: String(meta.step) } : {}), ...(options.metadata ?? {}) };
  mkdirSync(dirname(outPath), { recursive: true });
  const writer = new CentersWriter(outPath, numClasses, embeddingSize, { fp16: options.fp16 ?? false, metadata });
  const shardRows = new Array<number>(worldSize).fill(0);
  try {
    for (const { count, block, shard } of storedCenterBlocks(checkpointDir, meta, chunkRows)) {
      writer.append(block);
      shardRows[shard]! += count;
    }
    writer.finish();
  } catch (error) {
    writer.abort();
    throw error;
  }
  const bytes = statSync(outPath).size;
  return { path: outPath, numClasses, embeddingSize, dtype: writer.dtype, bytes, shardRows };
}
