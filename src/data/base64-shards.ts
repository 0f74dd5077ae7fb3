/**
 * PLSC base64 shards: a file list (one part file per line, relative to the list's directory)
 * whose part files hold lines `<base64 image><TAB><label>`.
 *
 * Opening scans every part once (streaming, fixed-size chunks) to record each line's byte range
 * and label; reads are positional, so part files are never held in memory.
 */
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import {
  BadSampleError,
  DataFormatError,
  checkIndex,
  float64Growable,
  int32Growable,
  parseLabelToken,
  resolveNumClasses,
  type SampleSource,
  type SamplePayload,
} from './source.js';
import { positiveInteger } from '../util/validate.js';

export interface Base64ShardOptions {
  /** Class count; labels must be below it. Default: max label + 1. */
  numClasses?: number;
}

const SCAN_CHUNK = 4 << 20;

export class Base64ShardSource implements SampleSource {
  readonly length: number;
  readonly numClasses: number;
  /** Absolute path of the file list. */
  readonly listPath: string;
  /** Absolute paths of the part files, in list order. */
  readonly partPaths: readonly string[];
  private readonly partOf: Int32Array;
  private readonly offsets: Float64Array;
  private readonly byteLengths: Int32Array;
  private readonly lineNumbers: Int32Array;
  private readonly labels: Int32Array;
  private readonly handles = new Map<number, Promise<FileHandle>>();

  private constructor(
    listPath: string,
    partPaths: string[],
    partOf: Int32Array,
    offsets: Float64Array,
    byteLengths: Int32Array,
    lineNumbers: Int32Array,
    labels: Int32Array,
    numClasses: number,
  ) {
    this.listPath = listPath;
    this.partPaths = partPaths;
    this.partOf = partOf;
    this.offsets = offsets;
    this.byteLengths = byteLengths;
    this.lineNumbers = lineNumbers;
    this.labels = labels;
    this.length = labels.length;
    this.numClasses = numClasses;
  }

  static async open(fileListPath: string, options: Base64ShardOptions = {}): Promise<Base64ShardSource> {
    const listPath = resolve(fileListPath);
    let listText: string;
    try {
      listText = await readFile(listPath, 'utf8');
    } catch (error) {
      throw new DataFormatError(listPath, `cannot read file list: ${(error as Error).message}`, { cause: error });
    }
    const partPaths: string[] = [];
    const lines = listText.replace(/^\uFEFF/, '').split('\n');
    for (const raw of lines) {
      const entry = raw.trim();
      if (entry === '' || entry.startsWith('#')) continue;
      partPaths.push(isAbsolute(entry) ? entry : join(dirname(listPath), entry));
    }
    if (partPaths.length === 0) throw new DataFormatError(listPath, 'file list names no part files');
    const { numClasses } = options;
    if (numClasses !== undefined) positiveInteger(numClasses, 'numClasses');
    const partOf = int32Growable();
    const offsets = float64Growable();
    const byteLengths = int32Growable();
    const lineNumbers = int32Growable();
    const labels = int32Growable();
    for (let part = 0; part < partPaths.length; part++) {
      const partPath = partPaths[part]!;
      await scanPart(partPath, (line, offset, length, label) => {
        partOf.push(part);
        offsets.push(offset);
        byteLengths.push(length);
        lineNumbers.push(line);
        labels.push(label);
      }, numClasses);
    }
    const finalLabels = labels.finish();
    if (finalLabels.length === 0) throw new DataFormatError(listPath, 'part files hold no samples');
    const parts = partOf.finish();
    const lineNos = lineNumbers.finish();
    const classes = resolveNumClasses(finalLabels, numClasses, (i) => `${partPaths[parts[i]!]} line ${lineNos[i]}`);
    return new Base64ShardSource(listPath, partPaths, parts, offsets.finish(), byteLengths.finish(), lineNos, finalLabels, classes);
  }

  label(index: number): number {
    checkIndex(index, this.length);
    return this.labels[index]!;
  }

  describe(index: number): string {
    checkIndex(index, this.length);
    return `file ${this.partPaths[this.partOf[index]!]} line ${this.lineNumbers[index]}`;
  }

  async read(index: number): Promise<SamplePayload> {
    checkIndex(index, this.length);
    const part = this.partOf[index]!;
    const length = this.byteLengths[index]!;
    const text = Buffer.allocUnsafe(length);
    try {
      const handle = await this.handle(part);
      const { bytesRead } = await handle.read(text, 0, length, this.offsets[index]!);
      if (bytesRead !== length) throw new Error(`part file shrank: read ${bytesRead} of ${length} bytes`);
    } catch (error) {
      throw new BadSampleError(index, this.describe(index), `cannot read: ${(error as Error).message}`, { cause: error });
    }
    if (!isBase64(text)) throw new BadSampleError(index, this.describe(index), 'image field is not valid base64');
    return { kind: 'encoded', bytes: Buffer.from(text.toString('latin1'), 'base64') };
  }

  async close(): Promise<void> {
    const handles = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(handles.map(async (h) => (await h.catch(() => undefined))?.close()));
  }

  private handle(part: number): Promise<FileHandle> {
    let handle = this.handles.get(part);
    if (handle === undefined) {
      handle = open(this.partPaths[part]!, 'r');
      handle.catch(() => this.handles.delete(part));
      this.handles.set(part, handle);
    }
    return handle;
  }
}

function isBase64(text: Uint8Array): boolean {
  let end = text.length;
  while (end > 0 && text[end - 1] === 0x3d /* '=' */) end--;
  if (text.length - end > 2) return false;
  for (let i = 0; i < end; i++) {
    const c = text[i]!;
    const ok =
      (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2f || c === 0x2d || c === 0x5f;
    if (!ok) return false;
  }
  return end > 0;
}

/** Stream through one part file, reporting each sample line's base64 byte range and label. */
async function scanPart(
  partPath: string,
  onSample: (line: number, offset: number, length: number, label: number) => void,
  numClasses: number | undefined,
): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(partPath, 'r');
  } catch (error) {
    throw new DataFormatError(partPath, `cannot open part file: ${(error as Error).message}`, { cause: error });
  }
  try {
    const chunk = Buffer.allocUnsafe(SCAN_CHUNK);
    let filePos = 0;
    let line = 1;
    let lineStart = 0; // absolute
    let tabAt = -1; // absolute position of the first tab in the current line
    let tail = ''; // text after the tab seen so far (label field), small
    let sawContent = false; // non-blank bytes before the tab
    const finishLine = (lineEnd: number): void => {
      if (tabAt < 0) {
        if (sawContent) throw new DataFormatError(partPath, 'expected "<base64 image>\\t<label>" (no tab found)', { line });
      } else {
        const fields = tail.split('\t');
        if (fields.length > 1 && fields.slice(1).some((f) => f.trim() !== '')) {
          throw new DataFormatError(partPath, `expected 2 tab-separated fields, got ${fields.length + 1}`, { line });
        }
        if (tabAt === lineStart) throw new DataFormatError(partPath, 'empty base64 image field', { line });
        const label = parseLabelToken(fields[0]!.trim(), numClasses);
        if (typeof label === 'string') throw new DataFormatError(partPath, label, { line });
        onSample(line, lineStart, tabAt - lineStart, label);
      }
      line++;
      lineStart = lineEnd + 1;
      tabAt = -1;
      tail = '';
      sawContent = false;
    };
    for (;;) {
      const { bytesRead } = await handle.read(chunk, 0, SCAN_CHUNK, filePos);
      if (bytesRead === 0) break;
      let i = 0;
      while (i < bytesRead) {
        const nl = chunk.indexOf(10, i);
        const stop = nl < 0 || nl >= bytesRead ? bytesRead : nl;
        if (tabAt < 0) {
          const tab = chunk.indexOf(9, i);
          const fieldEnd = tab >= 0 && tab < stop ? tab : stop;
          if (!sawContent) {
            for (let k = i; k < fieldEnd; k++) {
              const c = chunk[k]!;
              if (c !== 0x20 && c !== 0x0d) {
                sawContent = true;
                break;
              }
            }
          }
          if (fieldEnd < stop) {
            tabAt = filePos + tab;
            tail += chunk.toString('latin1', tab + 1, stop);
          }
        } else {
          tail += chunk.toString('latin1', i, stop);
        }
        if (tail.length > 256) throw new DataFormatError(partPath, 'label field too long', { line });
        if (stop === bytesRead) {
          i = bytesRead;
        } else {
          finishLine(filePos + stop);
          i = stop + 1;
        }
      }
      filePos += bytesRead;
    }
    if (filePos > lineStart) finishLine(filePos);
  } finally {
    await handle.close();
  }
}
