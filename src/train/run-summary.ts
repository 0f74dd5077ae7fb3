// What a training run is about to do, printed at its start: the dataset as read (format, images,
// classes, images per class), the schedule (steps per epoch, epochs or budget, global batch, the lr
// after scaling) and the head's share of each worker (classes and bytes).
import type { SampleSource } from '../data/source.js';
import { SyntheticFaces } from '../data/synthetic.js';
import { ListFileSource } from '../data/list-file.js';
import { RecordIOSource } from '../data/recordio.js';
import { ImageFolderSource } from '../data/image-folder.js';
import { Base64ShardSource } from '../data/base64-shards.js';
import { formatDuration, formatLearningRate } from './progress.js';

export interface DatasetStats {
  /** synthetic | list | rec | folder | base64 | the reader's class name for custom sources. */
  format: string;
  images: number;
  /** Distinct labels that have at least one image. */
  classes: number;
  imagesPerClass: { min: number; median: number; max: number };
}

export function datasetFormat(source: SampleSource): string {
  if (source instanceof SyntheticFaces) return 'synthetic';
  if (source instanceof ListFileSource) return 'list';
  if (source instanceof RecordIOSource) return 'rec';
  if (source instanceof ImageFolderSource) return 'folder';
  if (source instanceof Base64ShardSource) return 'base64';
  return source.constructor.name;
}

/** Counts images per label (labels are known without reading images). */
export function datasetStats(source: SampleSource): DatasetStats {
  const counts = new Map<number, number>();
  for (let i = 0; i < source.length; i++) {
    const label = source.label(i);
    counts.set(label, (counts.get(label) ?? 0) + 1);
  }
  const sorted = [...counts.values()].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  const median = sorted.length === 0 ? 0 : sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
  return { format: datasetFormat(source), images: source.length, classes: counts.size, imagesPerClass: { min: sorted[0] ?? 0, median, max: sorted[sorted.length - 1] ?? 0 } };
}

export interface RunPlan {
  model: string;
  lossType: string;
  /** Where the dataset came from (a path, or 'synthetic'). */
  datasetName: string;
  dataset: DatasetStats;
  /** classNum of the config (the head's classes). */
  headClasses: number;
  workers: number;
  batchPerWorker: number;
  globalBatch: number;
  stepsPerEpoch: number;
  /** Planned steps (the first estimate for a time budget). */
  totalSteps: number;
  /** Seconds of the time budget, or null for a step/epoch budget. */
  budgetSeconds: number | null;
  /** The configured lr (per global batch of 512) and the lr after scaling to the global batch. */
  lr: number;
  scaledLr: number;
  lrScheduler: string;
  warmupSteps: number;
  /** Class shards (workers for dist_* heads, else 1) and the largest shard's classes. */
  headShards: number;
  classesPerWorker: number;
  /** Bytes of the head's weights and optimizer state on one worker. */
  headBytesPerWorker: number;
  sampleRatio: number;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

/** The start-of-run summary, one line per topic. */
export function formatRunPlan(plan: RunPlan): string[] {
  const { dataset } = plan;
  const perClass = dataset.imagesPerClass;
  const epochs = plan.totalSteps / plan.stepsPerEpoch;
  const length =
    plan.budgetSeconds !== null
      ? `budget ${formatDuration(plan.budgetSeconds)} (the steps that fit are estimated from the measured speed, then re-estimated every log period)`
      : `${plan.totalSteps} steps = ${Number.isInteger(epochs) ? epochs : epochs.toFixed(2)} epochs`;
  const sampled = plan.sampleRatio < 1 ? `, ${(plan.sampleRatio * 100).toFixed(plan.sampleRatio * 100 < 1 ? 2 : 0)}% sampled per step` : '';
  return [
    `training ${plan.model} + ${plan.lossType} head on ${plan.workers} worker(s)`,
    `dataset: ${plan.datasetName} (${dataset.format}): ${dataset.images} images, ${dataset.classes} classes, images/class min ${perClass.min} median ${perClass.median} max ${perClass.max}`,
    `schedule: ${plan.stepsPerEpoch} steps/epoch, ${length}, global batch ${plan.globalBatch} (${plan.batchPerWorker} x ${plan.workers})`,
    `lr: ${formatLearningRate(plan.scaledLr)} (${plan.lr} per 512 images, scaled to the global batch), ${plan.lrScheduler}${plan.warmupSteps > 0 ? `, ${plan.warmupSteps} warmup steps` : ''}`,
    `head: ${plan.headClasses} classes in ${plan.headShards} shard(s), ${plan.classesPerWorker} classes and ${formatBytes(plan.headBytesPerWorker)} (weights + optimizer state) per worker${sampled}`,
  ];
}
