// The checkpoint format: directory layout, meta.json, shard file names, and reading the class rows
// back from however many shards a checkpoint was written with.
//
// <checkpointDir>/step-00001200/
//   meta.json                       world size, classes, step, epoch, data order, sampler step, config
//   backbone.safetensors            rank 0: backbone parameters and buffers
//   optimizer.safetensors           rank 0: backbone optimizer state (momentum buffers, param groups)
//   fc-rank-<r>-of-<W>.safetensors  each rank: its class shard (weight, weight_momentum[, bias, bias_momentum])
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Tensor } from '../torch/tensor.js';
import { readSafetensorsHeader } from '../torch/safetensors.js';
import { shardLayout } from '../head/shard-layout.js';
import type { DataOrderState } from '../data/sampler.js';
import { isClassStorage, type ClassStorage } from '../config/class-storage.js';
import { verifyCheckpointFile, type FileDigest } from './integrity.js';
import { readShardRows, type ShardSet } from './shard-io.js';

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
  /** Wall-clock seconds of training up to this checkpoint, over every run that led to it (a trainTime budget continues from it on resume; absent in older checkpoints). */
  trainSeconds?: number;
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

/**
 * Rows [start, start + count) of the full class matrix of every shard tensor, read from however many
 * shards the checkpoint was written with (each shard file is opened only if it overlaps).
 */
export function readClassRows(dir: string, meta: CheckpointMeta, start: number, count: number): Record<string, Tensor> {
  return readShardRows(shardSet(dir, meta), start, count);
}

/**
 * The checkpoint's FC shard files, each verified against the digest meta.json records, for streaming
 * their rows (shard-io.ts).
 */
export function shardSet(dir: string, meta: CheckpointMeta): ShardSet {
  const files = Array.from({ length: meta.worldSize }, (_, r) => {
    const layout = shardLayout(meta.numClasses, meta.worldSize, r);
    verifyCheckpointFile(dir, meta, shardFileName(r, meta.worldSize));
    return { path: join(dir, shardFileName(r, meta.worldSize)), classOffset: layout.classOffset, numLocalClasses: layout.numLocalClasses };
  });
  return { dir, files, tensorNames: meta.shardTensors, storage: meta.classStorage ?? 'float32' };
}

/** Shapes of a shard file's tensors without loading them (for reports). */
export function shardSummary(dir: string, meta: CheckpointMeta): { rank: number; rows: number }[] {
  return Array.from({ length: meta.worldSize }, (_, rank) => {
    const header = readSafetensorsHeader(join(dir, shardFileName(rank, meta.worldSize)));
    const weight = header.entries.find((e) => e.name === 'weight');
    return { rank, rows: weight?.shape[0] ?? 0 };
  });
}
