// Checkpoints that resume exactly and re-shard to another worker count.
//
// <checkpointDir>/step-00001200/
//   meta.json                       world size, classes, step, epoch, data order, sampler step, config
//   backbone.safetensors            rank 0: backbone parameters and buffers
//   optimizer.safetensors           rank 0: backbone optimizer state (momentum buffers, param groups)
//   fc-rank-<r>-of-<W>.safetensors  each rank: its class shard (weight, weight_momentum[, bias, bias_momentum])
// Everything is written into .tmp-step-00001200 and renamed once complete, so a crash mid-write
// leaves the previous checkpoint intact.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Tensor } from '../torch/tensor.js';
import * as F from '../torch/ops.js';
import { tidy } from '../torch/scope.js';
import { readSafetensorsHeader, saveSafetensors } from '../torch/safetensors.js';
import { shardLayout } from '../head/shard-layout.js';
import type { DataOrderState } from '../data/sampler.js';
import { collectDigests, loadVerifiedCheckpointFile, verifyCheckpointFile, writeDigestSidecar, type FileDigest } from './checkpoint-integrity.js';
import { withDiskErrors } from './disk.js';
import { isClassStorage, type ClassStorage } from './class-storage.js';
import { loadShardRowsInto, readShardRows, writeShardFile, type ShardSet } from './shard-io.js';

export const CHECKPOINT_FORMAT = 'plsc-checkpoint-1';

export interface CheckpointMeta {
  format: typeof CHECKPOINT_FORMAT;
  /** The number of FC shards (the worker count of a dist_* run). */
  worldSize: number;
  /** Worker processes of the run that saved it (absent in checkpoints of older versions). */
  workers?: number;
  numClasses: number;
  embeddingSize: number;
  /** Optimizer steps completed. */
  step: number;
  epoch: number;
  dataOrder: DataOrderState;
  /** The head's class-sampling step counter. */
  samplerStep: number;
  seed: number;
  backbone: string;
  lossType: string;
  /** Names of the FC shard tensors (weight, weight_momentum, bias, bias_momentum). */
  shardTensors: string[];
  /** The dtype of weight and weight_momentum; absent in checkpoints from before 16-bit storage (float32). */
  classStorage?: ClassStorage;
  config: Record<string, unknown>;
  savedAt: string;
  /** The data the run trained on, checked when resuming (absent in checkpoints of older versions). */
  data?: CheckpointDataInfo;
  /** sha256 and size of every file of the checkpoint but meta.json (absent in checkpoints saved before digests were recorded). */
  files?: Record<string, FileDigest>;
}

export interface CheckpointDataInfo {
  /** Samples in the dataset. */
  samples: number;
  /** Digest of the label sequence in sample order (see labelOrderFingerprint). */
  labelOrderFingerprint: string;
  imageSize: number;
}

/** Bytes a safetensors file of these tensors takes (the data; the header is small). */
function tensorBytes(tensors: Record<string, Tensor>): number {
  const size: Record<string, number> = { bool: 1, uint8: 1, int8: 1, int16: 2, float16: 2, bfloat16: 2, int32: 4, float32: 4, float64: 8, int64: 8 };
  return Object.values(tensors).reduce((sum, t) => sum + t.numel * (size[t.dtype] ?? 8), 0);
}

const STEP_DIR = /^step-(\d+)$/;

export function checkpointName(step: number): string {
  return `step-${String(step).padStart(8, '0')}`;
}

export function shardFileName(rank: number, worldSize: number): string {
  return `fc-rank-${rank}-of-${worldSize}.safetensors`;
}

/** Completed checkpoints in a directory, oldest first. */
export function listCheckpoints(checkpointDir: string): { step: number; path: string }[] {
  if (!existsSync(checkpointDir)) return [];
  return readdirSync(checkpointDir)
    .map((name) => ({ name, match: STEP_DIR.exec(name) }))
    .filter((e) => e.match !== null && existsSync(join(checkpointDir, e.name, 'meta.json')))
    .map((e) => ({ step: Number(e.match?.[1]), path: join(checkpointDir, e.name) }))
    .sort((a, b) => a.step - b.step);
}

/**
 * The step directory a checkpoint path names (plsc export, eval and reshard): the path itself when
 * it holds meta.json, else the newest complete `step-*` checkpoint inside it.
 */
export function resolveCheckpointDir(spec: string): string {
  if (!existsSync(spec)) throw new Error(`checkpoint ${resolve(spec)}: no such directory`);
  if (!statSync(spec).isDirectory()) throw new Error(`checkpoint ${resolve(spec)} is not a directory (a .safetensors file is loaded with --model)`);
  if (existsSync(join(spec, 'meta.json'))) return spec;
  const newest = listCheckpoints(spec).at(-1);
  if (newest === undefined) {
    throw new Error(`checkpoint ${resolve(spec)}: neither a checkpoint step directory (no meta.json) nor a checkpoint root (no step-XXXXXXXX/ with a meta.json inside)`);
  }
  return newest.path;
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

/**
 * A checkpoint's meta.json, checked. With `requireShards` (the default) every FC shard it names must
 * be there too; export of the backbone alone and evaluation pass false (they never read the shards).
 */
export function readMeta(dir: string, { requireShards = true }: { requireShards?: boolean } = {}): CheckpointMeta {
  const path = join(dir, 'meta.json');
  let meta: CheckpointMeta;
  try {
    meta = JSON.parse(readFileSync(path, 'utf8')) as CheckpointMeta;
  } catch (err) {
    throw new Error(`checkpoint ${path}: cannot read meta.json (${(err as Error).message})`);
  }
  if (meta.format !== CHECKPOINT_FORMAT) throw new Error(`checkpoint ${path}: unknown format ${JSON.stringify(meta.format)}`);
  if (meta.classStorage !== undefined && !isClassStorage(meta.classStorage)) {
    throw new Error(`checkpoint ${path}: classStorage must be float32, bfloat16 or float16, got ${JSON.stringify(meta.classStorage)}`);
  }
  for (let r = 0; requireShards && r < meta.worldSize; r++) {
    const shard = join(dir, shardFileName(r, meta.worldSize));
    if (!existsSync(shard)) throw new Error(`checkpoint ${dir}: missing FC shard ${shardFileName(r, meta.worldSize)}`);
  }
  return meta;
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
 * Rows [start, start + count) of the full class matrix of every shard tensor, read from however many
 * shards the checkpoint was written with (each shard file is opened only if it overlaps).
 */
export function readClassRows(dir: string, meta: CheckpointMeta, start: number, count: number): Record<string, Tensor> {
  return readShardRows(shardSet(dir, meta), start, count);
}

/**
 * The checkpoint's FC shard files, each verified against the digest meta.json records, for streaming
 * their rows (src/train/shard-io.ts).
 */
export function shardSet(dir: string, meta: CheckpointMeta): ShardSet {
  const files = Array.from({ length: meta.worldSize }, (_, r) => {
    const layout = shardLayout(meta.numClasses, meta.worldSize, r);
    verifyCheckpointFile(dir, meta, shardFileName(r, meta.worldSize));
    return { path: join(dir, shardFileName(r, meta.worldSize)), classOffset: layout.classOffset, numLocalClasses: layout.numLocalClasses };
  });
  return { dir, files, tensorNames: meta.shardTensors, storage: meta.classStorage ?? 'float32' };
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
}

/** Shapes of a shard file's tensors without loading them (for reports). */
export function shardSummary(dir: string, meta: CheckpointMeta): { rank: number; rows: number }[] {
  return Array.from({ length: meta.worldSize }, (_, rank) => {
    const header = readSafetensorsHeader(join(dir, shardFileName(rank, meta.worldSize)));
    const weight = header.entries.find((e) => e.name === 'weight');
    return { rank, rows: weight?.shape[0] ?? 0 };
  });
}
