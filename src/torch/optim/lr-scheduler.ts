// Step-indexed learning-rate schedules (pure functions of the step) and a scheduler that applies
// one to an optimizer's param groups.
import type { Hyperparameters, Optimizer } from './optimizer.js';

/** After warmup: how the learning rate decays. */
export type LrDecay =
  | { kind: 'constant' }
  /** lr * factor^k, k = number of boundaries <= step (absolute step indices, ascending); or explicit values. */
  | { kind: 'piecewise'; boundaries: readonly number[]; factor?: number; values?: readonly number[] }
  /** endLr + (lr - endLr) * (1 - t)^power, t = progress from warmup end to totalSteps. */
  | { kind: 'polynomial'; totalSteps: number; power?: number; endLr?: number }
  /** minLr + (lr - minLr) * (1 + cos(pi t)) / 2, t = progress from warmup end to totalSteps. */
  | { kind: 'cosine'; totalSteps: number; minLr?: number };

export interface LrSchedule {
  /** The peak learning rate (reached at the end of warmup). */
  baseLr: number;
  /** Steps of linear warmup from warmupStartLr to baseLr (default 0: none). */
  warmupSteps?: number;
  warmupStartLr?: number;
  decay: LrDecay;
}

function fail(message: string): never {
  throw new Error(`lr schedule: ${message}`);
}

function nonNegativeInteger(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) fail(`${name} must be a non-negative integer, got ${String(value)}`);
  return value;
}

/** Checks a schedule, throwing an error that names the bad field. */
export function validateSchedule(schedule: LrSchedule): void {
  if (!(typeof schedule.baseLr === 'number' && schedule.baseLr >= 0 && Number.isFinite(schedule.baseLr))) fail(`baseLr must be a non-negative number, got ${String(schedule.baseLr)}`);
  const warmup = nonNegativeInteger(schedule.warmupSteps ?? 0, 'warmupSteps');
  const decay = schedule.decay;
  switch (decay.kind) {
    case 'constant':
      return;
    case 'piecewise': {
      decay.boundaries.forEach((b, i) => {
        nonNegativeInteger(b, `piecewise boundaries[${i}]`);
        if (i > 0 && b <= (decay.boundaries[i - 1] as number)) fail(`piecewise boundaries must be strictly ascending (boundaries[${i}] = ${b})`);
      });
      if (decay.values !== undefined) {
        if (decay.values.length !== decay.boundaries.length + 1) fail(`piecewise values needs ${decay.boundaries.length + 1} entries (one more than boundaries), got ${decay.values.length}`);
      } else if (!(typeof decay.factor === 'number' && decay.factor >= 0)) {
        fail('piecewise needs a decay factor >= 0 or explicit values');
      }
      return;
    }
    case 'polynomial':
    case 'cosine': {
      const total = nonNegativeInteger(decay.totalSteps, `${decay.kind} totalSteps`);
      if (total <= warmup) fail(`${decay.kind} totalSteps (${total}) must exceed warmupSteps (${warmup})`);
      if (decay.kind === 'polynomial' && !((decay.power ?? 1) > 0)) fail(`polynomial power must be positive, got ${decay.power}`);
      return;
    }
    default:
      fail(`unknown decay kind '${String((decay as { kind: unknown }).kind)}'`);
  }
}

/** The learning rate at `step` (0-based: the step about to be taken). A pure function. */
export function lrAt(schedule: LrSchedule, step: number): number {
  if (!Number.isInteger(step) || step < 0) fail(`step must be a non-negative integer, got ${step}`);
  const base = schedule.baseLr;
  const warmup = schedule.warmupSteps ?? 0;
  if (step < warmup) {
    const start = schedule.warmupStartLr ?? 0;
    return start + ((base - start) * step) / warmup;
  }
  const decay = schedule.decay;
  switch (decay.kind) {
    case 'constant':
      return base;
    case 'piecewise': {
      let passed = 0;
      for (const boundary of decay.boundaries) if (step >= boundary) passed++;
      if (decay.values !== undefined) return decay.values[passed] as number;
      return base * (decay.factor as number) ** passed;
    }
    case 'polynomial': {
      const progress = Math.min(1, (step - warmup) / (decay.totalSteps - warmup));
      const end = decay.endLr ?? 0;
      return end + (base - end) * (1 - progress) ** (decay.power ?? 1);
    }
    case 'cosine': {
      const progress = Math.min(1, (step - warmup) / (decay.totalSteps - warmup));
      const min = decay.minLr ?? 0;
      return min + ((base - min) * (1 + Math.cos(Math.PI * progress))) / 2;
    }
    default:
      return fail(`unknown decay kind '${String((decay as { kind: unknown }).kind)}'`);
  }
}

/** What LrScheduler.stateDict() saves. */
export interface LrSchedulerState {
  /** The step whose learning rate is currently set. */
  step: number;
  /** Each group's learning rate when the scheduler was created. */
  initialLrs: number[];
  schedule: LrSchedule;
}

/**
 * Sets each param group's lr to lrAt(schedule, step) scaled by (group's initial lr / baseLr), so
 * groups with a larger or smaller lr keep their ratio. Construction sets step 0's rate; call step()
 * after each optimizer.step().
 */
export class LrScheduler {
  readonly schedule: LrSchedule;
  private current = 0;
  private initialLrs: number[];

  constructor(
    readonly optimizer: Optimizer<Hyperparameters>,
    schedule: LrSchedule,
  ) {
    validateSchedule(schedule);
    this.schedule = schedule;
    this.initialLrs = optimizer.paramGroups.map((g) => g.lr);
    this.apply();
  }

  /** The step whose learning rate is set now. */
  get lastStep(): number {
    return this.current;
  }

  /** The learning rate of each group at the current step. */
  get lrs(): number[] {
    return this.optimizer.paramGroups.map((g) => g.lr);
  }

  private apply(): void {
    const rate = lrAt(this.schedule, this.current);
    const base = this.schedule.baseLr;
    this.optimizer.paramGroups.forEach((group, i) => {
      const initial = this.initialLrs[i] ?? base;
      group.lr = base === 0 ? rate : (rate * initial) / base;
    });
  }

  /** Advances one step and sets the learning rates for it. */
  step(): void {
    this.current++;
    this.apply();
  }

  stateDict(): LrSchedulerState {
    return { step: this.current, initialLrs: [...this.initialLrs], schedule: structuredClone(this.schedule) };
  }

  /** Restores the step and initial rates (the schedule itself stays the one given to the constructor). */
  loadStateDict(state: LrSchedulerState): void {
    nonNegativeInteger(state.step, 'saved scheduler step');
    if (state.initialLrs.length !== this.optimizer.paramGroups.length) {
      throw new Error(`LrScheduler.loadStateDict: saved state has ${state.initialLrs.length} initial lrs, optimizer has ${this.optimizer.paramGroups.length} param groups`);
    }
    this.current = state.step;
    this.initialLrs = [...state.initialLrs];
    this.apply();
  }
}
