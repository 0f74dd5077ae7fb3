// Checks of the dataset against the config that turn would-be silent failures into errors at start:
// labels beyond classNum (named by file and line), a batch no worker can fill (no step could run),
// and resuming a checkpoint on another dataset or image size.
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { ShardedSampler } from '../data/sampler.js';
import type { SampleSource } from '../data/source.js';
import type { DatasetSpec } from '../config/train-config.js';
import type { CheckpointDataInfo, CheckpointMeta } from '../checkpoint/format.js';

/** `dataset /data/label.txt` or `the synthetic dataset`, for messages. */
export function describeDataset(spec: DatasetSpec): string {
  return spec.type === 'synthetic' ? 'the synthetic dataset' : `dataset ${resolve(spec.path)}`;
}

/** Throws unless every label lies in [0, classNum), naming where the first offending one is. */
export function checkLabelsFitClassNum(source: SampleSource, classNum: number): void {
  if (source.numClasses <= classNum) return;
  for (let i = 0; i < source.length; i++) {
    const label = source.label(i);
    if (label >= classNum) {
      throw new Error(
        `classNum is ${classNum} but ${source.describe(i)} has label ${label} ` +
          `(labels must lie in 0..${classNum - 1}; the dataset's largest label is ${source.numClasses - 1}): raise classNum or fix the label`,
      );
    }
  }
  throw new Error(`classNum is ${classNum} but the dataset reports ${source.numClasses} classes`);
}

/**
 * Throws unless each worker gets at least one full batch per epoch: an empty dataset, or a
 * trainBatchSize larger than a worker's share, would otherwise run no step at all.
 */
export function checkStepsPerEpoch(source: SampleSource, spec: DatasetSpec, batchSize: number, worldSize: number): void {
  if (source.length === 0) throw new Error(`${describeDataset(spec)} holds no samples`);
  const perWorker = new ShardedSampler(source.length, { worldSize }).remainingForRank(0);
  if (perWorker < batchSize) {
    const workers = worldSize === 1 ? '1 worker' : `${worldSize} workers`;
    throw new Error(
      `trainBatchSize ${batchSize} is larger than the ${perWorker} samples each worker reads per epoch ` +
        `(${source.length} samples of ${describeDataset(spec)} over ${workers}), so no step could run: ` +
        `set trainBatchSize to at most ${perWorker}${worldSize > 1 ? ', use fewer workers' : ''} or add data`,
    );
  }
}

/** A digest of the label sequence in sample order: it changes when samples are added, removed or reordered. */
export function labelOrderFingerprint(source: SampleSource): string {
  const hash = createHash('sha256');
  const chunk = new Int32Array(1 << 16);
  for (let start = 0; start < source.length; start += chunk.length) {
    const count = Math.min(chunk.length, source.length - start);
    for (let k = 0; k < count; k++) chunk[k] = source.label(start + k);
    hash.update(new Uint8Array(chunk.buffer, 0, count * 4));
  }
  hash.update(`|${source.length}|${source.numClasses}`);
  return hash.digest('hex').slice(0, 16);
}

/** What a checkpoint records about the data it was trained on. */
export function checkpointDataInfo(source: SampleSource, imageSize: number): CheckpointDataInfo {
  return { samples: source.length, labelOrderFingerprint: labelOrderFingerprint(source), imageSize };
}

/**
 * Throws, saying what differs, when the checkpoint in `dir` was trained on another dataset (its data
 * order would not apply) or another imageSize (its weights would not fit).
 */
export function checkResumeData(dir: string, meta: CheckpointMeta, current: CheckpointDataInfo): void {
  const savedImageSize = meta.data?.imageSize ?? (typeof meta.config?.imageSize === 'number' ? meta.config.imageSize : undefined);
  if (savedImageSize !== undefined && savedImageSize !== current.imageSize) {
    throw new Error(
      `resume: checkpoint ${dir} was trained with imageSize ${savedImageSize}, this config has imageSize ${current.imageSize}: ` +
        `the backbone's weights fit only its own input size; set imageSize: ${savedImageSize}`,
    );
  }
  const advice = 'resume on the dataset it was trained on, or start a fresh run (resume: null)';
  if (meta.data !== undefined) {
    const saved = meta.data;
    if (saved.samples !== current.samples || saved.labelOrderFingerprint !== current.labelOrderFingerprint) {
      const what =
        saved.samples !== current.samples
          ? `${saved.samples} samples, this dataset has ${current.samples}`
          : `${saved.samples} samples in another order (label-order fingerprint ${saved.labelOrderFingerprint}, this dataset ${current.labelOrderFingerprint})`;
      throw new Error(
        `resume: checkpoint ${dir} was trained on a dataset of ${what}, so its data order ` +
          `(epoch ${meta.dataOrder.epoch}, position ${meta.dataOrder.position}) does not apply: ${advice}`,
      );
    }
  } else if (meta.dataOrder.position > current.samples) {
    throw new Error(
      `resume: checkpoint ${dir} stopped at position ${meta.dataOrder.position} of epoch ${meta.dataOrder.epoch}, ` +
        `past the end of this dataset of ${current.samples} samples: ${advice}`,
    );
  }
}
