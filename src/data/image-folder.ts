/**
 * Image folder reader: one subfolder per class (searched recursively), classes sorted by name
 * (code-unit order, locale independent) get labels 0..C-1. Hidden entries are ignored; a broken
 * symbolic link with an image extension is kept as a sample (reported as bad when it is read).
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import type { Dirent } from 'node:fs';
import { extname, join, relative, resolve } from 'node:path';
import { BadSampleError, DataFormatError, checkIndex, type SampleSource, type SamplePayload } from './source.js';

export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.bmp', '.webp'];

export class ImageFolderSource implements SampleSource {
  readonly length: number;
  readonly numClasses: number;
  readonly root: string;
  /** Class folder names; index = label. */
  readonly classNames: readonly string[];
  private readonly paths: string[];
  private readonly labels: Int32Array;

  private constructor(root: string, classNames: string[], paths: string[], labels: Int32Array) {
    this.root = root;
    this.classNames = classNames;
    this.paths = paths;
    this.labels = labels;
    this.length = paths.length;
    this.numClasses = classNames.length;
  }

  static async open(root: string, options: { extensions?: readonly string[] } = {}): Promise<ImageFolderSource> {
    const absolute = resolve(root);
    const extensions = new Set((options.extensions ?? IMAGE_EXTENSIONS).map((e) => e.toLowerCase()));
    let entries;
    try {
      entries = await readdir(absolute, { withFileTypes: true });
    } catch (error) {
      throw new DataFormatError(absolute, `cannot list image folder: ${(error as Error).message}`, { cause: error });
    }
    const classNames: string[] = [];
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      if ((await kindOf(join(absolute, entry.name), entry)) === 'dir') classNames.push(entry.name);
    }
    classNames.sort(compareCodeUnits);
    if (classNames.length === 0) throw new DataFormatError(absolute, 'no class subfolders found');
    const paths: string[] = [];
    const labels: number[] = [];
    for (let label = 0; label < classNames.length; label++) {
      const files = await listImages(join(absolute, classNames[label]!), extensions);
      for (const file of files) {
        paths.push(file);
        labels.push(label);
      }
    }
    if (paths.length === 0) throw new DataFormatError(absolute, `no images with extensions ${[...extensions].join(', ')} in the class folders`);
    return new ImageFolderSource(absolute, classNames, paths, Int32Array.from(labels));
  }

  label(index: number): number {
    checkIndex(index, this.length);
    return this.labels[index]!;
  }

  /** Absolute path of sample `index`. */
  imagePath(index: number): string {
    checkIndex(index, this.length);
    return this.paths[index]!;
  }

  /** Path of sample `index` relative to the root folder. */
  relativePath(index: number): string {
    return relative(this.root, this.imagePath(index));
  }

  describe(index: number): string {
    return `file ${this.imagePath(index)}`;
  }

  async read(index: number): Promise<SamplePayload> {
    const path = this.imagePath(index);
    try {
      return { kind: 'encoded', bytes: await readFile(path) };
    } catch (error) {
      throw new BadSampleError(index, this.describe(index), `cannot read: ${(error as Error).message}`, { cause: error });
    }
  }
}

function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Directory entry kind, following symbolic links (datasets are often assembled from links). */
async function kindOf(path: string, entry: Dirent): Promise<'dir' | 'file' | 'broken-link' | 'other'> {
  if (entry.isDirectory()) return 'dir';
  if (entry.isFile()) return 'file';
  if (!entry.isSymbolicLink()) return 'other';
  try {
    const target = await stat(path);
    return target.isDirectory() ? 'dir' : target.isFile() ? 'file' : 'other';
  } catch {
    return 'broken-link';
  }
}

async function listImages(dir: string, extensions: Set<string>): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => compareCodeUnits(a.name, b.name));
  const out: string[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const full = join(dir, entry.name);
    const kind = await kindOf(full, entry);
    if (kind === 'dir') out.push(...(await listImages(full, extensions)));
    // A broken link named like an image stays a sample, so reading it reports it instead of dropping it unseen.
    else if ((kind === 'file' || kind === 'broken-link') && extensions.has(extname(entry.name).toLowerCase())) out.push(full);
  }
  return out;
}
