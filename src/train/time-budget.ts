// A wall-clock training budget (`trainTime`): when it is spent, and how many steps fit into it at
// the measured speed, so poly/cosine decay can span the budget as they span a step budget.
import { formatDuration } from './progress.js';
import { positiveNumber } from '../util/validate.js';

/** Steps timed before the first estimate (the first step, with its one-off allocations, is left out). */
export const STEPS_BEFORE_ESTIMATE = 4;

export class TimeBudget {
  /**
   * `spentSeconds` reads the seconds the training has spent, earlier runs of it included (a resumed
   * run continues the budget; the Trainer keeps that clock, tests inject one).
   */
  constructor(
    readonly seconds: number,
    private readonly spentSeconds: () => number,
  ) {
    positiveNumber(seconds, 'TimeBudget: seconds');
  }

  elapsedSeconds(): number {
    return this.spentSeconds();
  }

  remainingSeconds(): number {
    return Math.max(0, this.seconds - this.elapsedSeconds());
  }

  spent(): boolean {
    return this.elapsedSeconds() >= this.seconds;
  }

  /** Steps done plus the whole steps that fit into the rest of the budget at `secondsPerStep`. */
  estimateTotalSteps(stepsDone: number, secondsPerStep: number): number {
    if (!(secondsPerStep > 0)) return stepsDone + 1;
    return Math.max(stepsDone + 1, stepsDone + Math.round(this.remainingSeconds() / secondsPerStep));
  }

  /** `time budget 10m00s: ~1234 steps at 0.480 s/step (8m12s left)` */
  describe(totalSteps: number, secondsPerStep: number): string {
    return `time budget ${formatDuration(this.seconds)}: ~${totalSteps} steps at ${secondsPerStep.toFixed(3)} s/step (${formatDuration(this.remainingSeconds())} left)`;
  }
}
