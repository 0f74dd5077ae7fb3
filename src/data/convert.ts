/**
 * Dataset conversion between PLSC list files, image folders, PLSC base64 shards and MXNet
 * RecordIO. Encoded image bytes are copied unchanged (no re-encoding); raw sources (synthetic) are
 * encoded as JPEG or PNG. Backs `plsc data convert --from <list|folder|rec|base64> --to <list|rec> IN OUT`.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, extname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { Base64ShardSource } from './base64-shards.js';
import { encodeRgb, sniffImageExtension, verifyImage } from './image.js';
import { ImageFolderSource } from './image-folder.js';
import { ListFileSource } from './list-file.js';
import { RecordIOSource, RecordIOWriter, defaultIdxPath } from './recordio.js';
import { toBadSampleError, type SampleSource } from './source.js';

export type InputFormat = 'list' | 'folder' | 'rec' | 'base64';
export type OutputFormat = 'list' | 'rec';

export interface ConvertProgress {
  done: number;
  total: number;
}

export interface SkippedSample {
  index: number;
  where: string;
  reason: string;
}

export interface WriteDatasetOptions {
  onProgress?: (progress: ConvertProgress) => void;
  /** 'error' (default): stop at the first unreadable sample. 'skip': leave it out and report it. */
  onBadSample?: 'skip' | 'error';
  /** Fully decode every image before writing it (catches corrupt files). Default false. */
  verify?: boolean;
  /** Parallel reads. Default 16. */
  concurrency?: number;
  /** Encoding for raw (undecoded) sources such as SyntheticFaces. Default 'jpeg'. */
  rawEncoding?: 'jpeg' | 'png';
  /**
   * RecordIO output only: write the insightface layout (header record 0 with the identity range,
   * images grouped by class as keys 1..N, identity records N+1..N+C). Default true; silently
   * falls back to plain keys 0..N-1 when N+C+1 exceeds float32's exact integer range (2^24).
   */
  insightfaceHeader?: boolean;
}

export interface ConvertOptions extends WriteDatasetOptions {
  from: InputFormat;
  to: OutputFormat;
  /** list: the list file; folder: the root folder; rec: the .rec file (its .idx beside it); base64: the file list. */
  input: string;
  /** rec: the .rec path (.idx written beside it); list: a .txt list path or a directory (gets label.txt and images/). */
  output: string;
  /** Class count of the input, when it should be checked rather than inferred. */
  numClasses?: number;
}

export interface ConvertResult {
  /** Samples written. */
  written: number;
  numClasses: number;
  skipped: SkippedSample[];
  /** Files the conversion produced (list file, or .rec and .idx); extracted images are under the list's images/ folder. */
  outputs: string[];
}

/** Open a dataset in one of the readable formats. */
export async function openDataset(format: InputFormat, input: string, options: { numClasses?: number } = {}): Promise<SampleSource> {
  switch (format) {
    case 'list':
      return ListFileSource.open(input, options);
    case 'folder': {
      const source = await ImageFolderSource.open(input);
      if (options.numClasses !== undefined && options.numClasses !== source.numClasses) {
        throw new RangeError(`${input}: found ${source.numClasses} class folders, expected ${options.numClasses}`);
      }
      return source;
    }
    case 'rec':
      return RecordIOSource.open(input, options);
    case 'base64':
      return Base64ShardSource.open(input, options);
    default:
      throw new RangeError(`unknown input format ${JSON.stringify(format)} (expected list, folder, rec or base64)`);
  }
}

/** Convert a dataset file/folder into another format. */
export async function convertDataset(options: ConvertOptions): Promise<ConvertResult> {
  const { from, to, input, output } = options;
  if (to !== 'list' && to !== 'rec') throw new RangeError(`unknown output format ${JSON.stringify(to)} (expected list or rec)`);
  if (from === to) throw new RangeError(`input and output are both ${from}; nothing to convert`);
  const source = await openDataset(from, input, options.numClasses === undefined ? {} : { numClasses: options.numClasses });
  try {
    if (to === 'rec') return await writeRecordIODataset(source, output, options);
    return await writeListDataset(source, output, options);
  } finally {
    await source.close?.();
  }
}

/**
 * Write any SampleSource as .rec + .idx. Labels go into each IRHeader (float32, exact below 2^24).
 */
export async function writeRecordIODataset(source: SampleSource, recPath: string, options: WriteDatasetOptions = {}): Promise<ConvertResult> {
  const out = resolve(recPath);
  await mkdir(dirname(out), { recursive: true });
  const numClasses = source.numClasses;
  const wantHeader = (options.insightfaceHeader ?? true) && source.length + numClasses + 1 < 1 << 24;
  const order = wantHeader ? orderByLabel(source) : identityOrder(source.length);
  const writer = await RecordIOWriter.create(out, defaultIdxPath(out));
  const classStart = new Float64Array(numClasses).fill(-1);
  const classEnd = new Float64Array(numClasses).fill(-1);
  let key = wantHeader ? 1 : 0;
  let written = 0;
  try {
    const skipped = await readInOrder(source, order, options, async (index, bytes) => {
      const label = source.label(index);
      if (wantHeader) {
        if (classStart[label] === -1) classStart[label] = key;
        classEnd[label] = key + 1;
      }
      await writer.writeImage(key, label, bytes);
      key++;
      written++;
    });
    if (wantHeader) {
      const first = key;
      let next = 1;
      for (let c = 0; c < numClasses; c++) {
        // Classes left empty (all samples skipped) get an empty range at the current position.
        const start = classStart[c] === -1 ? next : classStart[c]!;
        const end = classEnd[c] === -1 ? next : classEnd[c]!;
        next = end;
        await writer.writeImage(first + c, [start, end], new Uint8Array(0));
      }
      await writer.writeImage(0, [first, first + numClasses], new Uint8Array(0));
    }
    await writer.close();
    return { written, numClasses, skipped, outputs: [writer.recPath, writer.idxPath] };
  } catch (error) {
    // Leave no half-written dataset behind that a later run could mistake for a complete one.
    await writer.close().catch(() => undefined);
    await Promise.all([rm(writer.recPath, { force: true }), rm(writer.idxPath, { force: true })]);
    throw error;
  }
}

/**
 * Write any SampleSource as a PLSC list file (`path<TAB>label` lines). Sources whose samples are
 * already files (list, folder) are referenced in place by relative path; others are extracted to
 * `images/<8-digit index>.<ext>` beside the list.
 */
export async function writeListDataset(source: SampleSource, output: string, options: WriteDatasetOptions = {}): Promise<ConvertResult> {
  const target = resolve(output);
  const listPath = extname(target).toLowerCase() === '.txt' ? target : join(target, 'label.txt');
  const listDir = dirname(listPath);
  await mkdir(listDir, { recursive: true });
  const lines: string[] = [];
  const inPlace = source instanceof ListFileSource || source instanceof ImageFolderSource ? source : undefined;
  const imageDir = join(listDir, 'images');
  if (inPlace === undefined) await mkdir(imageDir, { recursive: true });
  const width = Math.max(8, String(source.length - 1).length);
  const skipped = await readInOrder(source, identityOrder(source.length), options, async (index, bytes) => {
    let path: string;
    if (inPlace !== undefined) {
      path = relative(listDir, inPlace.imagePath(index));
      if (isAbsolute(path)) path = inPlace.imagePath(index);
    } else {
      const name = `${String(index).padStart(width, '0')}.${sniffImageExtension(bytes)}`;
      await writeFile(join(imageDir, name), bytes);
      path = `images/${name}`;
    }
    if (/[\r\n]/.test(path)) throw new Error(`image path ${JSON.stringify(path)} contains a line break`);
    lines.push(`${path.split(sep).join('/')}\t${source.label(index)}\n`);
  }, inPlace !== undefined && !options.verify);
  await writeFile(listPath, lines.join(''));
  return { written: lines.length, numClasses: source.numClasses, skipped, outputs: [listPath] };
}

/**
 * Read samples in `order` with bounded parallelism and hand their encoded bytes to `consume`
 * strictly in order. With `skipRead` the bytes are not read (consume gets an empty array).
 */
async function readInOrder(
  source: SampleSource,
  order: Int32Array,
  options: WriteDatasetOptions,
  consume: (index: number, bytes: Uint8Array) => Promise<void>,
  skipRead = false,
): Promise<SkippedSample[]> {
  const concurrency = Math.max(1, options.concurrency ?? 16);
  const total = order.length;
  const every = Math.max(1, Math.floor(total / 100));
  const skipped: SkippedSample[] = [];
  const fetch = async (index: number): Promise<Uint8Array> => {
    if (skipRead) return new Uint8Array(0);
    const payload = await source.read(index);
    let bytes: Uint8Array;
    if (payload.kind === 'encoded') bytes = payload.bytes;
    else bytes = await encodeRgb(payload.pixels, payload.width, payload.height, payload.layout, options.rawEncoding ?? 'jpeg');
    if (options.verify) await verifyImage(bytes);
    return bytes;
  };
  const window: Array<Promise<Uint8Array>> = [];
  let issued = 0;
  const issue = (): void => {
    while (window.length < concurrency && issued < total) {
      const p = fetch(order[issued++]!);
      p.catch(() => undefined);
      window.push(p);
    }
  };
  try {
    for (let done = 0; done < total; done++) {
      issue();
      const index = order[done]!;
      let bytes: Uint8Array | undefined;
      try {
        bytes = await window.shift()!;
      } catch (error) {
        const bad = toBadSampleError(source, index, error);
        if ((options.onBadSample ?? 'error') === 'error') throw bad;
        skipped.push({ index, where: bad.where, reason: bad.reason });
      }
      if (bytes !== undefined) await consume(index, bytes);
      if ((done + 1) % every === 0 || done + 1 === total) options.onProgress?.({ done: done + 1, total });
    }
  } finally {
    await Promise.allSettled(window);
  }
  return skipped;
}

function identityOrder(n: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  return out;
}

/** Sample indices grouped by label (stable counting sort). */
function orderByLabel(source: SampleSource): Int32Array {
  const counts = new Float64Array(source.numClasses + 1);
  for (let i = 0; i < source.length; i++) counts[source.label(i) + 1]!++;
  for (let c = 1; c <= source.numClasses; c++) counts[c]! += counts[c - 1]!;
  const out = new Int32Array(source.length);
  for (let i = 0; i < source.length; i++) out[counts[source.label(i)]!++] = i;
  return out;
}
