// `plsc grow`: a copy of a checkpoint with N more classes. The new ids are numClasses..numClasses+N-1;
// the FC shards are re-split for the checkpoint's shard count (shardLayout, as on resume), old rows
// keep their values, new rows get zero momentum (and zero bias). A new class centre is either the
// normalized mean embedding of its images under the checkpoint's backbone (weight imprinting), scaled
// to the mean norm of the existing centres, or drawn like a fresh head's.
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as F from '../torch/ops.js';
import { manualSeed } from '../torch/native.js';
import { tidy, keep } from '../torch/scope.js';
import type { Tensor } from '../torch/tensor.js';
import { loadSafetensors, readSafetensorsMetadata, saveSafetensors } from '../torch/safetensors.js';
import { PartialFC } from '../head/partial-fc.js';
import { shardLayout } from '../head/shard-layout.js';
import { openDataset } from '../data/convert.js';
import type { SampleSource } from '../data/source.js';
import { embedLoadedImages, samplePayloadToRgb } from '../eval/embed-loaded.js';
import { loadCheckpointBackbone } from '../export/export-checkpoint.js';
import { readClassRows, readMeta, resolveCheckpointDir, shardFileName, type CheckpointMeta } from '../checkpoint/format.js';
import { backboneEmbedFunction, backboneImageSize } from '../eval/backbone-verification.js';
import { withFoldedBatchNorm } from '../models/fold-batch-norm.js';
import { collectDigests, verifyCheckpointFile } from '../checkpoint/integrity.js';
import { positiveInteger } from '../util/validate.js';

export interface GrowOptions {
  /** A checkpoint step directory, or a checkpoint root (its newest step). */
  checkpoint: string;
  /** Classes to append. */
  add: number;
  /**
   * Images of the new classes: an image folder (one sub-folder per new class, in sorted order) or a
   * list file (`path<TAB>label`, labels 0..add-1 or numClasses..numClasses+add-1). Without it the
   * new centres are random like a fresh head's.
   */
  images?: string;
  /** The grown checkpoint's directory (a new directory, or an earlier checkpoint that is replaced). */
  out: string;
  /** Seeds the random centres (default: the checkpoint's seed). */
  seed?: number;
  /** Images per backbone forward (default 64). */
  batchSize?: number;
}

export interface GrowResult {
  source: string;
  out: string;
  previousClasses: number;
  numClasses: number;
  added: number;
  /** How the new centres were made. */
  init: 'imprinted' | 'random';
  /** Images embedded (0 for random centres). */
  images: number;
  /** Mean L2 norm of the existing centres (what imprinted centres are scaled to). */
  meanCentreNorm: number;
  /** Classes per shard of the grown checkpoint, in rank order. */
  shardRows: number[];
  meta: CheckpointMeta;
}

const NORM_ROWS_PER_READ = 65536;

/** Mean L2 norm of the checkpoint's `weight` rows, read a block of rows at a time. */
function meanRowNorm(dir: string, meta: CheckpointMeta): number {
  let sum = 0;
  for (let start = 0; start < meta.numClasses; start += NORM_ROWS_PER_READ) {
    const count = Math.min(NORM_ROWS_PER_READ, meta.numClasses - start);
    sum += tidy(() => {
      const rows = readClassRows(dir, meta, start, count);
      return F.sum(F.norm(F.to(rows.weight as Tensor, 'float32'), 2, 1)).item();
    });
  }
  return sum / meta.numClasses;
}

async function openImages(path: string): Promise<SampleSource> {
  if (!existsSync(path)) throw new Error(`grow: --images ${resolve(path)} does not exist`);
  if (statSync(path).isFile()) return openDataset('list', path);
  if (existsSync(join(path, 'label.txt'))) return openDataset('list', join(path, 'label.txt'));
  return openDataset('folder', path);
}

/**
 * Which new class (0..added-1) each image belongs to. The labels must name exactly `added` classes:
 * 0..added-1 (relative, as an image folder numbers its sub-folders) or previous..previous+added-1.
 */
function newClassOfImages(source: SampleSource, where: string, previous: number, added: number): Int32Array {
  const labels = new Int32Array(source.length);
  const seen = new Set<number>();
  for (let i = 0; i < source.length; i++) {
    labels[i] = source.label(i);
    seen.add(labels[i] as number);
  }
  const sorted = [...seen].sort((a, b) => a - b);
  const first = sorted[0] ?? 0;
  const last = sorted[sorted.length - 1] ?? -1;
  const consecutive = sorted.length === added && last - first === added - 1;
  let offset: number;
  if (consecutive && first === 0) offset = 0;
  else if (consecutive && first === previous) offset = previous;
  else {
    const shownLabels = sorted.length <= 6 ? sorted.join(', ') : `${sorted.slice(0, 3).join(', ')}, ..., ${sorted.slice(-2).join(', ')}`;
    throw new Error(
      `grow: ${where} has ${source.length} images of ${sorted.length} label(s) (${shownLabels}), which do not map to the ${added} new classes: ` +
        `expected every label of 0..${added - 1} or of ${previous}..${previous + added - 1} (--add ${added})`,
    );
  }
  for (let i = 0; i < labels.length; i++) labels[i] = (labels[i] as number) - offset;
  return labels;
}

/** [added, D] centres: per class the normalized mean of its images' normalized embeddings (and their flips), times `norm`. */
async function imprintedCentres(dir: string, meta: CheckpointMeta, source: SampleSource, newClass: Int32Array, added: number, norm: number, batchSize: number): Promise<Tensor> {
  const backbone = await loadCheckpointBackbone(dir, meta);
  try {
    const [height, width] = backboneImageSize(backbone);
    const embedded = await withFoldedBatchNorm(backbone, (folded) =>
      embedLoadedImages(source.length, async (i) => samplePayloadToRgb(await source.read(i), width, height), backboneEmbedFunction(folded), {
        height,
        width,
        batchSize,
        flip: true,
      }),
    );
    const D = embedded.original.dim;
    if (D !== meta.embeddingSize) throw new Error(`grow: the backbone gives ${D}-d embeddings, the checkpoint's classes are ${meta.embeddingSize}-d`);
    return tidy(() => {
      const unit = (data: Float32Array): Tensor => {
        const t = F.fromTypedArray(data, [source.length, D]);
        return F.div(t, F.clampMin(F.norm(t, 2, 1, true), 1e-12));
      };
      let perImage = unit(embedded.original.data);
      if (embedded.flipped !== null) perImage = F.add(perImage, unit(embedded.flipped.data));
      const sums = F.indexAdd(F.zeros([added, D]), 0, F.fromTypedArray(newClass, [source.length], 'int32').to('int64'), perImage);
      return F.mul(F.div(sums, F.clampMin(F.norm(sums, 2, 1, true), 1e-12)), norm);
    });
  } finally {
    backbone.dispose();
  }
}

/** [added, D] centres drawn the way a fresh head of the checkpoint's loss initializes its own. */
function randomCentres(meta: CheckpointMeta, added: number, seed: number): Tensor {
  manualSeed(seed);
  const fresh = new PartialFC({ embeddingSize: meta.embeddingSize, numClasses: added, margin: meta.lossType });
  try {
    return F.clone(fresh.weight);
  } finally {
    fresh.dispose();
  }
}

/**
 * A dense (non-sharded) head's weight and bias are the optimizer's last parameters (the trainer
 * optimizes backbone parameters then head parameters); their momentum buffers grow by `added`
 * zero rows. A fused head keeps its momentum in the shards, and the optimizer file is copied as is.
 */
function growOptimizer(source: string, target: string, meta: CheckpointMeta, added: number): void {
  const tensors = loadSafetensors(source);
  const metadata = readSafetensorsMetadata(source);
  try {
    const indices = Object.keys(tensors)
      .map((name) => /^state\.(\d+)\.momentum_buffer$/.exec(name))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
    const headTensors = meta.shardTensors.filter((name) => name === 'weight' || name === 'bias');
    const headIndices = indices.slice(-headTensors.length);
    const grown: Record<string, Tensor> = { ...tensors };
    headIndices.forEach((index, i) => {
      const name = `state.${index}.momentum_buffer`;
      const buffer = tensors[name] as Tensor;
      const expected = headTensors[i] === 'weight' ? [meta.numClasses, meta.embeddingSize] : [meta.numClasses];
      if (buffer.shape.join(',') !== expected.join(',')) {
        throw new Error(`grow: ${source}: '${name}' has shape [${buffer.shape.join(', ')}], expected the head's ${headTensors[i]} momentum [${expected.join(', ')}]`);
      }
      grown[name] = keep(F.cat([buffer, F.zeros([added, ...buffer.shape.slice(1)], { dtype: buffer.dtype })]));
    });
    saveSafetensors(target, grown, metadata);
    for (const index of headIndices) grown[`state.${index}.momentum_buffer`]?.dispose();
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
}

/** Writes the grown copy of a checkpoint; the directory appears only once complete. */
export async function growCheckpoint(options: GrowOptions): Promise<GrowResult> {
  const { add } = options;
  positiveInteger(add, 'grow: --add');
  const dir = resolveCheckpointDir(options.checkpoint);
  const meta = readMeta(dir);
  const out = options.out;
  if (resolve(dir) === resolve(out)) throw new Error('grow: --out must differ from --checkpoint');
  if (existsSync(out) && !existsSync(join(out, 'meta.json'))) {
    throw new Error(`grow: --out ${resolve(out)} exists and is not a checkpoint; name a new directory (a checkpoint there is replaced)`);
  }
  const previous = meta.numClasses;
  const numClasses = previous + add;
  const batchSize = options.batchSize ?? 64;

  // Everything that can fail on bad input runs before anything is written.
  const meanCentreNorm = meanRowNorm(dir, meta);
  let images = 0;
  let centres: Tensor;
  if (options.images !== undefined) {
    const source = await openImages(options.images);
    try {
      const newClass = newClassOfImages(source, resolve(options.images), previous, add);
      images = source.length;
      centres = keep(await imprintedCentres(dir, meta, source, newClass, add, meanCentreNorm, batchSize));
    } finally {
      await source.close?.();
    }
  } else {
    centres = keep(randomCentres(meta, add, options.seed ?? meta.seed));
  }

  const tmp = `${out.replace(/\/+$/, '')}.tmp-grow`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const shardRows: number[] = [];
    const template = readClassRows(dir, meta, 0, 1);
    for (let r = 0; r < meta.worldSize; r++) {
      const layout = shardLayout(numClasses, meta.worldSize, r);
      shardRows.push(layout.numLocalClasses);
      tidy(() => {
        const end = layout.classOffset + layout.numLocalClasses;
        const oldCount = Math.max(0, Math.min(end, previous) - layout.classOffset);
        const newStart = Math.max(layout.classOffset, previous);
        const newCount = end - newStart;
        const old = oldCount > 0 ? readClassRows(dir, meta, layout.classOffset, oldCount) : null;
        const tensors: Record<string, Tensor> = {};
        for (const name of meta.shardTensors) {
          const like = template[name] as Tensor;
          const parts: Tensor[] = old === null ? [] : [old[name] as Tensor];
          if (newCount > 0) {
            parts.push(
              name === 'weight'
                ? F.to(F.narrow(centres, 0, newStart - previous, newCount), like.dtype)
                : F.zeros([newCount, ...like.shape.slice(1)], { dtype: like.dtype }),
            );
          }
          tensors[name] = parts.length === 1 ? (parts[0] as Tensor) : F.cat(parts);
        }
        saveSafetensors(join(tmp, shardFileName(r, meta.worldSize)), tensors, { rank: String(r), worldSize: String(meta.worldSize) });
      });
    }
    for (const t of Object.values(template)) t.dispose();
    verifyCheckpointFile(dir, meta, 'backbone.safetensors');
    copyFileSync(join(dir, 'backbone.safetensors'), join(tmp, 'backbone.safetensors'));
    const optimizerFile = join(dir, 'optimizer.safetensors');
    if (existsSync(optimizerFile)) {
      verifyCheckpointFile(dir, meta, 'optimizer.safetensors');
      if (meta.shardTensors.includes('weight_momentum')) copyFileSync(optimizerFile, join(tmp, 'optimizer.safetensors'));
      else growOptimizer(optimizerFile, join(tmp, 'optimizer.safetensors'), meta, add);
    }
    const init = options.images !== undefined ? 'imprinted' : 'random';
    const written = ['backbone.safetensors', 'optimizer.safetensors', ...Array.from({ length: meta.worldSize }, (_, r) => shardFileName(r, meta.worldSize))];
    const grown: CheckpointMeta & { grown: { fromClasses: number; added: number; init: string; images: number } } = {
      ...meta,
      numClasses,
      // config stays the one the checkpoint was trained with (its dataset has the old classes).
      savedAt: new Date().toISOString(),
      // The grown run trains on a dataset that holds the new classes: the old data record no longer applies.
      data: undefined,
      files: collectDigests(tmp, written.filter((name) => existsSync(join(tmp, name)))),
      grown: { fromClasses: previous, added: add, init, images },
    };
    writeFileSync(join(tmp, 'meta.json'), `${JSON.stringify(grown, null, 2)}\n`);
    rmSync(out, { recursive: true, force: true });
    renameSync(tmp, out);
    return { source: dir, out, previousClasses: previous, numClasses, added: add, init, images, meanCentreNorm, shardRows, meta: grown };
  } catch (error) {
    rmSync(tmp, { recursive: true, force: true });
    throw error;
  } finally {
    centres.dispose();
  }
}
