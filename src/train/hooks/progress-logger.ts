// Built-in hook: rank 0's progress bar / log lines and metrics.jsonl training records, after every step.
import type { ProgressReporter } from '../progress.js';
import type { TrainHook, TrainStepState } from './train-hook.js';

export class ProgressLogger implements TrainHook {
  constructor(private readonly progress: ProgressReporter) {}

  onStepEnd(state: TrainStepState): void {
    this.progress.update({ step: state.step, epoch: state.epoch, loss: state.loss, lr: state.lr, imagesPerSecond: state.imagesPerSecond, accuracy: state.accuracy });
  }
}
