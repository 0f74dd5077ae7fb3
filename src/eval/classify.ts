/**
 * Classification accuracy with a model's own class centres, computed as `plsc serve`'s
 * /v1/classify answers: each image is embedded once (no flip), and its classes are ranked by cosine
 * similarity to the L2-normalized centres with the server's block search (onnxruntime, running
 * top-k, ties to the lower class id). Centres arrive block by block (a checkpoint's FC shards read
 * from disk, a training worker's shard), so the whole matrix is never in one buffer.
 */
import { computeInverseNorms, type ClassMatch } from '../centers/centers.js';
import { CenterBlockSearch } from '../centers/center-search.js';
import type { SampleSource } from '../data/source.js';
import { BadSampleError } from '../data/source.js';
import type { EmbedFunction } from './embed.js';
import { embedLoadedImages, samplePayloadToRgb } from './embed-loaded.js';
import { positiveInteger } from '../util/validate.js';

/** Rows first..first+count-1 of the class centres, float32 row-major [count, dim] (need not be normalized). */
export interface CenterRows {
  first: number;
  count: number;
  rows: Float32Array;
}

/** Produces the centre blocks again for every pass over them (one pass per group of queries). */
export type CenterRowsProvider = () => Iterable<CenterRows> | AsyncIterable<CenterRows>;

export interface ClassAccuracy {
  class: number;
  images: number;
  /** Images of this class whose best match is this class. */
  correct: number;
  accuracy: number;
}

export interface ConfusionCell {
  /** The image's label. */
  truth: number;
  /** The best-matching class. */
  predicted: number;
  count: number;
}

export interface ClassificationResult {
  images: number;
  /** Classes of the centres. */
  classes: number;
  /** Classes that have at least one image. */
  classesWithImages: number;
  top1: number;
  /** Label among the 5 best classes (the k best when there are fewer than 5 classes). */
  top5: number;
  /** Per-class top-1 accuracy, by class id, for the classes that have images. */
  perClass: ClassAccuracy[];
  /** The non-zero cells of the confusion matrix (rows: label, columns: top-1 class), by label then class. */
  confusion: ConfusionCell[];
}

/** Counts top-1 / top-5 hits and the confusion cells as ranked predictions arrive. */
export class ClassificationTally {
  private images = 0;
  private top1Hits = 0;
  private top5Hits = 0;
  private readonly perClassImages = new Map<number, number>();
  private readonly perClassCorrect = new Map<number, number>();
  private readonly cells = new Map<string, ConfusionCell>();

  constructor(readonly classes: number) {
    positiveInteger(classes, 'classes');
  }

  /** One image: its label and its classes ranked best first (at least one). */
  add(label: number, ranked: readonly number[]): void {
    if (ranked.length === 0) throw new RangeError('a prediction needs at least one ranked class');
    const predicted = ranked[0]!;
    this.images++;
    if (predicted === label) this.top1Hits++;
    if (ranked.slice(0, 5).includes(label)) this.top5Hits++;
    this.perClassImages.set(label, (this.perClassImages.get(label) ?? 0) + 1);
    if (predicted === label) this.perClassCorrect.set(label, (this.perClassCorrect.get(label) ?? 0) + 1);
    const key = `${label}:${predicted}`;
    const cell = this.cells.get(key);
    if (cell) cell.count++;
    else this.cells.set(key, { truth: label, predicted, count: 1 });
  }

  result(): ClassificationResult {
    const perClass = [...this.perClassImages.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([cls, images]) => {
        const correct = this.perClassCorrect.get(cls) ?? 0;
        return { class: cls, images, correct, accuracy: correct / images };
      });
    const confusion = [...this.cells.values()].sort((a, b) => a.truth - b.truth || a.predicted - b.predicted).map((cell) => ({ ...cell }));
    return {
      images: this.images,
      classes: this.classes,
      classesWithImages: perClass.length,
      top1: this.images === 0 ? Number.NaN : this.top1Hits / this.images,
      top5: this.images === 0 ? Number.NaN : this.top5Hits / this.images,
      perClass,
      confusion,
    };
  }
}

/** The off-diagonal confusion cells, most frequent first (ties by label, then class). */
export function mostConfusedPairs(result: ClassificationResult, limit: number): ConfusionCell[] {
  return result.confusion
    .filter((cell) => cell.truth !== cell.predicted)
    .sort((a, b) => b.count - a.count || a.truth - b.truth || a.predicted - b.predicted)
    .slice(0, limit);
}

/**
 * The `k` best classes of every query against centres that arrive block by block (the /v1/classify
 * search: cosine of the normalized query to each centre row), best first, ties to the lower class.
 * The blocks must cover classes firstClass..firstClass+classes-1 in order (firstClass defaults to 0;
 * a training worker passes its shard's offset). With fewer than k classes, each list has `classes` entries.
 */
export async function rankClassesByCenters(
  queries: readonly Float32Array[],
  centers: Iterable<CenterRows> | AsyncIterable<CenterRows>,
  options: { dim: number; k: number; classes: number; firstClass?: number },
): Promise<ClassMatch[][]> {
  const { dim, k, classes } = options;
  const firstClass = options.firstClass ?? 0;
  const search = await CenterBlockSearch.create(dim, 'float32');
  try {
    const state = search.start(queries, k);
    let next = firstClass;
    for await (const block of centers) {
      if (block.first !== next) throw new Error(`class centres: a block starts at class ${block.first}, expected ${next}`);
      await search.fold(state, { first: block.first, count: block.count, rows: block.rows, inverseNorms: computeInverseNorms(block.rows, block.count, dim) });
      next += block.count;
    }
    if (next - firstClass !== classes) throw new Error(`class centres: ${next - firstClass} rows arrived, expected ${classes}`);
    return state.heaps.map((heap) => heap.result());
  } finally {
    await search.release();
  }
}

/** Ranks the k best classes of each query, best first. */
export type ClassRanker = (queries: readonly Float32Array[], k: number) => Promise<number[][]>;

/** A ranker over all `classes` centres, re-read from `centers` for every group of queries. */
export function centerRanker(centers: CenterRowsProvider, options: { dim: number; classes: number }): ClassRanker {
  return async (queries, k) => (await rankClassesByCenters(queries, centers(), { ...options, k })).map((matches) => matches.map((match) => match.index));
}

export interface ClassifyDatasetOptions {
  /** Classes of the centres (every label must be below it). */
  classes: number;
  /** Embedding width of the model and the centres. */
  dim: number;
  /** Model input [height, width]. */
  imageSize: readonly [number, number];
  /** Images per embed call (default 64). */
  batchSize?: number;
  /** Images embedded before each pass over the centres (default 8192): bounds the memory of queries. */
  queriesPerPass?: number;
  /** Where the dataset came from, for error messages. */
  datasetName?: string;
}

/** Top-1 / top-5, per-class accuracy and the confusion matrix of a labelled dataset. */
export async function classifyDataset(source: SampleSource, embed: EmbedFunction, rank: ClassRanker, options: ClassifyDatasetOptions): Promise<ClassificationResult> {
  const { classes, dim } = options;
  const [height, width] = options.imageSize;
  const name = options.datasetName ?? 'dataset';
  if (source.length === 0) throw new Error(`${name}: no images to classify`);
  for (let i = 0; i < source.length; i++) {
    const label = source.label(i);
    if (label >= classes) throw new Error(`${name}: ${source.describe(i)} has label ${label}, but the model has ${classes} classes (0..${classes - 1})`);
  }
  const queriesPerPass = options.queriesPerPass ?? 8192;
  positiveInteger(queriesPerPass, 'queriesPerPass');
  const k = Math.min(5, classes);
  const tally = new ClassificationTally(classes);
  for (let start = 0; start < source.length; start += queriesPerPass) {
    const count = Math.min(queriesPerPass, source.length - start);
    const load = async (offset: number): Promise<Uint8Array> => {
      const index = start + offset;
      try {
        return await samplePayloadToRgb(await source.read(index), width, height);
      } catch (err) {
        if (err instanceof BadSampleError) throw new Error(`${name}: ${err.message}`);
        throw new Error(`${name}: ${source.describe(index)}: cannot be decoded (${(err as Error).message})`);
      }
    };
    const { original } = await embedLoadedImages(count, load, embed, { height, width, flip: false, ...(options.batchSize !== undefined ? { batchSize: options.batchSize } : {}) });
    if (original.dim !== dim) throw new Error(`${name}: the model embeds to ${original.dim} values, the class centres have ${dim}`);
    const queries = Array.from({ length: count }, (_, i) => original.data.subarray(i * dim, (i + 1) * dim));
    const ranked = await rank(queries, k);
    ranked.forEach((classesRanked, i) => tally.add(source.label(start + i), classesRanked));
  }
  return tally.result();
}
