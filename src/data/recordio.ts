/**
 * MXNet RecordIO (`.rec` + `.idx`) as used by insightface datasets (MS1M-ArcFace, Glint360K,
 * WebFace42M): reader with positional reads (the .rec is never loaded whole) and a writer.
 *
 * Framing (dmlc-core): each part is uint32 magic 0xced7230a, uint32 lrecord (cflag in the upper
 * 3 bits, length in the lower 29), payload, zero padding to 4 bytes. A payload that contains the
 * magic at a 4-byte-aligned position is split there: the magic word is dropped from the stream and
 * the record is written as parts with cflag 1 (start), 2 (middle), 3 (end); the reader re-inserts
 * the magic between parts. cflag 0 is a whole record.
 *
 * Payload (mx.recordio.pack): IRHeader {uint32 flag, float32 label, uint64 id, uint64 id2} (24 bytes),
 * then, when flag > 0, `flag` float32 labels (the label field is then unused), then the image bytes.
 */
import { open, readFile, writeFile, type FileHandle } from 'node:fs/promises';
import { resolve } from 'node:path';
import {
  BadSampleError,
  DataFormatError,
  checkIndex,
  float64Growable,
  resolveNumClasses,
  type SampleSource,
  type SamplePayload,
} from './source.js';
import { nonNegativeInteger } from '../util/validate.js';

export const RECORDIO_MAGIC = 0xced7230a;
export const IR_HEADER_SIZE = 24;
const LENGTH_MASK = (1 << 29) - 1;
const MAGIC_BYTES = Buffer.from([0x0a, 0x23, 0xd7, 0xce]);
/** Largest integer a float32 label field holds exactly. */
const FLOAT32_EXACT_LIMIT = 1 << 24;

export interface IRHeader {
  /** 0 for a single label in `label`; n > 0 when n float32 labels follow the header. */
  flag: number;
  /** The label (flag 0) or the first of the extra labels (flag > 0). */
  label: number;
  /** All labels: [label] for flag 0, the `flag` extra float32 values otherwise. */
  labels: Float32Array;
  id: number;
  id2: number;
}

export interface UnpackedRecord {
  header: IRHeader;
  /** The bytes after the header and extra labels (the encoded image). */
  image: Buffer;
}

/** Build a record payload: IRHeader (+ extra labels when `label` is an array) + image bytes. */
export function packRecord(
  header: { label: number | ArrayLike<number>; id?: number; id2?: number },
  image: Uint8Array = new Uint8Array(0),
): Buffer {
  const extra = typeof header.label === 'number' ? undefined : Float32Array.from(header.label);
  const flag = extra === undefined ? 0 : extra.length;
  const out = Buffer.alloc(IR_HEADER_SIZE + flag * 4 + image.length);
  out.writeUInt32LE(flag, 0);
  out.writeFloatLE(extra === undefined ? (header.label as number) : 0, 4);
  out.writeBigUInt64LE(BigInt(header.id ?? 0), 8);
  out.writeBigUInt64LE(BigInt(header.id2 ?? 0), 16);
  if (extra !== undefined) {
    for (let i = 0; i < flag; i++) out.writeFloatLE(extra[i]!, IR_HEADER_SIZE + i * 4);
  }
  out.set(image, IR_HEADER_SIZE + flag * 4);
  return out;
}

/** Split a record payload into IRHeader and image bytes. Throws a plain Error when too short. */
export function unpackRecord(payload: Buffer): UnpackedRecord {
  if (payload.length < IR_HEADER_SIZE) throw new Error(`record payload is ${payload.length} bytes, shorter than the 24-byte IRHeader`);
  const flag = payload.readUInt32LE(0);
  const labelField = payload.readFloatLE(4);
  const id = Number(payload.readBigUInt64LE(8));
  const id2 = Number(payload.readBigUInt64LE(16));
  let labels: Float32Array;
  let imageStart = IR_HEADER_SIZE;
  if (flag > 0) {
    imageStart += flag * 4;
    if (imageStart > payload.length) throw new Error(`IRHeader flag ${flag} announces ${flag} labels, but the payload is only ${payload.length} bytes`);
    labels = new Float32Array(flag);
    for (let i = 0; i < flag; i++) labels[i] = payload.readFloatLE(IR_HEADER_SIZE + i * 4);
  } else {
    labels = Float32Array.of(labelField);
  }
  return { header: { flag, label: labels[0]!, labels, id, id2 }, image: payload.subarray(imageStart) };
}

/** Parse a .idx file: lines `key<TAB>offset`. Returns keys and offsets sorted by key. */
export async function readRecordIndex(idxPath: string): Promise<{ keys: Float64Array; offsets: Float64Array }> {
  let text: Buffer;
  try {
    text = await readFile(idxPath);
  } catch (error) {
    throw new DataFormatError(idxPath, `cannot read index file: ${(error as Error).message}`, { cause: error });
  }
  const keys = float64Growable();
  const offsets = float64Growable();
  let line = 0;
  let start = 0;
  let sorted = true;
  let previous = -1;
  const bad = (s: number, e: number): DataFormatError =>
    new DataFormatError(idxPath, `expected "<key>\\t<byte offset>", got ${JSON.stringify(text.toString('latin1', s, Math.min(e, s + 80)))}`, { line });
  while (start < text.length) {
    let end = text.indexOf(10, start);
    if (end < 0) end = text.length;
    line++;
    let i = start;
    const lineStart = start;
    start = end + 1;
    while (i < end && isBlank(text[i]!)) i++;
    if (i === end) continue;
    const values: number[] = [];
    while (i < end) {
      if (!isDigit(text[i]!)) throw bad(lineStart, end);
      let value = 0;
      while (i < end && isDigit(text[i]!)) value = value * 10 + (text[i++]! - 48);
      values.push(value);
      if (i < end && !isBlank(text[i]!)) throw bad(lineStart, end);
      while (i < end && isBlank(text[i]!)) i++;
    }
    if (values.length !== 2 || !Number.isSafeInteger(values[0]) || !Number.isSafeInteger(values[1])) throw bad(lineStart, end);
    keys.push(values[0]!);
    offsets.push(values[1]!);
    if (values[0]! <= previous) sorted = false;
    previous = values[0]!;
  }
  let sortedKeys = keys.finish();
  let sortedOffsets = offsets.finish();
  if (!sorted) {
    const order = new Int32Array(sortedKeys.length);
    for (let i = 0; i < order.length; i++) order[i] = i;
    const k = sortedKeys;
    order.sort((a, b) => k[a]! - k[b]!);
    const o = sortedOffsets;
    sortedKeys = Float64Array.from(order, (i) => k[i]!);
    sortedOffsets = Float64Array.from(order, (i) => o[i]!);
    for (let i = 1; i < sortedKeys.length; i++) {
      if (sortedKeys[i] === sortedKeys[i - 1]) throw new DataFormatError(idxPath, `duplicate key ${sortedKeys[i]}`);
    }
  }
  return { keys: sortedKeys, offsets: sortedOffsets };
}

function isDigit(byte: number): boolean {
  return byte >= 48 && byte <= 57;
}

function isBlank(byte: number): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0d;
}

/** Positional reader of framed records in one .rec file. Safe for concurrent reads. */
export class RecordIOFile {
  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly size: number,
  ) {}

  static async open(path: string): Promise<RecordIOFile> {
    const absolute = resolve(path);
    let handle: FileHandle;
    try {
      handle = await open(absolute, 'r');
    } catch (error) {
      throw new DataFormatError(absolute, `cannot open record file: ${(error as Error).message}`, { cause: error });
    }
    const { size } = await handle.stat();
    return new RecordIOFile(absolute, handle, size);
  }

  /**
   * Read the record starting at byte `offset` (reassembling multi-part records).
   * `key` only labels error messages. Framing errors raise DataFormatError naming key and offset.
   */
  async readAt(offset: number, key: number | string = '?', sizeHint = 16384): Promise<Buffer> {
    const where = (pos: number): string => `record ${key}: at byte offset ${pos}`;
    let windowStart = offset;
    let window = await this.readRange(offset, Math.min(Math.max(sizeHint, 8), this.size - offset));
    const bytesAt = async (pos: number, length: number): Promise<Buffer> => {
      if (pos < windowStart || pos + length > windowStart + window.length) {
        windowStart = pos;
        window = await this.readRange(pos, Math.min(Math.max(length, 65536), this.size - pos));
      }
      return window.subarray(pos - windowStart, pos - windowStart + length);
    };
    const parts: Buffer[] = [];
    let pos = offset;
    for (let part = 0; ; part++) {
      if (pos + 8 > this.size) {
        throw new DataFormatError(this.path, `${where(pos)}: file ends inside a record header (file size ${this.size})`);
      }
      const head = await bytesAt(pos, 8);
      const magic = head.readUInt32LE(0);
      if (magic !== RECORDIO_MAGIC) {
        throw new DataFormatError(
          this.path,
          `${where(pos)}: bad magic 0x${magic.toString(16).padStart(8, '0')} (expected 0x${RECORDIO_MAGIC.toString(16)})`,
        );
      }
      const lrecord = head.readUInt32LE(4);
      const cflag = lrecord >>> 29;
      const length = lrecord & LENGTH_MASK;
      if (part === 0 ? cflag !== 0 && cflag !== 1 : cflag !== 2 && cflag !== 3) {
        throw new DataFormatError(
          this.path,
          `${where(pos)}: unexpected part flag ${cflag} in part ${part} of the record (${part === 0 ? 'expected 0 or 1' : 'expected 2 or 3'})`,
        );
      }
      if (pos + 8 + length > this.size) {
        throw new DataFormatError(this.path, `${where(pos)}: record length ${length} runs past the end of the file (size ${this.size})`);
      }
      parts.push(Buffer.from(await bytesAt(pos + 8, length)));
      pos += 8 + ((length + 3) & ~3);
      if (cflag === 0 || cflag === 3) break;
      parts.push(MAGIC_BYTES);
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /**
   * The first `count` payload bytes of the record at `offset` (fewer if the record is shorter),
   * without reading the rest of a large record. Used to collect IRHeaders cheaply.
   */
  async readPrefixAt(offset: number, count: number, key: number | string = '?'): Promise<Buffer> {
    const head = await this.readRange(offset, Math.min(8 + count, this.size - offset));
    if (head.length < 8) {
      throw new DataFormatError(this.path, `record ${key}: at byte offset ${offset}: file ends inside a record header (file size ${this.size})`);
    }
    const magic = head.readUInt32LE(0);
    const lrecord = head.readUInt32LE(4);
    const length = lrecord & LENGTH_MASK;
    if (magic !== RECORDIO_MAGIC || lrecord >>> 29 !== 0 || length < count || head.length < 8 + count) {
      // Not a plain single-part record long enough: let the full reader validate and reassemble.
      return (await this.readAt(offset, key)).subarray(0, count);
    }
    return head.subarray(8, 8 + count);
  }

  async close(): Promise<void> {
    await this.handle.close();
  }

  private async readRange(position: number, length: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(Math.max(length, 0));
    let filled = 0;
    while (filled < length) {
      const { bytesRead } = await this.handle.read(buffer, filled, length - filled, position + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return buffer.subarray(0, filled);
  }
}

export interface RecordIOSourceOptions {
  /** Index path. Default: the .rec path with its extension replaced by .idx. */
  idxPath?: string;
  /** Class count; labels must be below it. Default: from the identity records, else max label + 1. */
  numClasses?: number;
  /**
   * 'auto' (default): record 0 with flag >= 2 and integer labels [first, end) is an insightface
   * header; images are keys 1..first-1. 'none': every idx key is an image.
   */
  header?: 'auto' | 'none';
  /** Parallel positional reads while collecting labels at open. Default 32. */
  openConcurrency?: number;
}

/** Labels of image records: where open() found them. */
export type RecordLabelOrigin = 'identity-records' | 'record-headers';

export class RecordIOSource implements SampleSource {
  readonly length: number;
  readonly numClasses: number;
  readonly recPath: string;
  readonly idxPath: string;
  /** The insightface header range [first, end) from record 0, when present. */
  readonly headerRange: readonly [number, number] | undefined;
  /** How labels were obtained at open: from identity records (cheap) or by reading every image header. */
  readonly labelOrigin: RecordLabelOrigin;
  private readonly file: RecordIOFile;
  private readonly recordKeys: Float64Array;
  private readonly recordOffsets: Float64Array;
  private readonly sizeHints: Int32Array;
  private readonly labels: Int32Array;

  private constructor(init: {
    file: RecordIOFile;
    idxPath: string;
    headerRange: readonly [number, number] | undefined;
    labelOrigin: RecordLabelOrigin;
    keys: Float64Array;
    offsets: Float64Array;
    sizeHints: Int32Array;
    labels: Int32Array;
    numClasses: number;
  }) {
    this.file = init.file;
    this.recPath = init.file.path;
    this.idxPath = init.idxPath;
    this.headerRange = init.headerRange;
    this.labelOrigin = init.labelOrigin;
    this.recordKeys = init.keys;
    this.recordOffsets = init.offsets;
    this.sizeHints = init.sizeHints;
    this.labels = init.labels;
    this.length = init.keys.length;
    this.numClasses = init.numClasses;
  }

  static async open(recPath: string, options: RecordIOSourceOptions = {}): Promise<RecordIOSource> {
    const idxPath = resolve(options.idxPath ?? defaultIdxPath(recPath));
    const index = await readRecordIndex(idxPath);
    const file = await RecordIOFile.open(recPath);
    try {
      return await RecordIOSource.build(file, idxPath, index, options);
    } catch (error) {
      await file.close();
      throw error;
    }
  }

  private static async build(
    file: RecordIOFile,
    idxPath: string,
    index: { keys: Float64Array; offsets: Float64Array },
    options: RecordIOSourceOptions,
  ): Promise<RecordIOSource> {
    const concurrency = options.openConcurrency ?? 32;
    const offsetOf = (key: number): number | undefined => {
      const i = binarySearch(index.keys, key);
      return i < 0 ? undefined : index.offsets[i];
    };
    for (let i = 0; i < index.offsets.length; i++) {
      if (index.offsets[i]! >= file.size) {
        throw new DataFormatError(idxPath, `key ${index.keys[i]} points at byte offset ${index.offsets[i]}, past the end of ${file.path} (size ${file.size})`);
      }
    }
    // Size hints: distance to the next record in file order, so most reads are one pread.
    const byOffset = Float64Array.from(index.offsets).sort();
    const hintFor = (offset: number): number => {
      let lo = 0;
      let hi = byOffset.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (byOffset[mid]! <= offset) lo = mid + 1;
        else hi = mid;
      }
      const next = lo < byOffset.length ? byOffset[lo]! : file.size;
      return Math.min(Math.max(next - offset, 32), 1 << 22);
    };

    let headerRange: [number, number] | undefined;
    const offset0 = offsetOf(0);
    if (options.header !== 'none' && offset0 !== undefined) {
      const record = unpackOrFail(file, await file.readAt(offset0, 0), 0, offset0);
      const [first, end] = record.header.labels;
      if (record.header.flag >= 2 && Number.isInteger(first) && Number.isInteger(end) && first! >= 1 && end! >= first!) {
        headerRange = [first!, end!];
      }
    }

    let keys: Float64Array;
    if (headerRange !== undefined) {
      const count = headerRange[0] - 1;
      keys = new Float64Array(count);
      for (let k = 1; k <= count; k++) {
        if (offsetOf(k) === undefined) {
          throw new DataFormatError(idxPath, `header record 0 of ${file.path} says images are keys 1..${count}, but key ${k} is missing from the index`);
        }
        keys[k - 1] = k;
      }
    } else {
      keys = index.keys;
    }
    if (keys.length === 0) throw new DataFormatError(file.path, 'no image records');
    const offsets = new Float64Array(keys.length);
    const sizeHints = new Int32Array(keys.length);
    for (let i = 0; i < keys.length; i++) {
      offsets[i] = offsetOf(keys[i]!)!;
      sizeHints[i] = hintFor(offsets[i]!);
    }

    let labels: Int32Array | undefined;
    let labelOrigin: RecordLabelOrigin = 'record-headers';
    let identityClasses: number | undefined;
    if (headerRange !== undefined) {
      labels = await labelsFromIdentityRecords(file, headerRange, offsetOf, concurrency);
      if (labels !== undefined) {
        labelOrigin = 'identity-records';
        identityClasses = headerRange[1] - headerRange[0];
      }
    }
    if (labels === undefined) {
      labels = new Int32Array(keys.length);
      const target = labels;
      await forEachConcurrent(keys.length, concurrency, async (i) => {
        const key = keys[i]!;
        const record = await readHeaderOnly(file, offsets[i]!, key);
        const value = record.header.label;
        if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) {
          throw new DataFormatError(file.path, `record ${key}: at byte offset ${offsets[i]}: label ${value} is not a non-negative integer`);
        }
        target[i] = value;
      });
    }
    const explicit = options.numClasses ?? identityClasses;
    const numClasses = resolveNumClasses(labels, explicit, (i) => `record ${keys[i]} of ${file.path}`);
    return new RecordIOSource({ file, idxPath, headerRange, labelOrigin, keys, offsets, sizeHints, labels, numClasses });
  }

  label(index: number): number {
    checkIndex(index, this.length);
    return this.labels[index]!;
  }

  /** The .idx key of sample `index`. */
  key(index: number): number {
    checkIndex(index, this.length);
    return this.recordKeys[index]!;
  }

  describe(index: number): string {
    return `record ${this.key(index)} of ${this.recPath}`;
  }

  /** Read and unpack the record of sample `index`. */
  async readRecord(index: number): Promise<UnpackedRecord> {
    checkIndex(index, this.length);
    const key = this.recordKeys[index]!;
    const offset = this.recordOffsets[index]!;
    let payload: Buffer;
    try {
      payload = await this.file.readAt(offset, key, this.sizeHints[index]!);
    } catch (error) {
      throw new BadSampleError(index, this.describe(index), (error as Error).message, { cause: error });
    }
    try {
      return unpackRecord(payload);
    } catch (error) {
      throw new BadSampleError(index, this.describe(index), `at byte offset ${offset}: ${(error as Error).message}`, { cause: error });
    }
  }

  async read(index: number): Promise<SamplePayload> {
    const record = await this.readRecord(index);
    const expected = this.labels[index]!;
    if (record.header.label !== expected) {
      throw new BadSampleError(index, this.describe(index), `record label ${record.header.label} disagrees with identity record label ${expected}`);
    }
    if (record.image.length === 0) throw new BadSampleError(index, this.describe(index), 'record holds no image bytes');
    return { kind: 'encoded', bytes: record.image };
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}

/** Read just the IRHeader (and its extra labels) of the record at `offset`. */
async function readHeaderOnly(file: RecordIOFile, offset: number, key: number): Promise<UnpackedRecord> {
  let prefix = await file.readPrefixAt(offset, IR_HEADER_SIZE + 8, key);
  if (prefix.length >= 4) {
    const flag = prefix.readUInt32LE(0);
    if (flag > 2) prefix = await file.readPrefixAt(offset, IR_HEADER_SIZE + flag * 4, key);
  }
  return unpackOrFail(file, prefix, key, offset);
}

function unpackOrFail(file: RecordIOFile, payload: Buffer, key: number, offset: number): UnpackedRecord {
  try {
    return unpackRecord(payload);
  } catch (error) {
    throw new DataFormatError(file.path, `record ${key}: at byte offset ${offset}: ${(error as Error).message}`);
  }
}

/**
 * insightface identity records first..end-1 hold each class's image key range [a, b). Returns the
 * per-image labels, or undefined when the identity records are absent or do not tile 1..first-1.
 */
async function labelsFromIdentityRecords(
  file: RecordIOFile,
  [first, end]: readonly [number, number],
  offsetOf: (key: number) => number | undefined,
  concurrency: number,
): Promise<Int32Array | undefined> {
  const numClasses = end - first;
  if (numClasses <= 0) return undefined;
  for (let k = first; k < end; k++) if (offsetOf(k) === undefined) return undefined;
  const ranges = new Float64Array(numClasses * 2);
  let valid = true;
  await forEachConcurrent(numClasses, concurrency, async (c) => {
    if (!valid) return;
    const key = first + c;
    const record = await readHeaderOnly(file, offsetOf(key)!, key);
    const [a, b] = record.header.labels;
    if (record.header.flag < 2 || !Number.isInteger(a) || !Number.isInteger(b)) {
      valid = false;
      return;
    }
    ranges[2 * c] = a!;
    ranges[2 * c + 1] = b!;
  });
  if (!valid) return undefined;
  const labels = new Int32Array(first - 1).fill(-1);
  for (let c = 0; c < numClasses; c++) {
    const a = ranges[2 * c]!;
    const b = ranges[2 * c + 1]!;
    if (a < 1 || b > first || a > b) return undefined;
    for (let k = a; k < b; k++) {
      if (labels[k - 1] !== -1) return undefined;
      labels[k - 1] = c;
    }
  }
  return labels.includes(-1) ? undefined : labels;
}

function binarySearch(sorted: Float64Array, value: number): number {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = sorted[mid]!;
    if (v === value) return mid;
    if (v < value) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** Run fn(0..count-1) with at most `limit` in flight; rejects with the first error. */
async function forEachConcurrent(count: number, limit: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < count) {
      const i = next++;
      try {
        await fn(i);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  const workers: Promise<void>[] = [];
  for (let w = 0; w < Math.min(Math.max(1, limit), count); w++) workers.push(worker());
  const results = await Promise.allSettled(workers);
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (rejected !== undefined) throw rejected.reason;
}

/** `x.rec` → `x.idx`. */
export function defaultIdxPath(recPath: string): string {
  return recPath.replace(/\.rec$/i, '') + '.idx';
}

/** Writes a .rec and its .idx per the dmlc RecordIO framing, splitting payloads at aligned magic words. */
export class RecordIOWriter {
  readonly recPath: string;
  readonly idxPath: string;
  private position = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private indexLines: string[] = [];
  private closed = false;

  private constructor(recPath: string, idxPath: string, private readonly handle: FileHandle) {
    this.recPath = recPath;
    this.idxPath = idxPath;
  }

  /** Create (truncate) `recPath`; the index goes to `idxPath` (default: same name, .idx) on close. */
  static async create(recPath: string, idxPath: string = defaultIdxPath(recPath)): Promise<RecordIOWriter> {
    const handle = await open(resolve(recPath), 'w');
    return new RecordIOWriter(resolve(recPath), resolve(idxPath), handle);
  }

  /** Bytes written so far (the offset the next record gets). */
  get bytesWritten(): number {
    return this.position;
  }

  /** Append one record payload under `key`. */
  async write(key: number, payload: Uint8Array): Promise<void> {
    if (this.closed) throw new Error(`RecordIOWriter for ${this.recPath} is closed`);
    nonNegativeInteger(key, 'record key');
    if (payload.length >= 1 << 29) throw new RangeError(`record ${key} is ${payload.length} bytes; RecordIO records must be < 2^29 bytes`);
    this.indexLines.push(`${key}\t${this.position}\n`);
    const frames = frameRecord(payload);
    for (const frame of frames) this.push(frame);
    if (this.pendingBytes >= 4 << 20) await this.flush();
  }

  /** Append an image record: IRHeader with an integer label (or label vector) + image bytes. */
  async writeImage(key: number, label: number | ArrayLike<number>, image: Uint8Array, ids: { id?: number; id2?: number } = {}): Promise<void> {
    const values = typeof label === 'number' ? [label] : Array.from(label);
    for (const value of values) {
      if (Math.fround(value) !== value) throw new RangeError(`record ${key}: label ${value} is not exactly representable as float32`);
      if (Number.isInteger(value) && Math.abs(value) > FLOAT32_EXACT_LIMIT) throw new RangeError(`record ${key}: label ${value} exceeds float32's exact integer range`);
    }
    await this.write(key, packRecord({ label, id: ids.id ?? key, id2: ids.id2 ?? 0 }, image));
  }

  /** Flush records and write the .idx file. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    await this.handle.close();
    await writeFile(this.idxPath, this.indexLines.join(''));
  }

  private push(frame: Buffer): void {
    this.pending.push(frame);
    this.pendingBytes += frame.length;
    this.position += frame.length;
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const data = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    await this.handle.write(data, 0, data.length);
  }
}

/** The framed bytes of one record (one or more parts), exactly as dmlc's RecordIOWriter emits them. */
export function frameRecord(payload: Uint8Array): Buffer[] {
  const frames: Buffer[] = [];
  const bytes = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  const lowerAlign = bytes.length & ~3;
  let partStart = 0;
  const emit = (cflag: number, start: number, end: number, pad: boolean): void => {
    const length = end - start;
    const padding = pad ? ((length + 3) & ~3) - length : 0;
    const frame = Buffer.alloc(8 + length + padding);
    frame.writeUInt32LE(RECORDIO_MAGIC, 0);
    frame.writeUInt32LE(((cflag << 29) | length) >>> 0, 4);
    bytes.copy(frame, 8, start, end);
    frames.push(frame);
  };
  for (let i = 0; i < lowerAlign; i += 4) {
    if (bytes[i] === 0x0a && bytes[i + 1] === 0x23 && bytes[i + 2] === 0xd7 && bytes[i + 3] === 0xce) {
      emit(partStart === 0 ? 1 : 2, partStart, i, false);
      partStart = i + 4;
    }
  }
  emit(partStart !== 0 ? 3 : 0, partStart, bytes.length, true);
  return frames;
}
