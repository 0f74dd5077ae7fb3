// Where a loader stands in its data order: the state a checkpoint saves and resume sets, advanced
// batch by batch, and guarded so that it never changes under a running iteration (one at a time).
// DataLoader and FeatureLoader both keep theirs here.
import { checkState, stateAfterBatch, type DataOrderState, type EpochPlan, type ShardedSampler } from './sampler.js';

export class DataOrderCursor {
  private current: DataOrderState = { epoch: 0, position: 0 };
  private iterating = false;

  /** `owner` names the loader in errors ("DataLoader"). */
  constructor(private readonly owner: string) {}

  /** Data order after the last batch handed out. */
  get state(): DataOrderState {
    return { ...this.current };
  }

  /** Continue from a saved state; the next iteration starts there. */
  set(state: DataOrderState): void {
    checkState(state);
    if (this.iterating) throw new Error(`cannot change the ${this.owner} state while it is being iterated`);
    this.current = { epoch: state.epoch, position: state.position };
  }

  /** Starts an iteration; throws while another one runs. */
  begin(): void {
    if (this.iterating) throw new Error(`${this.owner} is already being iterated`);
    this.iterating = true;
  }

  /** Batch `b` of `plan` was handed out. */
  advance(sampler: ShardedSampler, plan: EpochPlan, b: number): void {
    this.current = stateAfterBatch(sampler, plan, b);
  }

  /** The whole epoch of `plan` was iterated: an epoch with no batches for this rank still moves on to the next. */
  completeEpoch(plan: EpochPlan): void {
    if (plan.batches === 0) this.current = { epoch: plan.epoch + 1, position: 0 };
  }

  /** Ends the iteration (call from `finally`). */
  end(): void {
    this.iterating = false;
  }
}
