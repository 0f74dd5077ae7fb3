// Row-range access to safetensors files for tensors too large to hold twice: a reader that loads
// rows [first, first + count) of one tensor with one positional read, and a writer that writes the
// header first (the shapes are known up front) and then each tensor's rows in order, a tile at a
// time. Files are byte-identical to what saveSafetensors writes for the same tensors.
import { closeSync, openSync, renameSync, rmSync } from 'node:fs';
import type { DType } from './native.js';
import { Tensor } from './tensor.js';
import * as F from './ops.js';
import { noGrad } from './autograd.js';
import {
  SafetensorsError,
  fromSafetensorsDType,
  planSafetensorsLayout,
  readFully,
  readHeaderFromFd,
  safetensorsElementBytes,
  writeFully,
  type PlannedSafetensorsEntry,
  type SafetensorsEntry,
  type SafetensorsHeader,
  type SafetensorsTensorSpec,
} from './safetensors.js';

/** Elements of one row (the product of every dimension after the first; 1 for a 1-d tensor). */
function rowElements(shape: readonly number[]): number {
  return shape.slice(1).reduce((n, d) => n * d, 1);
}

/** An open safetensors file whose tensors are read a range of rows (along dimension 0) at a time. */
export class SafetensorsRowReader {
  readonly path: string;
  readonly header: SafetensorsHeader;
  private fd: number | null;

  private constructor(path: string, fd: number, header: SafetensorsHeader) {
    this.path = path;
    this.fd = fd;
    this.header = header;
  }

  static open(path: string): SafetensorsRowReader {
    const fd = openSync(path, 'r');
    try {
      return new SafetensorsRowReader(path, fd, readHeaderFromFd(fd, path));
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** The header entry of `name`, or an error naming the file and what it holds. */
  entry(name: string): SafetensorsEntry {
    const found = this.header.entries.find((e) => e.name === name);
    if (found === undefined) {
      throw new SafetensorsError(this.path, `no tensor named '${name}' (it holds ${this.header.entries.map((e) => `'${e.name}'`).join(', ') || 'nothing'})`);
    }
    return found;
  }

  dtype(name: string): DType {
    return fromSafetensorsDType(this.entry(name).dtype);
  }

  /**
   * Rows [first, first + count) of tensor `name`, in the file's dtype, as a tensor over JavaScript
   * memory: `staging` when given (it must hold the rows' bytes; the tensor views it, so dispose the
   * tensor before reusing the buffer), else a new buffer. The caller disposes the tensor.
   */
  readRows(name: string, first: number, count: number, staging?: Uint8Array): Tensor {
    if (this.fd === null) throw new SafetensorsError(this.path, 'reader was closed');
    const entry = this.entry(name);
    if (entry.shape.length === 0) throw new SafetensorsError(this.path, 'is a scalar, it has no rows', name);
    const rows = entry.shape[0] as number;
    if (!Number.isInteger(first) || !Number.isInteger(count) || first < 0 || count < 0 || first + count > rows) {
      throw new SafetensorsError(this.path, `rows [${first}, ${first + count}) are outside its ${rows} rows`, name);
    }
    const rowBytes = rowElements(entry.shape) * safetensorsElementBytes(entry.dtype);
    const bytes = count * rowBytes;
    if (staging !== undefined && staging.length < bytes) throw new RangeError(`readRows: staging buffer of ${staging.length} bytes cannot hold ${bytes}`);
    const target = staging === undefined ? new Uint8Array(bytes) : staging.subarray(0, bytes);
    if (bytes > 0) readFully(this.fd, target, this.header.dataStart + entry.begin + first * rowBytes, this.path, name);
    return F.fromTypedArray(target, [count, ...entry.shape.slice(1)], fromSafetensorsDType(entry.dtype));
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

// One staging buffer for every writer: append() fills and writes it before returning, so writers
// never share it at the same time, and tile after tile reuses it instead of leaving garbage.
let sharedStaging = new Uint8Array(0);

function stagingBuffer(bytes: number): Uint8Array {
  if (sharedStaging.length < bytes) sharedStaging = new Uint8Array(bytes);
  return sharedStaging.subarray(0, bytes);
}

const FLOATING: ReadonlySet<DType> = new Set<DType>(['float32', 'float64', 'float16', 'bfloat16']);

/**
 * Writes a safetensors file tensor by tensor, rows in order, without ever holding a whole tensor:
 * the header comes from the specs, then `append` takes each tensor's rows in `order` (any number
 * of rows per call). Floating rows of another dtype are converted as libtorch converts
 * (float32 to bfloat16 or float16: round to nearest, ties to even). The file appears under `path` only after `finish` (written to a temporary
 * first, like saveSafetensors).
 */
export class SafetensorsStreamWriter {
  readonly path: string;
  /** The tensors in the order their rows must be appended. */
  readonly order: readonly PlannedSafetensorsEntry[];
  private readonly temporary: string;
  private fd: number | null;
  private current = 0;
  private rowsWritten = 0;

  constructor(path: string, specs: readonly SafetensorsTensorSpec[], metadata?: Record<string, string>) {
    const layout = planSafetensorsLayout(specs, metadata, path);
    this.path = path;
    this.order = layout.entries;
    this.temporary = `${path}.tmp-${process.pid}`;
    this.fd = openSync(this.temporary, 'w');
    try {
      writeFully(this.fd, layout.header);
    } catch (err) {
      this.abort();
      throw err;
    }
    this.skipEmpty();
  }

  /** The tensor whose rows `append` expects next (null once every tensor is complete). */
  get next(): PlannedSafetensorsEntry | null {
    return this.order[this.current] ?? null;
  }

  /** Appends rows of tensor `name` (which must be `next`); dtype and row shape must match its spec. */
  append(name: string, rows: Tensor): void {
    const fd = this.fd;
    if (fd === null) throw new SafetensorsError(this.path, 'writer was closed', name);
    const entry = this.next;
    if (entry === null) throw new SafetensorsError(this.path, 'every tensor is already complete', name);
    if (entry.name !== name) throw new SafetensorsError(this.path, `rows appended out of order: expected '${entry.name}' next`, name);
    const dtype = fromSafetensorsDType(entry.dtype);
    if (rows.dtype !== dtype && !(FLOATING.has(rows.dtype) && FLOATING.has(dtype))) {
      throw new SafetensorsError(this.path, `rows are ${rows.dtype}, the header says ${dtype} (only floating types convert)`, name);
    }
    const rowShape = entry.shape.slice(1);
    const given = rows.shape;
    if (entry.shape.length === 0 ? given.length !== 0 : given.length !== entry.shape.length || given.slice(1).some((d, i) => d !== rowShape[i])) {
      throw new SafetensorsError(this.path, `rows of shape [${given.join(', ')}] do not fit [${entry.shape.join(', ')}]`, name);
    }
    const count = entry.shape.length === 0 ? 1 : (given[0] as number);
    const total = entry.shape[0] ?? 1;
    if (this.rowsWritten + count > total) throw new SafetensorsError(this.path, `${this.rowsWritten + count} rows appended, the header says ${total}`, name);
    const staged = stagingBuffer(rows.numel * safetensorsElementBytes(entry.dtype));
    // The rows are copied into JavaScript memory, converted to the header's dtype on the way.
    const view = F.fromTypedArray(staged, given, dtype);
    try {
      noGrad(() => view.copy_(rows));
    } finally {
      view.dispose();
    }
    writeFully(fd, staged);
    this.rowsWritten += count;
    if (this.rowsWritten === total) {
      this.current++;
      this.rowsWritten = 0;
      this.skipEmpty();
    }
  }

  /** Closes the file and moves it into place; every tensor must be complete. */
  finish(): void {
    if (this.fd === null) throw new SafetensorsError(this.path, 'writer was closed');
    const missing = this.next;
    if (missing !== null) {
      this.abort();
      throw new SafetensorsError(this.path, `finished with ${this.rowsWritten} of ${missing.shape[0] ?? 1} rows written`, missing.name);
    }
    closeSync(this.fd);
    this.fd = null;
    renameSync(this.temporary, this.path);
  }

  /** Closes and deletes the partial file (safe to call more than once). */
  abort(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    rmSync(this.temporary, { force: true });
  }

  // Tensors with no bytes (0 rows) take no appends.
  private skipEmpty(): void {
    while (this.next !== null && this.next.end === this.next.begin) this.current++;
  }
}
