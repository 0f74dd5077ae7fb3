// The safetensors header codec: the 8-byte little-endian length prefix and the JSON header that
// maps each name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data
// section) plus an optional "__metadata__" string map, written and validated exactly as the
// Python/Rust `safetensors` library does. Pure bytes and JSON, no tensors: the torch readers and
// writers and the serving side's class centres (which must not load libtorch) share it.
import type { DType } from './native.js';

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

/** Sets obj[key] as an own property even for keys like '__proto__' that a header may contain. */
export function defineOwn<T>(obj: Record<string, T>, key: string, value: T): void {
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
export function decodeSafetensorsHeader(source: string, headerBytes: Uint8Array, totalBytes: number): SafetensorsHeader {
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
        defineOwn(metadata, key, value);
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
export function safetensorsHeaderLength(source: string, prefix: Uint8Array, totalBytes: number): number {
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
  const n = safetensorsHeaderLength(source, bytes.subarray(0, 8), bytes.length);
  return decodeSafetensorsHeader(source, bytes.subarray(8, 8 + n), bytes.length);
}
