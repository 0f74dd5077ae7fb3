// safetensors read/write, byte-compatible with the Python/Rust `safetensors` library:
//   8 bytes little-endian u64 N | N bytes JSON header (space-padded to a multiple of 8) | tensor data.
// The header maps each name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative
// to the data section) plus an optional "__metadata__" string map. Tensors are laid out sorted by
// dtype alignment (largest first) then name, contiguous, row-major, little-endian.
import { closeSync, fstatSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';
import type { DType } from './native.js';
import { Tensor } from './tensor.js';
import * as F from './ops.js';
import {
  SafetensorsError,
  defineOwn,
  decodeSafetensorsHeader,
  fromSafetensorsDType,
  parseSafetensorsHeader,
  planSafetensorsLayout,
  safetensorsHeaderLength,
  type SafetensorsHeader,
  type SafetensorsEntry,
} from './safetensors-header.js';
import './tensor-methods.js';

export {
  SafetensorsError,
  fromSafetensorsDType,
  parseSafetensorsHeader,
  planSafetensorsLayout,
  safetensorsElementBytes,
  toSafetensorsDType,
  type PlannedSafetensorsEntry,
  type SafetensorsDType,
  type SafetensorsEntry,
  type SafetensorsHeader,
  type SafetensorsLayout,
  type SafetensorsTensorSpec,
} from './safetensors-header.js';

/** Largest single read/write call (fs calls take int32 lengths). */
const IO_CHUNK = 1 << 30;

function checkHostEndianness(): void {
  if (endianness() !== 'LE') throw new Error('safetensors: only little-endian hosts are supported');
}

interface Plan {
  header: Buffer;
  tensors: Tensor[];
  dataBytes: number;
}

function plan(tensors: Record<string, Tensor>, metadata: Record<string, string> | undefined, source: string): Plan {
  for (const [name, tensor] of Object.entries(tensors)) {
    if (!(tensor instanceof Tensor)) throw new SafetensorsError(source, 'value is not a Tensor', name);
    if (tensor.isDisposed) throw new SafetensorsError(source, 'was already disposed', name);
  }
  const specs = Object.entries(tensors).map(([name, tensor]) => ({ name, dtype: tensor.dtype, shape: tensor.shape }));
  const layout = planSafetensorsLayout(specs, metadata, source);
  return { header: layout.header, tensors: layout.entries.map((e) => tensors[e.name] as Tensor), dataBytes: layout.dataBytes };
}

/** Calls fn with the tensor's bytes (a contiguous CPU view, copied only when it has to be). */
function withBytes<T>(tensor: Tensor, fn: (bytes: Uint8Array) => T): T {
  const temporaries: Tensor[] = [];
  let source = tensor;
  if (source.device !== 'cpu') {
    source = source.to('cpu');
    temporaries.push(source);
  }
  if (!source.isContiguous()) {
    source = source.contiguous();
    temporaries.push(source);
  }
  try {
    return fn(new Uint8Array(source.viewBuffer()));
  } finally {
    for (const t of temporaries) t.dispose();
  }
}

/** The safetensors bytes of `tensors` (and optional string metadata), as the Python library writes them. */
export function serializeSafetensors(tensors: Record<string, Tensor>, metadata?: Record<string, string>): Buffer {
  checkHostEndianness();
  const { header, tensors: planned, dataBytes } = plan(tensors, metadata, '<buffer>');
  const out = Buffer.allocUnsafe(header.length + dataBytes);
  header.copy(out, 0);
  let position = header.length;
  for (const t of planned) {
    position += withBytes(t, (bytes) => {
      out.set(bytes, position);
      return bytes.length;
    });
  }
  return out;
}

/** Writes all of `bytes` at the fd's current position (in calls of at most 1 GiB). */
export function writeFully(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) {
    done += writeSync(fd, bytes, done, Math.min(IO_CHUNK, bytes.length - done));
  }
}

/**
 * Writes `tensors` to a safetensors file at `path` (through a temporary file renamed into place,
 * so a crash never leaves a half-written file under that name).
 */
export function saveSafetensors(path: string, tensors: Record<string, Tensor>, metadata?: Record<string, string>): void {
  checkHostEndianness();
  const { header, tensors: planned } = plan(tensors, metadata, path);
  const temporary = `${path}.tmp-${process.pid}`;
  const fd = openSync(temporary, 'w');
  try {
    writeFully(fd, header);
    for (const t of planned) withBytes(t, (bytes) => writeFully(fd, bytes));
    closeSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(temporary);
    throw err;
  }
  renameSync(temporary, path);
}

// ---- reading ------------------------------------------------------------------------------------

function selectEntries(source: string, header: SafetensorsHeader, names: readonly string[] | undefined): SafetensorsEntry[] {
  if (names === undefined) return header.entries;
  const byName = new Map(header.entries.map((e) => [e.name, e]));
  const missing = names.filter((n) => !byName.has(n));
  if (missing.length > 0) throw new SafetensorsError(source, `no tensor named ${missing.map((n) => `'${n}'`).join(', ')} (it holds ${byName.size})`);
  return names.map((n) => byName.get(n) as SafetensorsEntry);
}

export interface LoadSafetensorsOptions {
  /** Load only these tensors (default: all). */
  names?: readonly string[];
}

/** Tensors from safetensors bytes held in memory (copied into new tensors). */
export function deserializeSafetensors(bytes: Uint8Array, options: LoadSafetensorsOptions & { source?: string } = {}): Record<string, Tensor> {
  checkHostEndianness();
  const source = options.source ?? '<buffer>';
  const header = parseSafetensorsHeader(bytes, source);
  const out: Record<string, Tensor> = {};
  try {
    for (const entry of selectEntries(source, header, options.names)) {
      const tensor = F.empty(entry.shape, { dtype: fromSafetensorsDType(entry.dtype) });
      defineOwn(out, entry.name, tensor);
      tensor.copyFromArray(bytes.subarray(header.dataStart + entry.begin, header.dataStart + entry.end));
    }
  } catch (err) {
    for (const t of Object.values(out)) t.dispose();
    throw err;
  }
  return out;
}

/** Fills `target` from byte `position` of the file, or throws a SafetensorsError naming the file (and tensor). */
export function readFully(fd: number, target: Uint8Array, position: number, source: string, name?: string): void {
  let done = 0;
  while (done < target.length) {
    const got = readSync(fd, target, done, Math.min(IO_CHUNK, target.length - done), position + done);
    if (got === 0) throw new SafetensorsError(source, `truncated: unexpected end of file at byte ${position + done}`, name);
    done += got;
  }
}

/** Reads and validates the header of the open file `fd` (named `path` in errors). */
export function readHeaderFromFd(fd: number, path: string): SafetensorsHeader {
  const size = fstatSync(fd).size;
  const prefix = new Uint8Array(8);
  if (size >= 8) readFully(fd, prefix, 0, path);
  const n = safetensorsHeaderLength(path, prefix, size);
  const headerBytes = new Uint8Array(n);
  readFully(fd, headerBytes, 8, path);
  return decodeSafetensorsHeader(path, headerBytes, size);
}

/** Reads and validates only the header of a safetensors file (names, dtypes, shapes, metadata). */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const fd = openSync(path, 'r');
  try {
    return readHeaderFromFd(fd, path);
  } finally {
    closeSync(fd);
  }
}

/**
 * Loads tensors from a safetensors file. Each tensor's bytes are read with positional reads
 * straight into the new tensor's memory (no whole-file buffer). The caller owns the tensors.
 */
export function loadSafetensors(path: string, options: LoadSafetensorsOptions = {}): Record<string, Tensor> {
  checkHostEndianness();
  const fd = openSync(path, 'r');
  const out: Record<string, Tensor> = {};
  try {
    const header = readHeaderFromFd(fd, path);
    for (const entry of selectEntries(path, header, options.names)) {
      const tensor = F.empty(entry.shape, { dtype: fromSafetensorsDType(entry.dtype) });
      defineOwn(out, entry.name, tensor);
      if (entry.end > entry.begin) readFully(fd, new Uint8Array(tensor.viewBuffer()), header.dataStart + entry.begin, path, entry.name);
    }
  } catch (err) {
    for (const t of Object.values(out)) t.dispose();
    throw err;
  } finally {
    closeSync(fd);
  }
  return out;
}

/** The `__metadata__` map of a safetensors file ({} when it has none). */
export function readSafetensorsMetadata(path: string): Record<string, string> {
  return readSafetensorsHeader(path).metadata;
}
