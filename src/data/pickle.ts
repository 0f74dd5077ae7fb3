/**
 * A safe reader for Python pickles (protocols 0..5) that builds plain data only.
 *
 * Nothing from the stream is ever executed. GLOBAL / STACK_GLOBAL may only name the few callables
 * that Python and numpy themselves emit for byte strings and boolean scalars/arrays; those are
 * interpreted here as data constructors. Every other global, and every opcode that would create or
 * mutate an arbitrary object (INST, OBJ, NEWOBJ, NEWOBJ_EX, EXT1/2/4, PERSID, BINPERSID, BUILD on
 * anything but a numpy placeholder, REDUCE on anything but an allow-listed global), throws
 * PickleSecurityError naming the opcode, its byte offset and the global involved.
 *
 * Value mapping (as Python 3's `pickle.load(f, encoding='bytes')` would give it):
 *   None -> null, bool -> boolean, int -> number (bigint beyond 2^53), float -> number,
 *   str (unicode) -> string, bytes / Python-2 str / bytearray -> Buffer (a view into the input),
 *   list -> array, tuple -> frozen array (see isPickleTuple), dict -> Map, set/frozenset -> Set,
 *   numpy bool scalar -> boolean, numpy uint8/int8 scalar -> number,
 *   1-D numpy bool array -> boolean[], 1-D numpy uint8 array -> Uint8Array, int8 -> Int8Array.
 */

export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Buffer
  | Uint8Array
  | Int8Array
  | PickleValue[]
  | readonly PickleValue[]
  | Map<PickleValue, PickleValue>
  | Set<PickleValue>;

/** Malformed, truncated or unsupported pickle data. `offset` is the byte offset of the opcode involved. */
export class PickleError extends Error {
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(message);
    this.name = 'PickleError';
    this.offset = offset;
  }
}

/** The pickle asked for something that would run code or build arbitrary objects. */
export class PickleSecurityError extends PickleError {
  readonly opcode: string;
  /** `module.name` of the global involved, when there is one. */
  readonly globalName: string | undefined;
  constructor(message: string, opcode: string, offset: number, globalName?: string) {
    super(message, offset);
    this.name = 'PickleSecurityError';
    this.opcode = opcode;
    this.globalName = globalName;
  }
}

/** True for values that were pickled as tuples (they are returned as frozen arrays). */
export function isPickleTuple(value: unknown): value is readonly PickleValue[] {
  return Array.isArray(value) && Object.isFrozen(value);
}

/** Highest protocol this reader understands (Python 3.8+ writes at most 5). */
export const PICKLE_HIGHEST_PROTOCOL = 5;

/** The globals a pickle may name; each is interpreted as a data constructor, never looked up. */
export const PICKLE_ALLOWED_GLOBALS: readonly string[] = [
  'numpy.core.multiarray._reconstruct',
  'numpy._core.multiarray._reconstruct',
  'numpy.core.multiarray.scalar',
  'numpy._core.multiarray.scalar',
  'numpy.core.numeric._frombuffer',
  'numpy._core.numeric._frombuffer',
  'numpy.ndarray',
  'numpy.dtype',
  // Python 3 writes bytes at protocol <= 2 as _codecs.encode(str, 'latin1') / bytes(); bytearray
  // at protocol <= 4 as bytearray(bytes).
  '_codecs.encode',
  'builtins.bytes',
  '__builtin__.bytes',
  'builtins.bytearray',
  '__builtin__.bytearray',
];

type GlobalKind = 'reconstruct' | 'scalar' | 'frombuffer' | 'ndarray' | 'dtype' | 'encode' | 'bytes' | 'bytearray';

const GLOBAL_KINDS: ReadonlyMap<string, GlobalKind> = new Map<string, GlobalKind>([
  ['numpy.core.multiarray._reconstruct', 'reconstruct'],
  ['numpy._core.multiarray._reconstruct', 'reconstruct'],
  ['numpy.core.multiarray.scalar', 'scalar'],
  ['numpy._core.multiarray.scalar', 'scalar'],
  ['numpy.core.numeric._frombuffer', 'frombuffer'],
  ['numpy._core.numeric._frombuffer', 'frombuffer'],
  ['numpy.ndarray', 'ndarray'],
  ['numpy.dtype', 'dtype'],
  ['_codecs.encode', 'encode'],
  ['builtins.bytes', 'bytes'],
  ['__builtin__.bytes', 'bytes'],
  ['builtins.bytearray', 'bytearray'],
  ['__builtin__.bytearray', 'bytearray'],
]);

/** Internal stack objects that must never leak into a result. */
class GlobalRef {
  constructor(
    readonly name: string,
    readonly kind: GlobalKind,
  ) {}
}

type NumpyDtypeCode = 'b1' | 'u1' | 'i1';

class NumpyDtype {
  constructor(readonly code: NumpyDtypeCode) {}
}

/** What `_reconstruct(ndarray, (0,), b'b')` returns until BUILD gives it a shape, dtype and data. */
class NumpyArrayPlaceholder {
  value: PickleValue | undefined = undefined;
}

type StackItem = PickleValue | GlobalRef | NumpyDtype | NumpyArrayPlaceholder | StackItem[] | Map<StackItem, StackItem> | Set<StackItem>;

const OPCODE_NAMES: Record<number, string> = {
  0x28: 'MARK', 0x2e: 'STOP', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x46: 'FLOAT', 0x49: 'INT',
  0x4a: 'BININT', 0x4b: 'BININT1', 0x4c: 'LONG', 0x4d: 'BININT2', 0x4e: 'NONE', 0x50: 'PERSID',
  0x51: 'BINPERSID', 0x52: 'REDUCE', 0x53: 'STRING', 0x54: 'BINSTRING', 0x55: 'SHORT_BINSTRING',
  0x56: 'UNICODE', 0x58: 'BINUNICODE', 0x61: 'APPEND', 0x62: 'BUILD', 0x63: 'GLOBAL', 0x64: 'DICT',
  0x7d: 'EMPTY_DICT', 0x65: 'APPENDS', 0x67: 'GET', 0x68: 'BINGET', 0x69: 'INST', 0x6a: 'LONG_BINGET',
  0x6c: 'LIST', 0x5d: 'EMPTY_LIST', 0x6f: 'OBJ', 0x70: 'PUT', 0x71: 'BINPUT', 0x72: 'LONG_BINPUT',
  0x73: 'SETITEM', 0x74: 'TUPLE', 0x29: 'EMPTY_TUPLE', 0x75: 'SETITEMS', 0x47: 'BINFLOAT',
  0x80: 'PROTO', 0x81: 'NEWOBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x85: 'TUPLE1',
  0x86: 'TUPLE2', 0x87: 'TUPLE3', 0x88: 'NEWTRUE', 0x89: 'NEWFALSE', 0x8a: 'LONG1', 0x8b: 'LONG4',
  0x42: 'BINBYTES', 0x43: 'SHORT_BINBYTES', 0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8',
  0x8e: 'BINBYTES8', 0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS', 0x91: 'FROZENSET', 0x92: 'NEWOBJ_EX',
  0x93: 'STACK_GLOBAL', 0x94: 'MEMOIZE', 0x95: 'FRAME', 0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
};

/** Opcodes that always ask for code execution or arbitrary objects. */
const REFUSED_OPCODES = new Set([0x50, 0x51, 0x81, 0x82, 0x83, 0x84, 0x92]);

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

function describe(item: StackItem): string {
  if (item instanceof GlobalRef) return `global ${item.name}`;
  if (item instanceof NumpyDtype) return 'a numpy dtype';
  if (item instanceof NumpyArrayPlaceholder) return 'a numpy array';
  if (item === null) return 'None';
  if (Buffer.isBuffer(item)) return 'bytes';
  if (Array.isArray(item)) return isPickleTuple(item) ? 'a tuple' : 'a list';
  if (item instanceof Map) return 'a dict';
  if (item instanceof Set) return 'a set';
  if (item instanceof Uint8Array || item instanceof Int8Array) return 'a numpy array';
  return typeof item;
}

function toSafeInt(value: bigint): number | bigint {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

/** Little-endian two's complement, as LONG1/LONG4 store it. */
function decodeLong(bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0;
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]!);
  if (bytes[bytes.length - 1]! & 0x80) value -= 1n << BigInt(bytes.length * 8);
  return toSafeInt(value);
}

/** Python's `codecs.escape_decode`, used by protocol-0 STRING. */
function escapeDecode(text: Uint8Array, offset: number): Buffer {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== 0x5c) {
      out.push(c);
      continue;
    }
    i++;
    if (i >= text.length) throw new PickleError(`STRING at byte ${offset}: trailing backslash`, offset);
    const e = text[i]!;
    const simple: Record<number, number> = { 0x5c: 0x5c, 0x27: 0x27, 0x22: 0x22, 0x6e: 10, 0x74: 9, 0x72: 13, 0x61: 7, 0x62: 8, 0x66: 12, 0x76: 11 };
    if (e === 0x0a) continue;
    if (simple[e] !== undefined) {
      out.push(simple[e]!);
    } else if (e >= 0x30 && e <= 0x37) {
      let v = e - 0x30;
      for (let k = 0; k < 2 && i + 1 < text.length && text[i + 1]! >= 0x30 && text[i + 1]! <= 0x37; k++) v = v * 8 + (text[++i]! - 0x30);
      out.push(v & 0xff);
    } else if (e === 0x78) {
      const hex = String.fromCharCode(text[i + 1] ?? 0, text[i + 2] ?? 0);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new PickleError(`STRING at byte ${offset}: invalid \\x escape`, offset);
      out.push(parseInt(hex, 16));
      i += 2;
    } else {
      out.push(0x5c, e);
    }
  }
  return Buffer.from(out);
}

/** Python's raw-unicode-escape decoding, used by protocol-0 UNICODE. */
function rawUnicodeEscapeDecode(text: Uint8Array, offset: number): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === 0x5c && i + 1 < text.length && (text[i + 1] === 0x75 || text[i + 1] === 0x55)) {
      // An escape only counts after an even number of backslashes.
      let backslashes = 0;
      for (let j = i; j >= 0 && text[j] === 0x5c; j--) backslashes++;
      if (backslashes % 2 === 1) {
        const digits = text[i + 1] === 0x75 ? 4 : 8;
        const hex = Buffer.from(text.subarray(i + 2, i + 2 + digits)).toString('latin1');
        if (hex.length !== digits || !/^[0-9a-fA-F]+$/.test(hex)) {
          throw new PickleError(`UNICODE at byte ${offset}: truncated \\${digits === 4 ? 'u' : 'U'} escape`, offset);
        }
        const cp = parseInt(hex, 16);
        if (cp > 0x10ffff) throw new PickleError(`UNICODE at byte ${offset}: code point out of range`, offset);
        out += String.fromCodePoint(cp);
        i += 1 + digits;
        continue;
      }
    }
    out += String.fromCharCode(c);
  }
  return out;
}

function latin1Text(value: StackItem): string | undefined {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('latin1');
  return undefined;
}

/** Parse a pickle into plain data. Throws PickleError / PickleSecurityError with byte offsets. */
export function parsePickle(data: Uint8Array): PickleValue {
  const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return new SafeUnpickler(bytes).load();
}

class SafeUnpickler {
  private pos = 0;
  private stack: StackItem[] = [];
  private readonly metastack: StackItem[][] = [];
  private readonly memo = new Map<number, StackItem>();
  private readonly tuples = new Set<StackItem[]>();
  private frameEnd = -1;
  private opStart = 0;
  private opName = '';

  constructor(private readonly data: Buffer) {}

  private fail(message: string): never {
    throw new PickleError(`${this.opName ? `${this.opName} at byte ${this.opStart}: ` : ''}${message}`, this.opStart);
  }

  private refuse(detail: string, globalName?: string): never {
    throw new PickleSecurityError(`refusing ${detail} at byte ${this.opStart}`, this.opName, this.opStart, globalName);
  }

  private read(n: number): Buffer {
    if (n < 0 || this.pos + n > this.data.length) {
      this.fail(`needs ${n} bytes but only ${this.data.length - this.pos} remain (truncated pickle)`);
    }
    const out = this.data.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  private readU8(): number {
    return this.read(1)[0]!;
  }

  private readU32(): number {
    return this.read(4).readUInt32LE(0);
  }

  private readU64(): number {
    const v = this.read(8).readBigUInt64LE(0);
    if (v > BigInt(this.data.length)) this.fail(`length ${v} exceeds the ${this.data.length}-byte input (truncated or corrupt pickle)`);
    return Number(v);
  }

  private readLine(): Buffer {
    const end = this.data.indexOf(0x0a, this.pos);
    if (end < 0) this.fail('missing newline (truncated pickle)');
    const line = this.data.subarray(this.pos, end);
    this.pos = end + 1;
    return line;
  }

  private push(item: StackItem): void {
    this.stack.push(item);
  }

  private pop(): StackItem {
    if (this.stack.length === 0) this.fail('stack underflow (corrupt pickle)');
    return this.stack.pop()!;
  }

  private top(): StackItem {
    if (this.stack.length === 0) this.fail('stack underflow (corrupt pickle)');
    return this.stack[this.stack.length - 1]!;
  }

  private popMark(): StackItem[] {
    if (this.metastack.length === 0) this.fail('no MARK on the stack (corrupt pickle)');
    const items = this.stack;
    this.stack = this.metastack.pop()!;
    return items;
  }

  private makeTuple(items: StackItem[]): StackItem[] {
    this.tuples.add(items);
    return items;
  }

  private memoGet(index: number): StackItem {
    if (!this.memo.has(index)) this.fail(`memo key ${index} was never stored (corrupt pickle)`);
    return this.memo.get(index)!;
  }

  private memoPut(index: number): void {
    this.memo.set(index, this.top());
  }

  private parseIntText(line: Buffer, allowL: boolean): number | bigint {
    let text = line.toString('latin1').trim();
    if (allowL && text.endsWith('L')) text = text.slice(0, -1);
    if (!/^[+-]?\d+$/.test(text)) this.fail(`invalid integer literal ${JSON.stringify(text)}`);
    return toSafeInt(BigInt(text));
  }

  private resolveGlobal(moduleName: string, name: string): GlobalRef {
    const full = `${moduleName}.${name}`;
    const kind = GLOBAL_KINDS.get(full);
    if (!kind) this.refuse(`global ${full}`, full);
    return new GlobalRef(full, kind);
  }

  load(): PickleValue {
    const d = this.data;
    while (true) {
      if (this.pos >= d.length) {
        this.opStart = this.pos;
        this.opName = '';
        this.fail(`pickle ended at byte ${this.pos} without STOP (truncated pickle)`);
      }
      this.opStart = this.pos;
      const op = d[this.pos++]!;
      const name = OPCODE_NAMES[op];
      if (name === undefined) {
        this.opName = '';
        this.fail(`unknown opcode 0x${op.toString(16).padStart(2, '0')} at byte ${this.opStart} (not a pickle, or corrupt)`);
      }
      this.opName = name;
      if (REFUSED_OPCODES.has(op)) this.refuse(name);
      switch (op) {
        case 0x80: {
          const proto = this.readU8();
          if (proto > PICKLE_HIGHEST_PROTOCOL) this.fail(`unsupported pickle protocol ${proto}`);
          break;
        }
        case 0x95: {
          if (this.frameEnd > this.opStart) this.fail('a new frame begins before the current frame ends');
          const len = this.readU64();
          if (this.pos + len > d.length) this.fail(`frame of ${len} bytes runs past the end of the input (truncated pickle)`);
          this.frameEnd = this.pos + len;
          break;
        }
        case 0x2e: {
          // Like Python, leftovers below the result (hand-made pickles only) are ignored.
          return this.finish(this.pop());
        }
        case 0x28:
          this.metastack.push(this.stack);
          this.stack = [];
          break;
        case 0x30:
          if (this.stack.length > 0) this.stack.pop();
          else this.popMark();
          break;
        case 0x31:
          this.popMark();
          break;
        case 0x32:
          this.push(this.top());
          break;
        case 0x4e:
          this.push(null);
          break;
        case 0x88:
          this.push(true);
          break;
        case 0x89:
          this.push(false);
          break;
        case 0x49: {
          const line = this.readLine();
          const text = line.toString('latin1');
          if (text === '00') this.push(false);
          else if (text === '01') this.push(true);
          else this.push(this.parseIntText(line, false));
          break;
        }
        case 0x4a:
          this.push(this.read(4).readInt32LE(0));
          break;
        case 0x4b:
          this.push(this.readU8());
          break;
        case 0x4d:
          this.push(this.read(2).readUInt16LE(0));
          break;
        case 0x4c:
          this.push(this.parseIntText(this.readLine(), true));
          break;
        case 0x8a:
          this.push(decodeLong(this.read(this.readU8())));
          break;
        case 0x8b: {
          const n = this.read(4).readInt32LE(0);
          if (n < 0) this.fail('negative byte count');
          this.push(decodeLong(this.read(n)));
          break;
        }
        case 0x46: {
          const text = this.readLine().toString('latin1').trim();
          const lower = text.toLowerCase();
          let value: number;
          if (/^[+-]?(inf|infinity)$/.test(lower)) value = lower.startsWith('-') ? -Infinity : Infinity;
          else if (/^[+-]?nan$/.test(lower)) value = NaN;
          else if (/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/.test(lower)) value = Number(text);
          else this.fail(`invalid float literal ${JSON.stringify(text)}`);
          this.push(value);
          break;
        }
        case 0x47:
          this.push(this.read(8).readDoubleBE(0));
          break;
        case 0x53: {
          const line = this.readLine();
          const q = line[0];
          if (line.length < 2 || (q !== 0x27 && q !== 0x22) || line[line.length - 1] !== q) {
            this.fail('the STRING opcode argument must be quoted');
          }
          this.push(escapeDecode(line.subarray(1, line.length - 1), this.opStart));
          break;
        }
        case 0x54: {
          const n = this.read(4).readInt32LE(0);
          if (n < 0) this.fail('negative byte count');
          this.push(this.read(n));
          break;
        }
        case 0x55:
          this.push(this.read(this.readU8()));
          break;
        case 0x42:
          this.push(this.read(this.readU32()));
          break;
        case 0x43:
          this.push(this.read(this.readU8()));
          break;
        case 0x8e:
          this.push(this.read(this.readU64()));
          break;
        case 0x96:
          this.push(this.read(this.readU64()));
          break;
        case 0x98:
          if (!Buffer.isBuffer(this.top())) this.fail('READONLY_BUFFER needs a buffer on the stack');
          break;
        case 0x97:
          this.fail('out-of-band buffers (NEXT_BUFFER) are not supported');
          break;
        case 0x56:
          this.push(rawUnicodeEscapeDecode(this.readLine(), this.opStart));
          break;
        case 0x58:
          this.push(this.decodeUtf8(this.read(this.readU32())));
          break;
        case 0x8c:
          this.push(this.decodeUtf8(this.read(this.readU8())));
          break;
        case 0x8d:
          this.push(this.decodeUtf8(this.read(this.readU64())));
          break;
        case 0x29:
          this.push(this.makeTuple([]));
          break;
        case 0x74:
          this.push(this.makeTuple(this.popMark()));
          break;
        case 0x85:
          this.push(this.makeTuple([this.pop()]));
          break;
        case 0x86: {
          const b = this.pop();
          const a = this.pop();
          this.push(this.makeTuple([a, b]));
          break;
        }
        case 0x87: {
          const c = this.pop();
          const b = this.pop();
          const a = this.pop();
          this.push(this.makeTuple([a, b, c]));
          break;
        }
        case 0x5d:
          this.push([]);
          break;
        case 0x6c:
          this.push(this.popMark());
          break;
        case 0x7d:
          this.push(new Map());
          break;
        case 0x64: {
          const items = this.popMark();
          if (items.length % 2 !== 0) this.fail('odd number of items for DICT');
          const map = new Map<StackItem, StackItem>();
          for (let i = 0; i < items.length; i += 2) map.set(items[i]!, items[i + 1]!);
          this.push(map as Map<PickleValue, PickleValue>);
          break;
        }
        case 0x8f:
          this.push(new Set());
          break;
        case 0x91:
          this.push(new Set(this.popMark()) as Set<PickleValue>);
          break;
        case 0x61: {
          const item = this.pop();
          this.listTarget().push(item);
          break;
        }
        case 0x65: {
          const items = this.popMark();
          const list = this.listTarget();
          for (const item of items) list.push(item);
          break;
        }
        case 0x73: {
          const value = this.pop();
          const key = this.pop();
          this.dictTarget().set(key, value);
          break;
        }
        case 0x75: {
          const items = this.popMark();
          if (items.length % 2 !== 0) this.fail('odd number of items for SETITEMS');
          const map = this.dictTarget();
          for (let i = 0; i < items.length; i += 2) map.set(items[i]!, items[i + 1]!);
          break;
        }
        case 0x90: {
          const items = this.popMark();
          const set = this.top();
          if (!(set instanceof Set)) this.fail(`ADDITEMS needs a set, found ${describe(set)}`);
          for (const item of items) (set as Set<StackItem>).add(item);
          break;
        }
        case 0x67:
          this.push(this.memoGet(Number(this.parseIntText(this.readLine(), false))));
          break;
        case 0x68:
          this.push(this.memoGet(this.readU8()));
          break;
        case 0x6a:
          this.push(this.memoGet(this.readU32()));
          break;
        case 0x70: {
          const index = this.parseIntText(this.readLine(), false);
          if (typeof index !== 'number' || index < 0) this.fail('negative or huge PUT argument');
          this.memoPut(index);
          break;
        }
        case 0x71:
          this.memoPut(this.readU8());
          break;
        case 0x72:
          this.memoPut(this.readU32());
          break;
        case 0x94:
          this.memoPut(this.memo.size);
          break;
        case 0x63: {
          const moduleName = this.readLine().toString('utf8');
          const name = this.readLine().toString('utf8');
          this.push(this.resolveGlobal(moduleName, name));
          break;
        }
        case 0x93: {
          const name = this.pop();
          const moduleName = this.pop();
          if (typeof name !== 'string' || typeof moduleName !== 'string') this.fail('STACK_GLOBAL requires str module and name');
          this.push(this.resolveGlobal(moduleName, name));
          break;
        }
        case 0x69: {
          const moduleName = this.readLine().toString('utf8');
          const name = this.readLine().toString('utf8');
          this.refuse(`INST of ${moduleName}.${name}`, `${moduleName}.${name}`);
          break;
        }
        case 0x6f: {
          const items = this.popMark();
          const cls = items[0];
          if (cls instanceof GlobalRef) this.refuse(`OBJ of ${cls.name}`, cls.name);
          this.refuse(`OBJ of ${cls === undefined ? 'nothing' : describe(cls)}`);
          break;
        }
        case 0x52: {
          const args = this.pop();
          const callable = this.pop();
          if (!(callable instanceof GlobalRef)) this.refuse(`REDUCE on ${describe(callable)}`);
          if (!Array.isArray(args) || !this.tuples.has(args)) this.fail(`REDUCE arguments must be a tuple, found ${describe(args)}`);
          this.push(this.callAllowed(callable, args));
          break;
        }
        case 0x62: {
          const state = this.pop();
          const target = this.top();
          if (target instanceof NumpyDtype) this.buildDtype(state);
          else if (target instanceof NumpyArrayPlaceholder) this.buildArray(target, state);
          else if (target instanceof GlobalRef) this.refuse(`BUILD on ${target.name}`, target.name);
          else this.refuse(`BUILD on ${describe(target)}`);
          break;
        }
        default:
          this.fail('opcode not handled');
      }
    }
  }

  private decodeUtf8(raw: Buffer): string {
    try {
      return utf8Strict.decode(raw);
    } catch {
      this.fail('invalid UTF-8 in a str');
    }
  }

  private listTarget(): StackItem[] {
    const list = this.top();
    if (!Array.isArray(list) || this.tuples.has(list)) this.fail(`expected a list to append to, found ${describe(list)}`);
    return list as StackItem[];
  }

  private dictTarget(): Map<StackItem, StackItem> {
    const map = this.top();
    if (!(map instanceof Map)) this.fail(`expected a dict to set items on, found ${describe(map)}`);
    return map as Map<StackItem, StackItem>;
  }

  private dtypeOf(value: StackItem, what: string): NumpyDtype {
    if (!(value instanceof NumpyDtype)) this.fail(`${what}: expected a numpy dtype, found ${describe(value)}`);
    return value;
  }

  private bytesOf(value: StackItem, what: string): Buffer {
    if (Buffer.isBuffer(value)) return value;
    // Python 2 numpy pickles loaded without encoding='bytes' would hold str; we always get bytes,
    // but a protocol-0 UNICODE payload is accepted as latin-1 like numpy does.
    if (typeof value === 'string') return Buffer.from(value, 'latin1');
    this.fail(`${what}: expected bytes, found ${describe(value)}`);
  }

  private callAllowed(callable: GlobalRef, args: StackItem[]): StackItem {
    const where = callable.name;
    switch (callable.kind) {
      case 'encode': {
        const text = args[0];
        const encoding = args.length > 1 ? latin1Text(args[1]!) : 'utf-8';
        if (typeof text !== 'string' || args.length > 2) this.fail(`${where} expects (str, encoding)`);
        const enc = (encoding ?? '').toLowerCase().replace(/_/g, '-');
        if (enc === 'latin1' || enc === 'latin-1' || enc === 'iso-8859-1' || enc === 'l1') {
          for (let i = 0; i < text.length; i++) {
            if (text.charCodeAt(i) > 0xff) this.fail(`${where}: character outside latin-1`);
          }
          return Buffer.from(text, 'latin1');
        }
        if (enc === 'utf-8' || enc === 'utf8') return Buffer.from(text, 'utf8');
        this.fail(`${where}: unsupported encoding ${JSON.stringify(encoding)}`);
        break;
      }
      case 'bytes':
      case 'bytearray': {
        if (args.length === 0) return Buffer.alloc(0);
        if (args.length === 1 && Buffer.isBuffer(args[0])) return args[0];
        if (args.length === 2 && typeof args[0] === 'string') {
          return this.callAllowed(new GlobalRef('_codecs.encode', 'encode'), args);
        }
        this.fail(`${where} accepts only () or (bytes,) or (str, encoding) here`);
        break;
      }
      case 'dtype': {
        const code = latin1Text(args[0] ?? null);
        if (code === undefined) this.fail(`${where} expects a type code string`);
        const normalized = ({ '?': 'b1', b1: 'b1', bool: 'b1', u1: 'u1', uint8: 'u1', B: 'u1', i1: 'i1', int8: 'i1', b: 'i1' } as Record<string, NumpyDtypeCode>)[
          code.replace(/^[|=<>]/, '')
        ];
        if (!normalized) this.fail(`numpy dtype ${JSON.stringify(code)} is not supported (only bool, uint8, int8)`);
        return new NumpyDtype(normalized);
      }
      case 'scalar': {
        const dtype = this.dtypeOf(args[0] ?? null, where);
        if (args.length !== 2) this.fail(`${where} expects (dtype, bytes)`);
        const raw = this.bytesOf(args[1]!, where);
        if (raw.length !== 1) this.fail(`${where}: expected 1 byte of scalar data, found ${raw.length}`);
        return this.interpret(dtype, raw, [], where);
      }
      case 'reconstruct': {
        const cls = args[0];
        if (!(cls instanceof GlobalRef) || cls.kind !== 'ndarray') {
          this.refuse(`${where} of ${cls === undefined ? 'nothing' : describe(cls)}`, cls instanceof GlobalRef ? cls.name : undefined);
        }
        return new NumpyArrayPlaceholder();
      }
      case 'frombuffer': {
        // _frombuffer(buffer, dtype, shape, order)
        if (args.length !== 4) this.fail(`${where} expects (buffer, dtype, shape, order)`);
        const raw = this.bytesOf(args[0]!, where);
        const dtype = this.dtypeOf(args[1]!, where);
        const shape = this.shapeOf(args[2]!, where);
        return this.interpret(dtype, raw, shape, where);
      }
      case 'ndarray':
        this.refuse(`calling ${where} directly`, where);
    }
    this.fail(`${where} cannot be called here`);
  }

  private shapeOf(value: StackItem, where: string): number[] {
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'number' && Number.isInteger(v) && v >= 0)) {
      this.fail(`${where}: expected a shape tuple of non-negative ints`);
    }
    return value as number[];
  }

  private interpret(dtype: NumpyDtype, raw: Buffer, shape: number[], where: string): PickleValue {
    if (shape.length > 1) this.fail(`${where}: only 0-d and 1-D numpy arrays are supported, found shape (${shape.join(', ')})`);
    const count = shape.length === 0 ? 1 : shape[0]!;
    if (raw.length !== count) this.fail(`${where}: ${count} elements need ${count} bytes of data, found ${raw.length}`);
    if (dtype.code === 'b1') {
      const values = Array.from(raw, (b) => b !== 0);
      return shape.length === 0 ? values[0]! : values;
    }
    if (dtype.code === 'u1') return shape.length === 0 ? raw[0]! : new Uint8Array(raw);
    const signed = new Int8Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
    return shape.length === 0 ? signed[0]! : signed;
  }

  private buildDtype(state: StackItem): void {
    // numpy dtype state: (version, byteorder, subarray, names, fields, elsize, alignment, flags).
    // Only plain one-byte dtypes are accepted, so subarray/names/fields must be None.
    if (!Array.isArray(state) || state.length < 5) this.fail('unexpected numpy dtype state');
    if (state[2] !== null || state[3] !== null || state[4] !== null) this.fail('structured or sub-array numpy dtypes are not supported');
  }

  private buildArray(target: NumpyArrayPlaceholder, state: StackItem): void {
    // ndarray state: (version, shape, dtype, is_fortran, rawdata), older numpy without version.
    if (!Array.isArray(state) || (state.length !== 5 && state.length !== 4)) this.fail('unexpected numpy array state');
    const [shapeItem, dtypeItem, , rawItem] = state.length === 5 ? state.slice(1) : state;
    const shape = this.shapeOf(shapeItem!, 'numpy array');
    const dtype = this.dtypeOf(dtypeItem!, 'numpy array');
    const raw = this.bytesOf(rawItem!, 'numpy array data');
    if (target.value !== undefined) this.fail('numpy array built twice');
    target.value = this.interpret(dtype, raw, shape, 'numpy array');
  }

  /** Replace numpy placeholders by their values, reject leftovers, freeze tuples. */
  private finish(result: StackItem): PickleValue {
    const seen = new Set<object>();
    const resolve = (item: StackItem): PickleValue => {
      if (item instanceof NumpyArrayPlaceholder) {
        if (item.value === undefined) this.fail('a numpy array was never given its data (missing BUILD)');
        return item.value;
      }
      if (item instanceof GlobalRef) this.fail(`the result holds the bare global ${item.name}, which is not data`);
      if (item instanceof NumpyDtype) this.fail('the result holds a bare numpy dtype, which is not data');
      if (item === null || typeof item !== 'object' || Buffer.isBuffer(item) || item instanceof Uint8Array || item instanceof Int8Array) {
        return item;
      }
      if (seen.has(item)) return item as PickleValue;
      seen.add(item);
      if (Array.isArray(item)) {
        const list = item as StackItem[];
        for (let i = 0; i < list.length; i++) list[i] = resolve(list[i]!);
      } else if (item instanceof Map) {
        const entries = [...(item as Map<StackItem, StackItem>).entries()];
        const map = item as Map<StackItem, StackItem>;
        map.clear();
        for (const [k, v] of entries) map.set(resolve(k), resolve(v));
      } else if (item instanceof Set) {
        const values = [...(item as Set<StackItem>)];
        const set = item as Set<StackItem>;
        set.clear();
        for (const v of values) set.add(resolve(v));
      }
      return item as PickleValue;
    };
    this.opName = 'STOP';
    const value = resolve(result);
    for (const tuple of this.tuples) Object.freeze(tuple);
    return value;
  }
}
