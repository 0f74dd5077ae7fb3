// Built-in hook: verification on the .bin targets and classification on the valDatasets every
// `period` steps (0: at the end of every epoch), and of the final model unless the last validation
// was at that very step. Every worker runs it (validation is collective).
import type { TargetResult } from '../../eval/backbone-verification.js';
import type { ClassificationTargetResult } from '../classification-validation.js';
import type { TrainEndState, TrainEpochEndState, TrainHook, TrainStepState } from './train-hook.js';

export interface ValidationResults {
  targets: TargetResult[];
  classification: ClassificationTargetResult[];
}

export class PeriodicValidation implements TrainHook {
  /** Results of the latest validation (empty before the first). */
  latest: ValidationResults = { targets: [], classification: [] };
  private validatedStep: number | null = null;

  constructor(
    private readonly period: number,
    private readonly validate: () => Promise<ValidationResults>,
  ) {}

  private async validateAt(step: number): Promise<void> {
    this.latest = await this.validate();
    this.validatedStep = step;
  }

  async onStepEnd(state: TrainStepState): Promise<void> {
    if (this.period > 0 && state.step % this.period === 0) await this.validateAt(state.step);
  }

  async onEpochEnd(state: TrainEpochEndState): Promise<void> {
    if (this.period === 0 && !state.last) await this.validateAt(state.step);
  }

  async onTrainEnd(state: TrainEndState): Promise<void> {
    if (state.finished && this.validatedStep !== state.step) await this.validateAt(state.step);
  }
}
