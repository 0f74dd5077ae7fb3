// Class rows of a checkpoint's FC shards, streamed a tile of rows at a time: read (for another
// worker count, or another storage dtype), loaded into a live head, or written to new shard files.
// Nothing here holds more than one tile of a shard beyond its destination, so a 10M-class bfloat16
// shard is never copied whole and never widened to float32.
import { noGrad } from '../torch/autograd.js';
import type { DType } from '../torch/native.js';
import * as F from '../torch/ops.js';
import { SafetensorsRowReader, SafetensorsStreamWriter } from '../torch/safetensors-stream.js';
import { safetensorsElementBytes } from '../torch/safetensors.js';
import type { Tensor } from '../torch/tensor.js';
import { CLASS_STORED_TENSORS, shardTensorDType, type ClassStorage } from '../config/class-storage.js';
import { positiveInteger } from '../util/validate.js';

/** One FC shard file and the global class range it holds. */
export interface ShardFile {
  path: string;
  classOffset: number;
  numLocalClasses: number;
}

/** The FC shards of one checkpoint. */
export interface ShardSet {
  /** The checkpoint directory (for messages). */
  dir: string;
  /** In class order; together they cover [0, numClasses). */
  files: ShardFile[];
  /** The tensors every shard holds (weight, weight_momentum[, bias, bias_momentum]). */
  tensorNames: readonly string[];
  /** The dtype of weight and weight_momentum that meta.json records. */
  storage: ClassStorage;
}

export interface ShardTileOptions {
  /** Rows per read/convert/write (default: about 4 MiB of float32 rows). */
  tileRows?: number;
}

const DEFAULT_TILE_BYTES = 4 << 20;

function rowElementsOf(shape: readonly number[]): number {
  return shape.slice(1).reduce((n, d) => n * d, 1);
}

function tileRowsFor(rowElements: number, options: ShardTileOptions): number {
  const rows = options.tileRows ?? Math.max(1, Math.floor(DEFAULT_TILE_BYTES / (Math.max(1, rowElements) * 4)));
  return positiveInteger(rows, 'tileRows');
}

/** What a shard tensor looks like in every file: its dtype and the shape of one row. */
interface TensorForm {
  dtype: DType;
  rowShape: number[];
}

/** Opens the shard files lazily and checks each tensor's rows, row shape and dtype against the set. */
class ShardReaders {
  private readonly readers = new Map<number, SafetensorsRowReader>();
  private readonly forms = new Map<string, TensorForm>();

  constructor(readonly set: ShardSet) {}

  reader(index: number): SafetensorsRowReader {
    let reader = this.readers.get(index);
    if (reader === undefined) {
      reader = SafetensorsRowReader.open((this.set.files[index] as ShardFile).path);
      this.readers.set(index, reader);
    }
    return reader;
  }

  /** The tensor's dtype and row shape, the same in every shard file (checked as files are opened). */
  form(name: string, index = 0): TensorForm {
    const file = this.set.files[index] as ShardFile;
    const entry = this.reader(index).entry(name);
    const where = `checkpoint ${file.path}: tensor '${name}'`;
    if (entry.shape.length === 0 || entry.shape[0] !== file.numLocalClasses) {
      throw new Error(`${where} has shape [${entry.shape.join(', ')}], expected ${file.numLocalClasses} rows (classes ${file.classOffset} to ${file.classOffset + file.numLocalClasses - 1})`);
    }
    const dtype = this.reader(index).dtype(name);
    const expected = shardTensorDType(name, this.set.storage);
    if (CLASS_STORED_TENSORS.includes(name) && dtype !== expected) {
      throw new Error(`${where} is stored as ${dtype} but meta.json records classStorage ${this.set.storage}`);
    }
    const form = { dtype, rowShape: entry.shape.slice(1) };
    const first = this.forms.get(name);
    if (first === undefined) this.forms.set(name, form);
    else if (first.dtype !== form.dtype || first.rowShape.join(',') !== form.rowShape.join(',')) {
      throw new Error(`${where} is ${dtype} [rows, ${form.rowShape.join(', ')}] but an earlier shard holds ${first.dtype} [rows, ${first.rowShape.join(', ')}]`);
    }
    return form;
  }

  close(): void {
    for (const reader of this.readers.values()) reader.close();
    this.readers.clear();
  }
}

function checkRange(set: ShardSet, start: number, count: number): void {
  const total = set.files.reduce((n, f) => n + f.numLocalClasses, 0);
  if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > total) {
    throw new RangeError(`checkpoint ${set.dir}: class rows [${start}, ${start + count}) are outside its ${total} classes`);
  }
}

// Tiles are read into one buffer reused by every call (each tile's tensor is disposed before the
// next read), so streaming a shard leaves no tile-sized garbage behind for the GC to find late.
let sharedReadStaging = new Uint8Array(0);

function readStaging(bytes: number): Uint8Array {
  if (sharedReadStaging.length < bytes) sharedReadStaging = new Uint8Array(bytes);
  return sharedReadStaging;
}

/**
 * Calls `visit(tile, row)` for consecutive tiles of rows [start, start + count) of shard tensor
 * `name`, across however many shard files they span; `row` is the tile's first row relative to
 * `start`. The tile views a reused buffer: use it inside `visit` only.
 */
function forEachTile(readers: ShardReaders, name: string, start: number, count: number, tileRows: number, visit: (tile: Tensor, row: number) => void): void {
  readers.set.files.forEach((file, index) => {
    const from = Math.max(start, file.classOffset);
    const to = Math.min(start + count, file.classOffset + file.numLocalClasses);
    if (from >= to) return;
    const form = readers.form(name, index);
    const rowBytes = rowElementsOf([0, ...form.rowShape]) * safetensorsElementBytes(readers.reader(index).entry(name).dtype);
    const staging = readStaging(tileRows * rowBytes);
    for (let first = from; first < to; first += tileRows) {
      const rows = Math.min(tileRows, to - first);
      const tile = readers.reader(index).readRows(name, first - file.classOffset, rows, staging);
      try {
        visit(tile, first - start);
      } finally {
        tile.dispose();
      }
    }
  });
}

/** target[row : row + tile rows] = tile, converted to the target's dtype. */
function copyRows(target: Tensor, row: number, tile: Tensor): void {
  const rows = F.narrow(target, 0, row, tile.shape[0] as number);
  try {
    rows.copy_(tile);
  } finally {
    rows.dispose();
  }
}

function withReaders<T>(set: ShardSet, fn: (readers: ShardReaders) => T): T {
  const readers = new ShardReaders(set);
  try {
    return fn(readers);
  } finally {
    readers.close();
  }
}

/** Rows [start, start + count) of every shard tensor, in the dtypes the files hold (the caller owns them). */
export function readShardRows(set: ShardSet, start: number, count: number, options: ShardTileOptions = {}): Record<string, Tensor> {
  checkRange(set, start, count);
  return withReaders(set, (readers) => {
    const out: Record<string, Tensor> = {};
    try {
      for (const name of set.tensorNames) {
        const form = readers.form(name);
        const target = F.empty([count, ...form.rowShape], { dtype: form.dtype });
        out[name] = target;
        const tileRows = tileRowsFor(rowElementsOf([0, ...form.rowShape]), options);
        forEachTile(readers, name, start, count, tileRows, (tile, row) => copyRows(target, row, tile));
      }
    } catch (err) {
      for (const t of Object.values(out)) t.dispose();
      throw err;
    }
    return out;
  });
}

/**
 * Copies rows [start, start + rows of the targets) of every shard tensor into `targets` (a live
 * head's state: same names, [rows, ...] each), converting each tile to the target's dtype: a
 * float32 checkpoint loads into a bfloat16 head and back without a full-size temporary.
 */
export function loadShardRowsInto(set: ShardSet, start: number, targets: Record<string, Tensor>, options: ShardTileOptions = {}): void {
  const names = Object.keys(targets);
  const missing = names.filter((n) => !set.tensorNames.includes(n));
  const unexpected = set.tensorNames.filter((n) => !names.includes(n));
  if (missing.length > 0 || unexpected.length > 0) {
    const parts = [
      ...(missing.length > 0 ? [`the head needs ${missing.map((n) => `'${n}'`).join(', ')}, which the checkpoint lacks`] : []),
      ...(unexpected.length > 0 ? [`the checkpoint holds ${unexpected.map((n) => `'${n}'`).join(', ')}, which the head lacks`] : []),
    ];
    throw new Error(`checkpoint ${set.dir}: its FC shards do not match the head (${parts.join('; ')}; was it saved with another loss type?)`);
  }
  if (names.length === 0) return;
  const count = (targets[names[0] as string] as Tensor).shape[0] as number;
  checkRange(set, start, count);
  withReaders(set, (readers) => {
    for (const name of names) {
      const target = targets[name] as Tensor;
      const form = readers.form(name);
      const expected = [count, ...form.rowShape];
      if (target.shape.join(',') !== expected.join(',')) {
        throw new Error(`checkpoint ${set.dir}: '${name}' rows are [${expected.join(', ')}], the head's tensor is [${target.shape.join(', ')}]`);
      }
      const tileRows = tileRowsFor(rowElementsOf(expected), options);
      noGrad(() => forEachTile(readers, name, start, count, tileRows, (tile, row) => copyRows(target, row, tile)));
    }
  });
}

/**
 * Writes rows [start, start + count) of every shard tensor to a new shard file at `path`, weight
 * and weight_momentum converted to `storage` (float32 to 16 bits rounds to nearest even).
 */
export function writeShardFile(path: string, set: ShardSet, start: number, count: number, storage: ClassStorage, metadata: Record<string, string>, options: ShardTileOptions = {}): void {
  checkRange(set, start, count);
  withReaders(set, (readers) => {
    const specs = set.tensorNames.map((name) => {
      const form = readers.form(name);
      return { name, dtype: CLASS_STORED_TENSORS.includes(name) ? storage : form.dtype, shape: [count, ...form.rowShape] };
    });
    const writer = new SafetensorsStreamWriter(path, specs, metadata);
    try {
      for (const entry of writer.order) {
        const tileRows = tileRowsFor(rowElementsOf(entry.shape), options);
        forEachTile(readers, entry.name, start, count, tileRows, (tile) => writer.append(entry.name, tile));
      }
      writer.finish();
    } catch (err) {
      writer.abort();
      throw err;
    }
  });
}
