// What resuming on another number of workers does to the batch and the learning rate. plsc keeps the
// per-worker batch (trainBatchSize) fixed, so the global batch follows the worker count, and the base
// lr stays scaled linearly with the global batch (lr x globalBatch / 512) as at any start. Steps per
// epoch follow the global batch; a step count (trainSteps) and the step boundaries stay as they are.
import type { CheckpointMeta } from '../checkpoint/format.js';
import { derivedSchedule, type TrainConfig } from '../config/train-config.js';

export interface WorldSizeChange {
  fromWorkers: number;
  toWorkers: number;
  perWorkerBatch: number;
  fromGlobalBatch: number;
  toGlobalBatch: number;
  /** Base lr (before warmup and decay) of the run that saved the checkpoint, and of this one. */
  fromLr: number;
  toLr: number;
  fromStepsPerEpoch: number;
  toStepsPerEpoch: number;
  /** dist_* heads: the class shards are split anew over the new worker count. */
  shardsResplit: boolean;
}

/** The workers of the run that saved `meta` (older checkpoints: the FC shard count of a dist_* run), or null when unknown. */
export function checkpointWorkers(meta: CheckpointMeta): number | null {
  if (meta.workers !== undefined) return meta.workers;
  return meta.lossType.startsWith('dist_') ? meta.worldSize : null;
}

/** The change when `workers` differs from the checkpoint's worker count; null when equal or unknown. */
export function worldSizeChange(config: TrainConfig, meta: CheckpointMeta, workers: number, samplesPerEpoch: number): WorldSizeChange | null {
  const fromWorkers = checkpointWorkers(meta);
  if (fromWorkers === null || fromWorkers === workers) return null;
  const before = derivedSchedule(config, fromWorkers, samplesPerEpoch);
  const after = derivedSchedule(config, workers, samplesPerEpoch);
  return {
    fromWorkers,
    toWorkers: workers,
    perWorkerBatch: config.trainBatchSize,
    fromGlobalBatch: before.globalBatch,
    toGlobalBatch: after.globalBatch,
    fromLr: before.scaledLr,
    toLr: after.scaledLr,
    fromStepsPerEpoch: before.stepsPerEpoch,
    toStepsPerEpoch: after.stepsPerEpoch,
    shardsResplit: config.lossType.startsWith('dist_'),
  };
}

export function describeWorldSizeChange(change: WorldSizeChange): string {
  const lr = (v: number): string => Number(v.toPrecision(4)).toString();
  return (
    `plsc train: world size ${change.fromWorkers} -> ${change.toWorkers} since the checkpoint: per-worker batch stays ${change.perWorkerBatch}, ` +
    `so the global batch goes ${change.fromGlobalBatch} -> ${change.toGlobalBatch} and the base lr (linear in the global batch) ${lr(change.fromLr)} -> ${lr(change.toLr)}; ` +
    `steps per epoch ${change.fromStepsPerEpoch} -> ${change.toStepsPerEpoch}` +
    (change.shardsResplit ? `; the FC class shards are re-split ${change.fromWorkers} -> ${change.toWorkers} ways` : '')
  );
}
