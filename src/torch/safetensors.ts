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
import './tensor-methods.js';

/** A dtype name as it appears in a safetensors header. */
export type SafetensorsDType = 'BOOL' | 'U8' | 'I8' | 'I16' | 'F16' | 'BF16' | 'I32' | 'F32' | 'F64' | 'I64';

const TO_SAFETENSORS: Record<DType, SafetensorsDType> = {
  bool: 'BOOL',
  uint8: 'U8',
  int8: 'I8',
  int16: 'I16',
  float16: 'F16',
  bfloat16: 'BF16',
  int32: 'I32',
  float32: 'F32',
  float64: 'F64',
  int64: 'I64',
};

const FROM_SAFETENSORS: Record<SafetensorsDType, DType> = {
  BOOL: 'bool',
  U8: 'uint8',
  I8: 'int8',
  I16: 'int16',
  F16: 'float16',
  BF16: 'bfloat16',
  I32: 'int32',
  F32: 'float32',
  F64: 'float64',
  I64: 'int64',
};

const ELEMENT_BYTES: Record<SafetensorsDType, number> = { BOOL: 1, U8: 1, I8: 1, I16: 2, F16: 2, BF16: 2, I32: 4, F32: 4, F64: 8, I64: 8 };

// Position of each dtype in the Rust library's `Dtype` enum (declared in increasing alignment);
// the writer orders tensors by this rank, descending, then by name.
const DTYPE_RANK: Record<SafetensorsDType, number> = { BOOL: 0, U8: 1, I8: 2, I16: 5, F16: 7, BF16: 8, I32: 9, F32: 11, F64: 12, I64: 13 };

// Known to the format but without a plsc dtype.
const UNSUPPORTED = new Set(['U16', 'U32', 'U64', 'F8_E5M2', 'F8_E4M3', 'F8_E8M0', 'F4', 'F6_E2M3', 'F6_E3M2', 'C64']);

/** The largest header the reference implementation accepts. */
const MAX_HEADER_BYTES = 100_000_000;
/** Largest single read/write call (fs calls take int32 lengths). */
const IO_CHUNK = 1 << 30;

/** An error about a safetensors file or buffer, naming it (and the tensor, when there is one). */
export class SafetensorsError extends Error {
  constructor(
    readonly source: string,
    message: string,
    readonly tensorName?: string,
  ) {
    super(`${source}: ${tensorName === undefined ? '' : `tensor '${tensorName}': `}${message}`);
    this.name = 'SafetensorsError';
  }
}

/** One tensor's entry in a header. */
export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Byte offsets relative to the start of the data section. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Entries in data order (by offset). */
  entries: SafetensorsEntry[];
  metadata: Record<string, string>;
  /** Absolute offset of the data section (8 + header length). */
  dataStart: number;
  /** Bytes in the data section described by the header. */
  dataBytes: number;
}

function checkHostEndianness(): void {
  if (endianness() !== 'LE') throw new Error('safetensors: only little-endian hosts are supported');
}

/** Maps a safetensors dtype name to the plsc dtype. */
export function fromSafetensorsDType(dtype: SafetensorsDType): DType {
  return FROM_SAFETENSORS[dtype];
}

/** Bytes per element of a safetensors dtype. */
export function safetensorsElementBytes(dtype: SafetensorsDType): number {
  return ELEMENT_BYTES[dtype];
}

/** Maps a plsc dtype to its safetensors name. */
export function toSafetensorsDType(dtype: DType): SafetensorsDType {
  const found = TO_SAFETENSORS[dtype];
  if (found === undefined) throw new Error(`safetensors: dtype ${dtype} has no safetensors equivalent`);
  return found;
}

function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** A tensor's name, dtype and shape: all a header needs (the data may be written later). */
export interface SafetensorsTensorSpec {
  name: string;
  dtype: DType;
  shape: readonly number[];
}

/** A tensor's place in a planned file: its spec and the bytes it spans in the data section. */
export interface PlannedSafetensorsEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  begin: number;
  end: number;
}

export interface SafetensorsLayout {
  /** The 8-byte length prefix and the padded JSON header: the file's first bytes. */
  header: Buffer;
  /** Entries in data order (the order their bytes follow the header). */
  entries: PlannedSafetensorsEntry[];
  dataBytes: number;
}

/**
 * The header and data order of a file holding tensors of these specs, exactly as the reference
 * writer lays them out (by dtype alignment, largest first, then by name). Streaming writers use it
 * to write the header before any data.
 */
export function planSafetensorsLayout(specs: readonly SafetensorsTensorSpec[], metadata: Record<string, string> | undefined, source = '<buffer>'): SafetensorsLayout {
  const sorted = specs.map((spec) => {
    if (spec.name === '__metadata__') throw new SafetensorsError(source, "'__metadata__' is reserved and cannot name a tensor");
    const dtype = toSafetensorsDType(spec.dtype);
    const bytes = spec.shape.reduce((n, d) => n * d, ELEMENT_BYTES[dtype]);
    return { name: spec.name, dtype, shape: [...spec.shape], bytes };
  });
  sorted.sort((a, b) => DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype] || compareUtf8(a.name, b.name));
  const parts: string[] = [];
  if (metadata !== undefined) {
    const fields: string[] = [];
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') throw new SafetensorsError(source, `metadata '${key}' must be a string, got ${typeof value}`);
      fields.push(`${JSON.stringify(key)}:${JSON.stringify(value)}`);
    }
    parts.push(`"__metadata__":{${fields.join(',')}}`);
  }
  const entries: PlannedSafetensorsEntry[] = [];
  let offset = 0;
  for (const t of sorted) {
    parts.push(`${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${offset + t.bytes}]}`);
    entries.push({ name: t.name, dtype: t.dtype, shape: t.shape, begin: offset, end: offset + t.bytes });
    offset += t.bytes;
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  const header = Buffer.alloc(8 + padded, 0x20);
  header.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(header, 8);
  return { header, entries, dataBytes: offset };
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

/** Sets obj[key] as an own property even for keys like '__proto__' that a header may contain. */
function define<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseEntry(source: string, name: string, raw: unknown): SafetensorsEntry {
  if (!isRecord(raw)) throw new SafetensorsError(source, 'header entry is not an object', name);
  const dtype = raw.dtype;
  if (typeof dtype !== 'string') throw new SafetensorsError(source, 'header entry has no dtype string', name);
  if (!Object.prototype.hasOwnProperty.call(ELEMENT_BYTES, dtype)) {
    if (UNSUPPORTED.has(dtype)) throw new SafetensorsError(source, `dtype ${dtype} is not supported by plsc`, name);
    throw new SafetensorsError(source, `unknown dtype ${JSON.stringify(dtype)}`, name);
  }
  const shape = raw.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
    throw new SafetensorsError(source, `shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`, name);
  }
  const offsets = raw.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)) {
    throw new SafetensorsError(source, `data_offsets must be [begin, end] non-negative integers, got ${JSON.stringify(offsets)}`, name);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) throw new SafetensorsError(source, `data_offsets [${begin}, ${end}] end before they begin`, name);
  const st = dtype as SafetensorsDType;
  let expected = ELEMENT_BYTES[st];
  for (const d of shape as number[]) expected *= d;
  if (!Number.isSafeInteger(expected)) throw new SafetensorsError(source, `shape [${shape.join(', ')}] is too large`, name);
  if (end - begin !== expected) {
    throw new SafetensorsError(source, `shape [${shape.join(', ')}] of ${st} needs ${expected} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`, name);
  }
  return { name, dtype: st, shape: [...(shape as number[])], begin, end };
}

/**
 * Parses and validates a header. `headerBytes` are the N JSON bytes; `totalBytes` is the size of the
 * whole file or buffer (to check that the data section is complete).
 */
function parseHeader(source: string, headerBytes: Uint8Array, totalBytes: number): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new SafetensorsError(source, 'header is not valid UTF-8');
  }
  if (!text.startsWith('{')) throw new SafetensorsError(source, "header does not start with '{'");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new SafetensorsError(source, `header is not valid JSON (${(err as Error).message})`);
  }
  if (!isRecord(parsed)) throw new SafetensorsError(source, 'header is not a JSON object');
  const metadata: Record<string, string> = {};
  const entries: SafetensorsEntry[] = [];
  for (const [name, raw] of Object.entries(parsed)) {
    if (name === '__metadata__') {
      if (!isRecord(raw)) throw new SafetensorsError(source, '__metadata__ is not an object');
      for (const [key, value] of Object.entries(raw)) {
        if (typeof value !== 'string') throw new SafetensorsError(source, `__metadata__ '${key}' is not a string`);
        define(metadata, key, value);
      }
      continue;
    }
    entries.push(parseEntry(source, name, raw));
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let position = 0;
  for (const entry of entries) {
    if (entry.begin < position) {
      throw new SafetensorsError(source, `data_offsets [${entry.begin}, ${entry.end}] overlap the previous tensor (which ends at ${position})`, entry.name);
    }
    if (entry.begin > position) {
      throw new SafetensorsError(source, `data_offsets [${entry.begin}, ${entry.end}] leave a gap after byte ${position} of the data section`, entry.name);
    }
    position = entry.end;
  }
  const dataStart = 8 + headerBytes.length;
  const available = totalBytes - dataStart;
  if (available < position) {
    const last = entries[entries.length - 1] as SafetensorsEntry;
    throw new SafetensorsError(source, `truncated: the header describes ${position} bytes of tensor data but only ${available} follow it`, last.name);
  }
  if (available > position) {
    throw new SafetensorsError(source, `${available - position} bytes follow the last tensor's data (the header describes ${position})`);
  }
  return { entries, metadata, dataStart, dataBytes: position };
}

/** Reads the 8-byte length prefix and checks it against the total size. */
function headerLength(source: string, prefix: Uint8Array, totalBytes: number): number {
  if (totalBytes < 8) throw new SafetensorsError(source, `truncated: ${totalBytes} bytes, fewer than the 8-byte header length`);
  const length = Buffer.from(prefix.buffer, prefix.byteOffset, 8).readBigUInt64LE(0);
  if (length > BigInt(MAX_HEADER_BYTES)) throw new SafetensorsError(source, `header length ${length} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const n = Number(length);
  if (8 + n > totalBytes) throw new SafetensorsError(source, `truncated: header length ${n} but only ${totalBytes - 8} bytes follow the length prefix`);
  if (n < 2) throw new SafetensorsError(source, `header length ${n} is too small for a JSON object`);
  return n;
}

/** Parses the header of safetensors bytes held in memory. */
export function parseSafetensorsHeader(bytes: Uint8Array, source = '<buffer>'): SafetensorsHeader {
  const n = headerLength(source, bytes.subarray(0, 8), bytes.length);
  return parseHeader(source, bytes.subarray(8, 8 + n), bytes.length);
}

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
      const tensor = F.empty(entry.shape, { dtype: FROM_SAFETENSORS[entry.dtype] });
      define(out, entry.name, tensor);
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
  const n = headerLength(path, prefix, size);
  const headerBytes = new Uint8Array(n);
  readFully(fd, headerBytes, 8, path);
  return parseHeader(path, headerBytes, size);
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
      const tensor = F.empty(entry.shape, { dtype: FROM_SAFETENSORS[entry.dtype] });
      define(out, entry.name, tensor);
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
