// Checkpoints written during training (every rank its part), resumed exactly, and re-sharded to
// another worker count; the format itself is src/checkpoint/format.ts.
// Everything is written into .tmp-step-00001200 and renamed once complete, so a crash mid-write
// leaves the previous checkpoint intact.
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Tensor } from '../torch/tensor.js';
import { saveSafetensors } from '../torch/safetensors.js';
import { shardLayout } from '../head/shard-layout.js';
import { collectDigests, verifyCheckpointFile, writeDigestSidecar } from '../checkpoint/integrity.js';
import { CHECKPOINT_FORMAT, checkpointName, listCheckpoints, readClassRows, readMeta, shardFileName, shardSet, type CheckpointMeta } from '../checkpoint/format.js';
import { withDiskErrors } from './disk.js';
import type { ClassStorage } from '../config/class-storage.js';
import { loadShardRowsInto, writeShardFile } from '../checkpoint/shard-io.js';

/** Bytes a safetensors file of these tensors takes (the data; the header is small). */
function tensorBytes(tensors: Record<string, Tensor>): number {
  const size: Record<string, number> = { bool: 1, uint8: 1, int8: 1, int16: 2, float16: 2, bfloat16: 2, int32: 4, float32: 4, float64: 8, int64: 8 };
  return Object.values(tensors).reduce((sum, t) => sum + t.numel * (size[t.dtype] ?? 8), 0);
}

/** `latest` resolves to the newest checkpoint in checkpointDir; any other value is a directory. */
export function resolveCheckpoint(spec: string, checkpointDir: string): string {
  if (spec === 'latest') {
    const all = listCheckpoints(checkpointDir);
    const last = all[all.length - 1];
    if (last === undefined) throw new Error(`resume: no checkpoint in ${resolve(checkpointDir)}`);
    return last.path;
  }
  if (!existsSync(join(spec, 'meta.json'))) throw new Error(`resume: ${resolve(spec)} is not a checkpoint (no meta.json)`);
  return spec;
}

export interface SaveCheckpointParts {
  /** This process's rank (rank 0 writes the backbone, the optimizer and meta.json). */
  rank: number;
  /** Number of FC shards the classes are split into (the world size for dist_* heads, else 1). */
  shardCount: number;
  meta: Omit<CheckpointMeta, 'format' | 'worldSize' | 'savedAt'>;
  /** rank 0 only */
  backbone?: Record<string, Tensor>;
  optimizer?: { tensors: Record<string, Tensor>; metadata: Record<string, string> };
  /** This rank's FC shard and its index, or null on ranks that hold no shard of their own. */
  shard: { index: number; tensors: Record<string, Tensor> } | null;
  /** Waits for every rank (a barrier); identity for one worker. */
  barrier: () => void;
  keepLast: number;
}

/** Every rank calls this with its parts; returns the final directory. */
export function saveCheckpoint(checkpointDir: string, parts: SaveCheckpointParts): string {
  const name = checkpointName(parts.meta.step);
  const finalDir = join(checkpointDir, name);
  const tmpDir = join(checkpointDir, `.tmp-${name}`);
  if (parts.rank === 0) {
    rmSync(tmpDir, { recursive: true, force: true });
    withDiskErrors(tmpDir, 'create checkpoint directory', () => mkdirSync(tmpDir, { recursive: true }));
  }
  parts.barrier();
  // A failed write names its file and the bytes this rank's part of the checkpoint needs.
  const bytesNeeded = (parts.shard === null ? 0 : tensorBytes(parts.shard.tensors)) + (parts.backbone ? tensorBytes(parts.backbone) : 0) + (parts.optimizer ? tensorBytes(parts.optimizer.tensors) : 0);
  if (parts.shard !== null) {
    const shard = parts.shard;
    const shardPath = join(tmpDir, shardFileName(shard.index, parts.shardCount));
    withDiskErrors(shardPath, 'write checkpoint file', () => {
      saveSafetensors(shardPath, shard.tensors, { rank: String(shard.index), worldSize: String(parts.shardCount) });
      writeDigestSidecar(shardPath);
    }, bytesNeeded);
  }
  if (parts.rank === 0) {
    if (parts.backbone === undefined) throw new Error('saveCheckpoint: rank 0 must provide the backbone state');
    const backbone = parts.backbone;
    const backbonePath = join(tmpDir, 'backbone.safetensors');
    withDiskErrors(backbonePath, 'write checkpoint file', () => saveSafetensors(backbonePath, backbone), bytesNeeded);
    const optimizer = parts.optimizer;
    const optimizerPath = join(tmpDir, 'optimizer.safetensors');
    if (optimizer) withDiskErrors(optimizerPath, 'write checkpoint file', () => saveSafetensors(optimizerPath, optimizer.tensors, optimizer.metadata), bytesNeeded);
  }
  parts.barrier();
  if (parts.rank === 0) {
    const fileNames = ['backbone.safetensors', ...(parts.optimizer ? ['optimizer.safetensors'] : []), ...Array.from({ length: parts.shardCount }, (_, r) => shardFileName(r, parts.shardCount))];
    const meta: CheckpointMeta = { format: CHECKPOINT_FORMAT, worldSize: parts.shardCount, savedAt: new Date().toISOString(), ...parts.meta, files: collectDigests(tmpDir, fileNames) };
    const metaPath = join(tmpDir, 'meta.json');
    withDiskErrors(metaPath, 'write checkpoint file', () => writeFileSync(metaPath, `${JSON.stringify(meta, null, 2)}\n`));
    rmSync(finalDir, { recursive: true, force: true });
    renameSync(tmpDir, finalDir);
    const all = listCheckpoints(checkpointDir);
    for (const old of all.slice(0, Math.max(0, all.length - parts.keepLast))) rmSync(old.path, { recursive: true, force: true });
  }
  parts.barrier();
  return finalDir;
}

/**
 * Loads this rank's shard for `worldSize` workers into the head's tensors, tile by tile, each
 * converted to the tensor's dtype (resume across worker counts and class storage dtypes).
 */
export function loadShardInto(dir: string, meta: CheckpointMeta, rank: number, worldSize: number, targets: Record<string, Tensor>): void {
  loadShardRowsInto(shardSet(dir, meta), shardLayout(meta.numClasses, worldSize, rank).classOffset, targets);
}

/** This rank's shard for `worldSize` workers, re-split from the checkpoint when its world size differs. */
export function loadShard(dir: string, meta: CheckpointMeta, rank: number, worldSize: number): Record<string, Tensor> {
  const layout = shardLayout(meta.numClasses, worldSize, rank);
  return readClassRows(dir, meta, layout.classOffset, layout.numLocalClasses);
}

/**
 * `plsc reshard`: writes a copy of a checkpoint whose FC shards are split for `worldSize` workers,
 * streamed a tile of rows at a time; `storage` converts weight and weight_momentum to that dtype.
 */
export function reshardCheckpoint(source: string, worldSize: number, out: string, options: { storage?: ClassStorage } = {}): CheckpointMeta {
  const meta = readMeta(source);
  if (worldSize > meta.numClasses) throw new Error(`reshard: ${meta.numClasses} classes cannot be split over ${worldSize} workers`);
  if (resolve(source) === resolve(out)) throw new Error('reshard: --out must differ from --checkpoint');
  const tmp = `${out.replace(/\/+$/, '')}.tmp-reshard`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  // A failed copy (a bad digest, a full disk) leaves neither a half-written folder nor `out` touched.
  try {
    const copied: string[] = [];
    for (const file of ['backbone.safetensors', 'optimizer.safetensors']) {
      if (!existsSync(join(source, file))) continue;
      verifyCheckpointFile(source, meta, file);
      copyFileSync(join(source, file), join(tmp, file));
      copied.push(file);
    }
    const storage = options.storage ?? meta.classStorage ?? 'float32';
    const shards = shardSet(source, meta);
    for (let r = 0; r < worldSize; r++) {
      const layout = shardLayout(meta.numClasses, worldSize, r);
      writeShardFile(join(tmp, shardFileName(r, worldSize)), shards, layout.classOffset, layout.numLocalClasses, storage, { rank: String(r), worldSize: String(worldSize) });
    }
    const files = collectDigests(tmp, [...copied, ...Array.from({ length: worldSize }, (_, r) => shardFileName(r, worldSize))]);
    const resharded: CheckpointMeta = { ...meta, worldSize, classStorage: storage, savedAt: new Date().toISOString(), files };
    writeFileSync(join(tmp, 'meta.json'), `${JSON.stringify(resharded, null, 2)}\n`);
    rmSync(out, { recursive: true, force: true });
    renameSync(tmp, out);
    return resharded;
  } catch (error) {
    rmSync(tmp, { recursive: true, force: true });
    throw error;
  }
}
