// `plsc checkpoint verify`: every file of a checkpoint checked the way loading would check it, and
// more: meta.json readable, each file's size and sha256 against meta.json, each safetensors header,
// every tensor's values finite, each FC shard's row count. One result per file.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadSafetensors, readSafetensorsHeader } from '../torch/safetensors.js';
import { shardLayout } from '../head/shard-layout.js';
import { listCheckpoints, readMeta, shardFileName, type CheckpointMeta } from '../checkpoint/format.js';
import { countNonFinite, verifyCheckpointFile } from '../checkpoint/integrity.js';
import { formatByteCount } from './disk.js';

export interface FileCheck {
  /** The file's name inside the step directory. */
  file: string;
  ok: boolean;
  /** What was checked (ok) or what is wrong (not ok). */
  detail: string;
}

export interface CheckpointCheck {
  /** The step directory. */
  dir: string;
  ok: boolean;
  /** True when meta.json records no digests (a checkpoint written before they were recorded). */
  unrecordedDigests: boolean;
  files: FileCheck[];
}

function checkSafetensorsFile(dir: string, meta: CheckpointMeta, name: string): FileCheck {
  const path = join(dir, name);
  try {
    const verification = verifyCheckpointFile(dir, meta, name, { quiet: true });
    const header = readSafetensorsHeader(path);
    const shard = /^fc-rank-(\d+)-of-(\d+)\.safetensors$/.exec(name);
    if (shard !== null) {
      const rows = shardLayout(meta.numClasses, meta.worldSize, Number(shard[1])).numLocalClasses;
      for (const tensorName of meta.shardTensors) {
        const entry = header.entries.find((e) => e.name === tensorName);
        if (entry === undefined) throw new Error(`${path}: no tensor '${tensorName}' (meta.json's shardTensors names it)`);
        if (entry.shape[0] !== rows) throw new Error(`${path}: tensor '${tensorName}' has ${entry.shape[0]} rows, expected ${rows} for rank ${shard[1]} of ${meta.worldSize}`);
      }
    }
    // One tensor at a time, so a large shard never needs all its tensors in memory at once.
    for (const entry of header.entries) {
      const loaded = loadSafetensors(path, { names: [entry.name] });
      const tensor = loaded[entry.name];
      try {
        const { nan, infinite } = tensor === undefined ? { nan: 0, infinite: 0 } : countNonFinite(tensor);
        if (nan + infinite > 0) throw new Error(`${path}: tensor '${entry.name}' holds ${nan} NaN and ${infinite} Inf values`);
      } finally {
        tensor?.dispose();
      }
    }
    const bytes = header.dataStart + header.dataBytes;
    const digest = verification.status === 'verified' ? `sha256 ${verification.digest.sha256.slice(0, 12)} matches` : 'sha256 not recorded';
    return { file: name, ok: true, detail: `${formatByteCount(bytes)}, ${digest}, ${header.entries.length} tensors finite` };
  } catch (error) {
    return { file: name, ok: false, detail: (error as Error).message };
  }
}

/** Checks one step directory (holding meta.json). */
export function verifyCheckpointStep(dir: string): CheckpointCheck {
  let meta: CheckpointMeta;
  try {
    meta = readMeta(dir, { requireShards: false });
  } catch (error) {
    return { dir, ok: false, unrecordedDigests: false, files: [{ file: 'meta.json', ok: false, detail: (error as Error).message }] };
  }
  const expected = ['backbone.safetensors', ...Array.from({ length: meta.worldSize }, (_, r) => shardFileName(r, meta.worldSize))];
  if (existsSync(join(dir, 'optimizer.safetensors')) || (meta.files !== undefined && 'optimizer.safetensors' in meta.files)) expected.splice(1, 0, 'optimizer.safetensors');
  // Files meta.json lists or the directory holds beyond the expected ones are checked (and reported) too.
  const extra = [...Object.keys(meta.files ?? {}), ...readdirSync(dir).filter((n) => n.endsWith('.safetensors'))].filter((n) => !expected.includes(n));
  const files: FileCheck[] = [{ file: 'meta.json', ok: true, detail: `step ${meta.step}, ${meta.numClasses} classes x ${meta.embeddingSize} in ${meta.worldSize} FC shard${meta.worldSize === 1 ? '' : 's'}` }];
  for (const name of [...expected, ...new Set(extra)]) files.push(checkSafetensorsFile(dir, meta, name));
  return { dir, ok: files.every((f) => f.ok), unrecordedDigests: meta.files === undefined, files };
}

/** A step directory, or every complete step of a checkpoint root. */
export function verifyCheckpoints(path: string): CheckpointCheck[] {
  if (!existsSync(path)) throw new Error(`${path}: no such directory`);
  if (existsSync(join(path, 'meta.json'))) return [verifyCheckpointStep(path)];
  const steps = listCheckpoints(path);
  if (steps.length === 0) throw new Error(`${path}: neither a checkpoint step directory (no meta.json) nor a checkpoint root (no step-XXXXXXXX/ with a meta.json inside)`);
  return steps.map((s) => verifyCheckpointStep(s.path));
}
