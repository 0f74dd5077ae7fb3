/**
 * A small pickle writer for plain data (None, bool, int, float, str, bytes, list, tuple) that emits
 * the same bytes CPython does:
 *   - protocol 2: what Python 2's `pickle.dump(obj, f, 2)` writes, with bytes written as Python-2
 *     `str` (SHORT_BINSTRING / BINSTRING). Python 3 reads them back as bytes with
 *     `pickle.load(f, encoding='bytes')`, Python 2 as str, exactly like insightface's lfw.bin.
 *   - protocols 3, 4, 5: what Python 3's C pickler (`pickle.dump`) writes, including protocol-4
 *     framing (64 KiB frames, payloads >= 64 KiB written outside frames) and batching of list items
 *     in runs of 1000.
 * Tuples are frozen arrays (as parsePickle returns them); any other array is a list. The same Buffer
 * or array object seen twice is written once and then fetched from the memo, as Python does for the
 * same object.
 */

export type PickleWritable = null | boolean | number | bigint | string | Uint8Array | readonly PickleWritable[];

export type PickleWriteProtocol = 2 | 3 | 4 | 5;

const FRAME_SIZE_TARGET = 64 * 1024;
const FRAME_SIZE_MIN = 4;
const BATCH_SIZE = 1000;

const MARK = 0x28;
const STOP = 0x2e;
const NONE = 0x4e;
const NEWTRUE = 0x88;
const NEWFALSE = 0x89;
const BININT = 0x4a;
const BININT1 = 0x4b;
const BININT2 = 0x4d;
const LONG1 = 0x8a;
const LONG4 = 0x8b;
const BINFLOAT = 0x47;
const BINSTRING = 0x54;
const SHORT_BINSTRING = 0x55;
const BINUNICODE = 0x58;
const SHORT_BINUNICODE = 0x8c;
const BINUNICODE8 = 0x8d;
const BINBYTES = 0x42;
const SHORT_BINBYTES = 0x43;
const BINBYTES8 = 0x8e;
const EMPTY_LIST = 0x5d;
const APPEND = 0x61;
const APPENDS = 0x65;
const EMPTY_TUPLE = 0x29;
const TUPLE = 0x74;
const TUPLE_N = [0, 0x85, 0x86, 0x87];
const BINPUT = 0x71;
const LONG_BINPUT = 0x72;
const BINGET = 0x68;
const LONG_BINGET = 0x6a;
const MEMOIZE = 0x94;
const PROTO = 0x80;
const FRAME = 0x95;

class FramedOutput {
  readonly chunks: Buffer[] = [];
  private inFrame = false;
  private pending: Buffer[] = [];
  private pendingLength = 0;
  private framing = false;

  startFraming(): void {
    this.framing = true;
  }

  /** Small writes: opcodes and short arguments. */
  write(bytes: number[] | Buffer): void {
    if (this.framing) {
      this.inFrame = true;
      this.appendPending(bytes);
    } else {
      this.chunks.push(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes));
    }
  }

  private appendPending(bytes: number[] | Buffer): void {
    const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
    this.pending.push(buf);
    this.pendingLength += buf.length;
  }

  /** C pickler: commit the current frame at an opcode boundary once it reached the target size. */
  boundary(): void {
    if (this.framing && this.inFrame && this.pendingLength >= FRAME_SIZE_TARGET) this.commit();
  }

  commit(): void {
    if (!this.inFrame) return;
    if (this.pendingLength >= FRAME_SIZE_MIN) {
      const header = Buffer.alloc(9);
      header[0] = FRAME;
      header.writeBigUInt64LE(BigInt(this.pendingLength), 1);
      this.chunks.push(header);
    }
    this.chunks.push(...this.pending);
    this.pending = [];
    this.pendingLength = 0;
    this.inFrame = false;
  }

  /** Header plus payload; payloads >= 64 KiB bypass the frame (C pickler's _Pickler_write_bytes). */
  writeBytes(header: number[], payload: Buffer): void {
    if (payload.length >= FRAME_SIZE_TARGET) {
      this.commit();
      this.chunks.push(Buffer.from(header), payload);
    } else {
      this.write(header);
      this.write(payload);
    }
  }

  finish(): void {
    this.commit();
    this.framing = false;
  }
}

function u32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

function u64(n: number): number[] {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return [...b];
}

/** Minimal little-endian two's complement encoding, as Python's encode_long. */
function encodeLong(value: bigint): number[] {
  if (value === 0n) return [];
  const out: number[] = [];
  let v = value;
  while (true) {
    out.push(Number(v & 0xffn));
    v >>= 8n;
    const signBit = (out[out.length - 1]! & 0x80) !== 0;
    if ((v === 0n && !signBit) || (v === -1n && signBit)) break;
  }
  return out;
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

class PickleWriter {
  private readonly out = new FramedOutput();
  private readonly memo = new Map<object, number>();
  private memoSize = 0;

  constructor(private readonly protocol: PickleWriteProtocol) {}

  dump(value: PickleWritable): Buffer[] {
    this.out.write([PROTO, this.protocol]);
    if (this.protocol >= 4) this.out.startFraming();
    this.save(value);
    this.out.write([STOP]);
    this.out.finish();
    return this.out.chunks;
  }

  /** Memo put for the object just written; `obj` null for values without identity (strings). */
  private memoize(obj: object | null): void {
    const index = this.memoSize++;
    if (obj !== null) this.memo.set(obj, index);
    if (this.protocol >= 4) this.out.write([MEMOIZE]);
    else if (index < 256) this.out.write([BINPUT, index]);
    else this.out.write([LONG_BINPUT, ...u32(index)]);
  }

  private get(index: number): void {
    if (index < 256) this.out.write([BINGET, index]);
    else this.out.write([LONG_BINGET, ...u32(index)]);
  }

  private save(value: PickleWritable): void {
    this.out.boundary();
    if (value === null) return this.out.write([NONE]);
    if (typeof value === 'boolean') return this.out.write([value ? NEWTRUE : NEWFALSE]);
    if (typeof value === 'bigint') return this.saveInt(value);
    if (typeof value === 'number') {
      if (Number.isInteger(value)) return this.saveInt(BigInt(value));
      const b = Buffer.alloc(9);
      b[0] = BINFLOAT;
      b.writeDoubleBE(value, 1);
      return this.out.write(b);
    }
    if (typeof value === 'string') return this.saveStr(value);
    const seen = this.memo.get(value);
    if (seen !== undefined) return this.get(seen);
    if (value instanceof Uint8Array) return this.saveBytes(toBuffer(value));
    if (Array.isArray(value)) return Object.isFrozen(value) ? this.saveTuple(value) : this.saveList(value);
    throw new TypeError(`cannot pickle a value of type ${typeof value}`);
  }

  private saveInt(value: bigint): void {
    if (value >= -0x80000000n && value <= 0x7fffffffn) {
      const v = Number(value);
      if (v >= 0 && v <= 0xff) this.out.write([BININT1, v]);
      else if (v >= 0 && v <= 0xffff) this.out.write([BININT2, v & 0xff, v >> 8]);
      else this.out.write([BININT, ...u32(v >>> 0)]);
      return;
    }
    const bytes = encodeLong(value);
    if (bytes.length < 256) this.out.write([LONG1, bytes.length, ...bytes]);
    else this.out.write([LONG4, ...u32(bytes.length), ...bytes]);
  }

  private saveStr(value: string): void {
    const encoded = Buffer.from(value, 'utf8');
    const n = encoded.length;
    if (n <= 0xff && this.protocol >= 4) this.out.writeBytes([SHORT_BINUNICODE, n], encoded);
    else if (n > 0xffffffff && this.protocol >= 4) this.out.writeBytes([BINUNICODE8, ...u64(n)], encoded);
    else this.out.writeBytes([BINUNICODE, ...u32(n)], encoded);
    // Strings have no identity in JavaScript; each occurrence is written and memoized afresh.
    this.memoize(null);
  }

  private saveBytes(value: Buffer): void {
    const n = value.length;
    if (this.protocol === 2) {
      if (n > 0x7fffffff) throw new RangeError(`a ${n}-byte string cannot be written at protocol 2`);
      if (n < 256) this.out.write([SHORT_BINSTRING, n]);
      else this.out.write([BINSTRING, ...u32(n)]);
      this.out.write(value);
    } else if (n <= 0xff) {
      this.out.writeBytes([SHORT_BINBYTES, n], value);
    } else if (n <= 0xffffffff) {
      this.out.writeBytes([BINBYTES, ...u32(n)], value);
    } else if (this.protocol >= 4) {
      this.out.writeBytes([BINBYTES8, ...u64(n)], value);
    } else {
      throw new RangeError(`a ${n}-byte bytes object needs pickle protocol 4 or higher`);
    }
    this.memoize(value);
  }

  private saveTuple(items: readonly PickleWritable[]): void {
    if (items.length === 0) return this.out.write([EMPTY_TUPLE]);
    if (items.length <= 3) {
      for (const item of items) this.save(item);
      this.out.write([TUPLE_N[items.length]!]);
    } else {
      this.out.write([MARK]);
      for (const item of items) this.save(item);
      this.out.write([TUPLE]);
    }
    this.memoize(items);
  }

  private saveList(items: readonly PickleWritable[]): void {
    this.out.write([EMPTY_LIST]);
    this.memoize(items);
    const n = items.length;
    if (n === 0) return;
    if (this.protocol === 2) {
      // Python 2 pickle.py: a trailing batch of one item is written with APPEND.
      for (let start = 0; start < n; start += BATCH_SIZE) {
        const end = Math.min(n, start + BATCH_SIZE);
        if (end - start === 1) {
          this.save(items[start]!);
          this.out.write([APPEND]);
        } else {
          this.out.write([MARK]);
          for (let i = start; i < end; i++) this.save(items[i]!);
          this.out.write([APPENDS]);
        }
      }
      return;
    }
    // Python 3 C pickler (batch_list_exact): APPEND only when the whole list holds one item.
    if (n === 1) {
      this.save(items[0]!);
      this.out.write([APPEND]);
      return;
    }
    for (let start = 0; start < n; start += BATCH_SIZE) {
      const end = Math.min(n, start + BATCH_SIZE);
      this.out.write([MARK]);
      for (let i = start; i < end; i++) this.save(items[i]!);
      this.out.write([APPENDS]);
    }
  }
}

/** The pickle as a list of chunks (large payloads are not copied). */
export function dumpPickleChunks(value: PickleWritable, protocol: PickleWriteProtocol = 4): Buffer[] {
  if (![2, 3, 4, 5].includes(protocol)) throw new RangeError(`unsupported pickle protocol ${String(protocol)} (use 2, 3, 4 or 5)`);
  return new PickleWriter(protocol).dump(value);
}

/** The pickle as one Buffer. */
export function dumpPickle(value: PickleWritable, protocol: PickleWriteProtocol = 4): Buffer {
  return Buffer.concat(dumpPickleChunks(value, protocol));
}
