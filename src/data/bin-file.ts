/**
 * Validation `.bin` files (lfw.bin, agedb_30.bin, cfp_fp.bin, ...): a pickle of the tuple
 * `(bins, issame_list)` where `bins` holds 2*P encoded images (pairs are consecutive) and
 * `issame_list` P booleans. Read with the safe pickle parser, never executing anything.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { parsePickle, PickleError, type PickleValue } from './pickle.js';
import { dumpPickleChunks, type PickleWriteProtocol } from './pickle-writer.js';

export interface VerificationBin {
  /** 2*P encoded images (JPEG/PNG bytes); images 2i and 2i+1 form pair i. */
  images: Buffer[];
  /** P labels: true when the pair shows the same identity. */
  issame: boolean[];
}

/** A .bin file that is not a valid (bins, issame_list) pickle. */
export class VerificationBinError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VerificationBinError';
  }
}

function kindOf(value: PickleValue | undefined): string {
  if (value === null) return 'None';
  if (value === undefined) return 'nothing';
  if (Buffer.isBuffer(value)) return 'bytes';
  if (Array.isArray(value)) return `a sequence of ${value.length}`;
  if (value instanceof Map) return 'a dict';
  if (value instanceof Set) return 'a set';
  if (value instanceof Uint8Array || value instanceof Int8Array) return 'a numpy array';
  return typeof value;
}

function toLabels(value: PickleValue, name: string): boolean[] {
  const fail = (index: number, found: PickleValue | undefined): never => {
    const shown = typeof found === 'number' || typeof found === 'bigint' ? String(found) : typeof found === 'string' ? JSON.stringify(found) : kindOf(found);
    throw new VerificationBinError(`${name}: issame_list[${index}] is ${shown}, expected a boolean (or 0/1)`);
  };
  if (value instanceof Uint8Array || value instanceof Int8Array) {
    return Array.from(value, (v, i) => (v === 0 || v === 1 ? v === 1 : fail(i, v)));
  }
  if (!Array.isArray(value)) throw new VerificationBinError(`${name}: issame_list is ${kindOf(value)}, expected a list of booleans`);
  return value.map((v, i) => {
    if (typeof v === 'boolean') return v;
    if (v === 0 || v === 1) return v === 1;
    return fail(i, v);
  });
}

/** Validate parsed pickle data as a verification bin; `name` labels errors (usually the file path). */
export function verificationBinFromPickle(value: PickleValue, name: string): VerificationBin {
  if (!Array.isArray(value) || value.length !== 2) {
    throw new VerificationBinError(`${name}: expected the pickled tuple (bins, issame_list), found ${kindOf(value)}`);
  }
  const [bins, labels] = value as readonly PickleValue[];
  if (!Array.isArray(bins)) throw new VerificationBinError(`${name}: bins is ${kindOf(bins)}, expected a list of encoded images`);
  const issame = toLabels(labels!, name);
  const images = (bins as readonly PickleValue[]).map((img, i) => {
    if (!Buffer.isBuffer(img)) {
      throw new VerificationBinError(`${name}: bins[${i}] is ${kindOf(img)}, expected the bytes of an encoded image`);
    }
    if (img.length === 0) throw new VerificationBinError(`${name}: bins[${i}] is empty`);
    return img;
  });
  if (issame.length === 0) throw new VerificationBinError(`${name}: issame_list is empty (no pairs)`);
  if (images.length !== 2 * issame.length) {
    throw new VerificationBinError(
      `${name}: ${images.length} images but ${issame.length} issame labels (a .bin needs exactly 2 images per label)`,
    );
  }
  return { images, issame };
}

/**
 * Read a validation .bin from a path or from its bytes. Image buffers are views into the file's
 * bytes. Errors name the file and, for pickle errors, the byte offset.
 */
export async function readVerificationBin(source: string | Uint8Array): Promise<VerificationBin> {
  const name = typeof source === 'string' ? source : '<buffer>';
  let data: Uint8Array;
  if (typeof source === 'string') {
    try {
      data = await readFile(source);
    } catch (error) {
      throw new VerificationBinError(`${name}: cannot read: ${error instanceof Error ? error.message : String(error)}`);
    }
  } else {
    data = source;
  }
  return parseVerificationBin(data, name);
}

/** Synchronous parse of a .bin already in memory. */
export function parseVerificationBin(data: Uint8Array, name = '<buffer>'): VerificationBin {
  let value: PickleValue;
  try {
    value = parsePickle(data);
  } catch (error) {
    if (error instanceof PickleError) {
      const wrapped = new VerificationBinError(`${name}: ${error.message}`);
      (wrapped as Error & { cause?: unknown }).cause = error;
      throw wrapped;
    }
    throw error;
  }
  return verificationBinFromPickle(value, name);
}

export interface WriteVerificationBinOptions {
  /** Pickle protocol: 2 writes what Python 2 writes (insightface's own bins), 3..5 what Python 3 writes. Default 4. */
  protocol?: PickleWriteProtocol;
}

function checkBinInput(images: readonly Uint8Array[], issame: readonly boolean[]): void {
  if (issame.length === 0) throw new RangeError('a verification bin needs at least one pair');
  if (images.length !== 2 * issame.length) {
    throw new RangeError(`${images.length} images for ${issame.length} labels: a verification bin needs exactly 2 images per label`);
  }
  images.forEach((img, i) => {
    if (!(img instanceof Uint8Array)) throw new TypeError(`images[${i}] is not a Buffer/Uint8Array`);
    if (img.length === 0) throw new RangeError(`images[${i}] is empty`);
  });
  issame.forEach((v, i) => {
    if (typeof v !== 'boolean') throw new TypeError(`issame[${i}] is not a boolean`);
  });
}

/** The bytes Python's `pickle.dump((bins, issame_list), f, protocol)` would write. */
export function encodeVerificationBin(
  images: readonly Uint8Array[],
  issame: readonly boolean[],
  options: WriteVerificationBinOptions = {},
): Buffer {
  return Buffer.concat(verificationBinChunks(images, issame, options));
}

function verificationBinChunks(images: readonly Uint8Array[], issame: readonly boolean[], options: WriteVerificationBinOptions): Buffer[] {
  checkBinInput(images, issame);
  return dumpPickleChunks(Object.freeze([[...images], [...issame]]), options.protocol ?? 4);
}

/** Write a validation .bin that Python reads with `pickle.load(f, encoding='bytes')`. */
export async function writeVerificationBin(
  path: string,
  images: readonly Uint8Array[],
  issame: readonly boolean[],
  options: WriteVerificationBinOptions = {},
): Promise<void> {
  await writeFile(path, verificationBinChunks(images, issame, options));
}
