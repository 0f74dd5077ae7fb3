// The Trainer's callbacks (the way insightface's arcface_torch passes CallBackLogging and
// CallBackVerification): Trainer.train() runs the steps and calls each hook, in order, after every
// step, at the end of every epoch and once when training ends. Progress output, checkpoints,
// validation, the final model and the run report are built-in hooks; a library user adds more with
// `trainer.train({ hooks: [...] })`. Every worker runs its own hooks (state.rank says which one).

/** What a hook sees after one optimizer step. */
export interface TrainStepState {
  /** Global steps completed, counting from the start of the run (1 after the first step; a resumed run continues the count). */
  readonly step: number;
  /** The epoch this step's batch came from (0-based). */
  readonly epoch: number;
  readonly loss: number;
  /** The learning rate the step ran with. */
  readonly lr: number;
  /** Training-batch accuracy when config.calcAcc is on, else null. */
  readonly accuracy: number | null;
  /** Images per second of the whole job (all workers). */
  readonly imagesPerSecond: number;
  /** Steps the schedule spans now (under a trainTime budget this estimate moves). */
  readonly totalSteps: number;
  readonly rank: number;
  readonly worldSize: number;
  /**
   * Ends training after this step, like a spent time budget: the final checkpoint, validation and
   * model are written as at a normal end, and TrainResult.stoppedBy holds the reason. A request on
   * any worker stops every worker at the same step.
   */
  requestStop(reason: string): void;
}

/** What a hook sees when an epoch's batches ran out (or the planned steps were reached). */
export interface TrainEpochEndState {
  readonly epoch: number;
  /** Global steps completed. */
  readonly step: number;
  /**
   * True when the run reached its step limit with this epoch or SIGINT or a hook stopped it: the
   * final checkpoint and validation are then left to onTrainEnd, which follows at once.
   */
  readonly last: boolean;
}

/** What a hook sees once training has stopped. */
export interface TrainEndState {
  /** Global steps completed. */
  readonly step: number;
  /** The data loader's epoch at the end (one past the last epoch when that epoch ran to its end). */
  readonly epoch: number;
  /** Stopped early by SIGINT: the final model is not written. */
  readonly interrupted: boolean;
  /** Training reached its planned steps, spent its time budget or was stopped by a hook. */
  readonly finished: boolean;
  /** The reason a hook gave when it stopped the run, else null. */
  readonly stoppedBy: string | null;
}

/**
 * A training callback. Every method is optional and may be async (the loop waits for it). A hook that
 * throws fails the run. In a distributed run, hooks that talk to the other workers must make the same
 * calls on every worker.
 */
export interface TrainHook {
  onStepEnd?(state: TrainStepState): void | Promise<void>;
  onEpochEnd?(state: TrainEpochEndState): void | Promise<void>;
  onTrainEnd?(state: TrainEndState): void | Promise<void>;
}
