/**
 * PLSC list file reader: `label.txt` lines `<path> <label>` or `<path>\t<label>`, image paths
 * relative to the list's directory (or absolute). Blank lines and lines starting with '#' are
 * ignored. A line has exactly two fields: a path with spaces needs the tab form, so a stray third
 * column is an error rather than part of a path.
 *
 * The list file's bytes are kept as one Buffer with offsets into it (no per-line strings), which
 * keeps host memory low for multi-million-line lists.
 */
import { readFile } from 'node:fs/promises';
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

export interface ListFileOptions {
  /** Class count; labels must be below it. Default: max label + 1. */
  numClasses?: number;
  /** Directory that relative image paths are resolved against. Default: the list file's directory. */
  imageRoot?: string;
}

export interface ListEntry {
  path: string;
  label: number;
}

export class ListFileSource implements SampleSource {
  readonly length: number;
  readonly numClasses: number;
  /** Absolute path of the list file. */
  readonly listPath: string;
  /** Directory relative image paths are resolved against. */
  readonly imageRoot: string;
  private readonly text: Buffer;
  private readonly pathStart: Float64Array;
  private readonly pathEnd: Float64Array;
  private readonly lineNumbers: Int32Array;
  private readonly labels: Int32Array;

  private constructor(
    listPath: string,
    imageRoot: string,
    text: Buffer,
    pathStart: Float64Array,
    pathEnd: Float64Array,
    lineNumbers: Int32Array,
    labels: Int32Array,
    numClasses: number,
  ) {
    this.listPath = listPath;
    this.imageRoot = imageRoot;
    this.text = text;
    this.pathStart = pathStart;
    this.pathEnd = pathEnd;
    this.lineNumbers = lineNumbers;
    this.labels = labels;
    this.length = labels.length;
    this.numClasses = numClasses;
  }

  /** Read and validate a list file. Malformed lines raise DataFormatError naming the file and line. */
  static async open(listPath: string, options: ListFileOptions = {}): Promise<ListFileSource> {
    const absolute = resolve(listPath);
    let text: Buffer;
    try {
      text = await readFile(absolute);
    } catch (error) {
      throw new DataFormatError(absolute, `cannot read list file: ${(error as Error).message}`, { cause: error });
    }
    const { numClasses } = options;
    if (numClasses !== undefined) positiveInteger(numClasses, 'numClasses');
    const pathStart = float64Growable();
    const pathEnd = float64Growable();
    const lineNumbers = int32Growable();
    const labels = int32Growable();
    let start = text.length >= 3 && text[0] === 0xef && text[1] === 0xbb && text[2] === 0xbf ? 3 : 0;
    let line = 0;
    while (start < text.length) {
      let end = text.indexOf(10, start);
      if (end < 0) end = text.length;
      line++;
      let s = start;
      let e = end;
      while (s < e && isSpace(text[s]!)) s++;
      while (e > s && isSpace(text[e - 1]!)) e--;
      start = end + 1;
      if (s === e || text[s] === 0x23 /* '#' */) continue;
      const fields = splitFields(text, s, e);
      if (typeof fields === 'string') throw new DataFormatError(absolute, fields, { line });
      const token = text.toString('latin1', fields.labelStart, e);
      const label = parseLabelToken(token, numClasses);
      if (typeof label === 'string') throw new DataFormatError(absolute, label, { line });
      const pe = fields.pathEnd;
      pathStart.push(s);
      pathEnd.push(pe);
      lineNumbers.push(line);
      labels.push(label);
    }
    const finalLabels = labels.finish();
    if (finalLabels.length === 0) throw new DataFormatError(absolute, 'list file has no samples');
    const lines = lineNumbers.finish();
    const classes = resolveNumClasses(finalLabels, numClasses, (i) => `${absolute} line ${lines[i]}`);
    const root = options.imageRoot === undefined ? dirname(absolute) : resolve(options.imageRoot);
    return new ListFileSource(absolute, root, text, pathStart.finish(), pathEnd.finish(), lines, finalLabels, classes);
  }

  label(index: number): number {
    checkIndex(index, this.length);
    return this.labels[index]!;
  }

  /** The image path exactly as written in the list. */
  relativePath(index: number): string {
    checkIndex(index, this.length);
    return this.text.toString('utf8', this.pathStart[index]!, this.pathEnd[index]!);
  }

  /** The image path resolved against imageRoot. */
  imagePath(index: number): string {
    const path = this.relativePath(index);
    return isAbsolute(path) ? path : join(this.imageRoot, path);
  }

  /** 1-based line number of sample `index` in the list file. */
  lineNumber(index: number): number {
    checkIndex(index, this.length);
    return this.lineNumbers[index]!;
  }

  describe(index: number): string {
    return `file ${this.listPath} line ${this.lineNumber(index)} (${this.imagePath(index)})`;
  }

  async read(index: number): Promise<SamplePayload> {
    const path = this.imagePath(index);
    try {
      return { kind: 'encoded', bytes: await readFile(path) };
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? `image file missing: ${path}` : `cannot read ${path}: ${(error as Error).message}`;
      throw new BadSampleError(index, this.describe(index), reason, { cause: error });
    }
  }
}

/**
 * Splits the trimmed line text[s, e) into its path and label: at its only tab when it has one (the
 * path may then contain spaces), else at its only run of spaces. Returns a message when the line
 * does not have exactly two fields.
 */
function splitFields(text: Buffer, s: number, e: number): { pathEnd: number; labelStart: number } | string {
  const shown = (): string => JSON.stringify(text.toString('utf8', s, Math.min(e, s + 120)));
  const tab = text.indexOf(9, s);
  if (tab >= 0 && tab < e) {
    let tabs = 0;
    for (let i = tab; i < e; i++) if (text[i] === 9) tabs++;
    if (tabs > 1) return `expected 2 tab-separated fields "<image path>\t<label>", got ${tabs + 1}: ${shown()}`;
    let pathEnd = tab;
    while (pathEnd > s && isSpace(text[pathEnd - 1]!)) pathEnd--;
    let labelStart = tab + 1;
    while (labelStart < e && isSpace(text[labelStart]!)) labelStart++;
    return { pathEnd, labelStart };
  }
  let fields = 0;
  let pathEnd = -1;
  let labelStart = -1;
  for (let i = s; i < e; ) {
    fields++;
    if (fields === 2) labelStart = i;
    while (i < e && !isSpace(text[i]!)) i++;
    if (fields === 1) pathEnd = i;
    while (i < e && isSpace(text[i]!)) i++;
  }
  if (fields === 2) return { pathEnd, labelStart };
  if (fields === 1) return `expected "<image path> <label>", got ${shown()}`;
  return `expected 2 fields "<image path> <label>", got ${fields}: ${shown()} (a path with spaces needs a tab before the label)`;
}

function isSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0d || byte === 0x0b || byte === 0x0c;
}
