// Class centres of a training checkpoint, streamed: every FC shard's `weight` rows are read from
// the shard file a chunk at a time, L2-normalized on libtorch and appended to one safetensors file
// (tensor `centers` [C, D], F32 or F16, classes in global order). The header is written first
// because C and D are known from meta.json, so memory stays at one chunk whatever the class count.
import { closeSync, mkdirSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as F from '../torch/ops.js';
import { noGrad } from '../torch/autograd.js';
import { tidy } from '../torch/scope.js';
import type { DType } from '../torch/native.js';
import { readSafetensorsHeader, type SafetensorsDType } from '../torch/safetensors.js';
import { shardLayout } from '../head/shard-layout.js';
import { shardFileName, type CheckpointMeta } from '../train/checkpoint.js';
import { assertFiniteTensor, verifyCheckpointFile } from '../train/checkpoint-integrity.js';

export interface CheckpointCentersOptions {
  /** Store float16 (rows are normalized in float32 first). Default false: float32. */
  fp16?: boolean;
  /** Rows normalized and written per step (default: about 16 MiB of float32 rows). */
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

const READABLE: Partial<Record<SafetensorsDType, { dtype: DType; bytes: number }>> = {
  F32: { dtype: 'float32', bytes: 4 },
  F16: { dtype: 'float16', bytes: 2 },
  BF16: { dtype: 'bfloat16', bytes: 2 },
  F64: { dtype: 'float64', bytes: 8 },
};

const DEFAULT_CHUNK_BYTES = 16 << 20;

function writeFully(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
}

function readFully(fd: number, target: Uint8Array, position: number, where: string): void {
  for (let done = 0; done < target.length; ) {
    const got = readSync(fd, target, done, target.length - done, position + done);
    if (got === 0) throw new Error(`${where}: unexpected end of file at byte ${position + done} (truncated?)`);
    done += got;
  }
}

/** The safetensors prefix and header for one [count, dim] tensor, padded to 8 bytes as the reference writer does. */
function centersHeader(name: string, dtype: 'F32' | 'F16', count: number, dim: number, metadata: Record<string, string>): { bytes: Uint8Array; dataBytes: number } {
  const dataBytes = count * dim * (dtype === 'F32' ? 4 : 2);
  let text = JSON.stringify({ __metadata__: metadata, [name]: { dtype, shape: [count, dim], data_offsets: [0, dataBytes] } });
  text += ' '.repeat((8 - (Buffer.byteLength(text) % 8)) % 8);
  const header = Buffer.from(text, 'utf8');
  const out = Buffer.alloc(8 + header.length);
  out.writeBigUInt64LE(BigInt(header.length), 0);
  header.copy(out, 8);
  return { bytes: out, dataBytes };
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

function checkCenterMeta(checkpointDir: string, meta: CheckpointMeta): void {
  const { numClasses, embeddingSize, worldSize } = meta;
  const metaFile = join(checkpointDir, 'meta.json');
  if (!Number.isInteger(numClasses) || numClasses < 1) throw new Error(`${metaFile}: numClasses must be a positive integer, got ${String(numClasses)}`);
  if (!Number.isInteger(embeddingSize) || embeddingSize < 1) throw new Error(`${metaFile}: embeddingSize must be a positive integer, got ${String(embeddingSize)}`);
  if (!Number.isInteger(worldSize) || worldSize < 1 || worldSize > numClasses) throw new Error(`${metaFile}: worldSize ${String(worldSize)} does not split ${numClasses} classes`);
}

/**
 * The L2-normalized rows of the checkpoint's FC `weight`, all `meta.numClasses` classes in global
 * order, read shard by shard and `chunkRows` rows at a time (memory stays at one block whatever
 * the class count). Zero rows stay zero.
 */
export function* checkpointCenterRows(checkpointDir: string, meta: CheckpointMeta, options: { chunkRows?: number } = {}): Generator<CheckpointCenterRows> {
  checkCenterMeta(checkpointDir, meta);
  const { numClasses, embeddingSize, worldSize } = meta;
  const chunkRows = options.chunkRows ?? Math.max(1, Math.floor(DEFAULT_CHUNK_BYTES / (embeddingSize * 4)));
  if (!Number.isInteger(chunkRows) || chunkRows < 1) throw new Error(`checkpoint centres: chunkRows must be a positive integer, got ${chunkRows}`);
  let first = 0;
  for (let rank = 0; rank < worldSize; rank++) {
    const layout = shardLayout(numClasses, worldSize, rank);
    const file = join(checkpointDir, shardFileName(rank, worldSize));
    const entry = readSafetensorsHeader(file);
    const weight = entry.entries.find((e) => e.name === 'weight');
    if (weight === undefined) throw new Error(`${file}: no tensor 'weight' (it holds ${entry.entries.map((e) => e.name).join(', ') || 'nothing'})`);
    const where = `${file}: tensor 'weight'`;
    if (weight.shape.length !== 2 || weight.shape[0] !== layout.numLocalClasses || weight.shape[1] !== embeddingSize) {
      throw new Error(`${where} has shape [${weight.shape.join(', ')}], expected [${layout.numLocalClasses}, ${embeddingSize}] (rank ${rank} of ${worldSize}, ${numClasses} classes)`);
    }
    const element = READABLE[weight.dtype];
    if (element === undefined) throw new Error(`${where} has dtype ${weight.dtype}, expected F32, F16, BF16 or F64`);
    const rowBytes = embeddingSize * element.bytes;
    const buffer = new Uint8Array(Math.min(chunkRows, layout.numLocalClasses) * rowBytes);
    const input = openSync(file, 'r');
    try {
      for (let local = 0; local < layout.numLocalClasses; local += chunkRows) {
        const count = Math.min(chunkRows, layout.numLocalClasses - local);
        const raw = buffer.subarray(0, count * rowBytes);
        readFully(input, raw, entry.dataStart + weight.begin + local * rowBytes, where);
        const rows = noGrad(() =>
          tidy(() => {
            const view = F.fromTypedArray(raw, [count, embeddingSize], element.dtype);
            const values = element.dtype === 'float32' ? view : view.to('float32');
            return F.normalize(values, 2, 1).dataSync() as Float32Array;
          }),
        );
        yield { first, count, rows, shard: rank };
        first += count;
      }
    } finally {
      closeSync(input);
    }
  }
  if (first !== numClasses) throw new Error(`checkpoint centres: read ${first} rows, expected ${numClasses}`);
}

/**
 * Writes the L2-normalized rows of the checkpoint's FC `weight` (all `meta.numClasses` classes,
 * shard by shard in rank order) to `outPath` as the safetensors tensor `centers` that
 * `plsc serve --centers` reads. Zero rows stay zero. The file appears only once complete.
 */
export function writeCheckpointCenters(checkpointDir: string, meta: CheckpointMeta, outPath: string, options: CheckpointCentersOptions = {}): CheckpointCentersResult {
  checkCenterMeta(checkpointDir, meta);
  const { numClasses, embeddingSize, worldSize } = meta;
  const fp16 = options.fp16 ?? false;

  const header = centersHeader('centers', fp16 ? 'F16' : 'F32', numClasses, embeddingSize, {
    num_classes: String(numClasses),
    embedding_size: String(embeddingSize),
    normalized: 'l2',
    ...(Number.isInteger(meta.step) ? { step: String(meta.step) } : {}),
    ...(options.metadata ?? {}),
  });
  mkdirSync(dirname(outPath), { recursive: true });
  const tmpPath = `${outPath}.tmp-${process.pid}`;
  const out = openSync(tmpPath, 'w');
  const shardRows = new Array<number>(worldSize).fill(0);
  try {
    writeFully(out, header.bytes);
    for (const block of checkpointCenterRows(checkpointDir, meta, options.chunkRows !== undefined ? { chunkRows: options.chunkRows } : {})) {
      const bytes = fp16
        ? noGrad(() => tidy(() => F.fromTypedArray(block.rows, [block.count, embeddingSize]).to('float16').bytes()))
        : new Uint8Array(block.rows.buffer, block.rows.byteOffset, block.rows.byteLength);
      writeFully(out, bytes);
      shardRows[block.shard]! += block.count;
    }
  } catch (error) {
    closeSync(out);
    rmSync(tmpPath, { force: true });
    throw error;
  }
  closeSync(out);
  renameSync(tmpPath, outPath);
  return { path: outPath, numClasses, embeddingSize, dtype: fp16 ? 'float16' : 'float32', bytes: header.bytes.length + header.dataBytes, shardRows };
}
