// Built-in hook: a checkpoint every `period` steps (0: at the end of every epoch) and one of the
// last step when training ends. Every worker runs it (saving is collective).
import type { TrainEndState, TrainEpochEndState, TrainHook, TrainStepState } from './train-hook.js';

export class CheckpointSaver implements TrainHook {
  /** Directory of the latest checkpoint this run wrote, or null. */
  lastCheckpoint: string | null = null;
  private savedStep: number | null = null;

  /** `save(epoch)` writes a checkpoint of the trainer's current step and returns its directory. */
  constructor(
    private readonly period: number,
    private readonly save: (epoch: number) => string,
  ) {}

  private saveAt(step: number, epoch: number): void {
    this.lastCheckpoint = this.save(epoch);
    this.savedStep = step;
  }

  onStepEnd(state: TrainStepState): void {
    if (this.period > 0 && state.step % this.period === 0) this.saveAt(state.step, state.epoch);
  }

  onEpochEnd(state: TrainEpochEndState): void {
    if (this.period === 0 && !state.last) this.saveAt(state.step, state.epoch);
  }

  onTrainEnd(state: TrainEndState): void {
    if (this.savedStep !== state.step) this.saveAt(state.step, state.epoch);
  }
}
