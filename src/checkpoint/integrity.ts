// Checkpoint files verified on load: meta.json records the sha256 and size of every file the
// checkpoint holds; loaders check them (naming the file that differs) and refuse weights holding
// NaN or Inf (naming file and tensor). Checkpoints written before digests were recorded still load,
// with a note.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as F from '../torch/ops.js';
import { tidy } from '../torch/scope.js';
import type { DType } from '../torch/native.js';
import type { Tensor } from '../torch/tensor.js';
import { loadSafetensors } from '../torch/safetensors.js';

export interface FileDigest {
  sha256: string;
  bytes: number;
}

/** The digests part of a checkpoint's meta.json (absent in checkpoints written before they were recorded). */
export interface RecordedDigests {
  files?: Record<string, FileDigest>;
}

/** A checkpoint file that is missing, changed, truncated or holds non-finite values. */
export class CheckpointIntegrityError extends Error {
  constructor(
    readonly file: string,
    message: string,
    readonly tensorName?: string,
  ) {
    super(message);
    this.name = 'CheckpointIntegrityError';
  }
}

const READ_CHUNK = 8 << 20;
const SIDECAR_SUFFIX = '.sha256.json';

// Files already hashed by this process, keyed by path, size, mtime and inode: a file read twice
// (re-sharding reads a source shard once per target shard it overlaps) is hashed once.
const digestCache = new Map<string, string>();

/** sha256 and size of a file, read in chunks. */
export function digestFile(path: string): FileDigest {
  const fd = openSync(path, 'r');
  try {
    const stat = fstatSync(fd);
    const key = `${resolve(path)}\0${stat.size}\0${stat.mtimeMs}\0${stat.ino}`;
    const cached = digestCache.get(key);
    if (cached !== undefined) return { sha256: cached, bytes: stat.size };
    const hash = createHash('sha256');
    const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK, Math.max(1, stat.size)));
    for (let position = 0; position < stat.size; ) {
      const got = readSync(fd, buffer, 0, buffer.length, position);
      if (got === 0) break;
      hash.update(buffer.subarray(0, got));
      position += got;
    }
    const sha256 = hash.digest('hex');
    digestCache.set(key, sha256);
    return { sha256, bytes: stat.size };
  } finally {
    closeSync(fd);
  }
}

/**
 * Records the digest of `path` beside it (`<file>.sha256.json`), so that the rank writing meta.json
 * need not hash every rank's file itself.
 */
export function writeDigestSidecar(path: string): void {
  writeFileSync(`${path}${SIDECAR_SUFFIX}`, JSON.stringify(digestFile(path)));
}

/** Digests of `names` in `dir`, from their sidecars when present (which are removed), else computed. */
export function collectDigests(dir: string, names: readonly string[]): Record<string, FileDigest> {
  const out: Record<string, FileDigest> = {};
  for (const name of names) {
    const sidecar = join(dir, `${name}${SIDECAR_SUFFIX}`);
    let digest: FileDigest | null = null;
    if (existsSync(sidecar)) {
      const parsed = JSON.parse(readFileSync(sidecar, 'utf8')) as Partial<FileDigest>;
      if (typeof parsed.sha256 === 'string' && Number.isSafeInteger(parsed.bytes)) digest = { sha256: parsed.sha256, bytes: parsed.bytes as number };
      rmSync(sidecar, { force: true });
    }
    out[name] = digest ?? digestFile(join(dir, name));
  }
  return out;
}

const notedUnverified = new Set<string>();

/** Prints, once per checkpoint directory, that its files carry no digests. */
function noteUnverified(dir: string): void {
  const key = resolve(dir);
  if (notedUnverified.has(key)) return;
  notedUnverified.add(key);
  console.warn(`plsc: note: checkpoint ${key} records no file digests (written before plsc recorded them): its files are loaded unverified; values are still checked finite`);
}

export type FileVerification = { status: 'verified'; digest: FileDigest } | { status: 'unrecorded' };

/**
 * Checks `dir/name` against the digest meta.json records. 'unrecorded' for a checkpoint without digests
 * (after a one-time note unless `quiet`); throws CheckpointIntegrityError when missing, of another size,
 * of another sha256, or not listed although the checkpoint lists its files.
 */
export function verifyCheckpointFile(dir: string, recorded: RecordedDigests, name: string, { quiet = false }: { quiet?: boolean } = {}): FileVerification {
  const path = join(dir, name);
  if (recorded.files === undefined) {
    if (!quiet) noteUnverified(dir);
    if (!existsSync(path)) throw new CheckpointIntegrityError(path, `checkpoint file ${path} is missing`);
    return { status: 'unrecorded' };
  }
  const expected = Object.prototype.hasOwnProperty.call(recorded.files, name) ? recorded.files[name] : undefined;
  if (expected === undefined) {
    throw new CheckpointIntegrityError(path, `checkpoint file ${path} is not listed in ${join(dir, 'meta.json')} (it lists ${Object.keys(recorded.files).join(', ') || 'nothing'}): it was added after the save`);
  }
  if (!existsSync(path)) throw new CheckpointIntegrityError(path, `checkpoint file ${path} is missing (meta.json records ${expected.bytes} bytes)`);
  const actual = digestFile(path);
  if (actual.bytes !== expected.bytes) {
    throw new CheckpointIntegrityError(path, `checkpoint file ${path} has ${actual.bytes} bytes but meta.json records ${expected.bytes}: it was truncated or replaced after the save`);
  }
  if (actual.sha256 !== expected.sha256) {
    throw new CheckpointIntegrityError(
      path,
      `checkpoint file ${path} is corrupt: its sha256 ${actual.sha256.slice(0, 16)}... differs from the ${expected.sha256.slice(0, 16)}... that meta.json records (changed on disk after the save)`,
    );
  }
  return { status: 'verified', digest: actual };
}

const FLOATING: ReadonlySet<DType> = new Set<DType>(['float16', 'bfloat16', 'float32', 'float64']);

/** The number of NaN and of ±Inf values of a floating tensor (zeros for other dtypes). */
export function countNonFinite(tensor: Tensor): { nan: number; infinite: number } {
  if (!FLOATING.has(tensor.dtype) || tensor.numel === 0) return { nan: 0, infinite: 0 };
  return tidy(() => {
    const finite = F.sum(F.isfinite(tensor), undefined, false, 'int64').item();
    const nan = F.sum(F.isnan(tensor), undefined, false, 'int64').item();
    return { nan, infinite: tensor.numel - finite - nan };
  });
}

/** Throws CheckpointIntegrityError naming `file` and the tensor when a tensor holds NaN or Inf. */
export function assertFiniteTensor(file: string, name: string, tensor: Tensor): void {
  const { nan, infinite } = countNonFinite(tensor);
  if (nan + infinite === 0) return;
  throw new CheckpointIntegrityError(
    file,
    `${file}: tensor '${name}' holds ${nan + infinite} non-finite value${nan + infinite === 1 ? '' : 's'} (${nan} NaN, ${infinite} Inf) of ${tensor.numel}: ` +
      'the file is corrupt, or was saved from a run that had diverged',
    name,
  );
}

export function assertFiniteTensors(file: string, tensors: Record<string, Tensor>): void {
  for (const [name, tensor] of Object.entries(tensors)) assertFiniteTensor(file, name, tensor);
}

/**
 * A checkpoint file's tensors, its digest checked against meta.json first and its values checked
 * finite. The caller owns the tensors.
 */
export function loadVerifiedCheckpointFile(dir: string, recorded: RecordedDigests, name: string): Record<string, Tensor> {
  verifyCheckpointFile(dir, recorded, name);
  const path = join(dir, name);
  const tensors = loadSafetensors(path);
  try {
    assertFiniteTensors(path, tensors);
  } catch (error) {
    for (const tensor of Object.values(tensors)) tensor.dispose();
    throw error;
  }
  return tensors;
}
