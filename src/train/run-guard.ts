// What keeps a training run honest about time: a stall watchdog (the run fails, naming the rank and
// the last step, when no step finishes for stallTimeout seconds, even while the main thread is
// blocked in a collective) and a graceful first SIGINT that every rank agrees on, so that all of
// them stop after the same step and write one consistent checkpoint.
import { InterruptFlag, StallWatchdog } from '../distributed/lifeline.js';
import type { ProcessGroup } from '../distributed/process-group.js';
import * as F from '../torch/ops.js';

export class RunGuard {
  private readonly watchdog: StallWatchdog | null;
  private readonly interrupt: InterruptFlag;

  constructor(
    private readonly group: ProcessGroup,
    stallTimeoutSeconds: number,
  ) {
    const label = group.worldSize > 1 ? `rank ${group.rank} of ${group.worldSize}` : 'training';
    this.watchdog = stallTimeoutSeconds > 0 ? new StallWatchdog(stallTimeoutSeconds, label) : null;
    this.interrupt = InterruptFlag.catch();
  }

  /** Progress was made: `step` steps are done. */
  progress(step: number): void {
    this.watchdog?.beat(step);
  }

  /**
   * Whether the run should stop now, and why: 'interrupt' when some rank received SIGINT, else 'hook'
   * when a training hook on some rank asked to stop (`hookStop` is this rank's request), else null.
   * Distributed, every rank must call it after the same step: it is a two-element allReduce(max).
   */
  stopRequested(hookStop = false): 'interrupt' | 'hook' | null {
    const local = [this.interrupt.requested ? 1 : 0, hookStop ? 1 : 0];
    if (this.group.worldSize === 1) return stopReason(local);
    const flags = F.tensor(local);
    try {
      this.group.allReduce(flags, 'max').wait();
      return stopReason(Array.from(flags.dataSync() as Float32Array));
    } finally {
      flags.dispose();
    }
  }

  dispose(): void {
    this.watchdog?.stop();
    this.interrupt.release();
  }
}

function stopReason([interrupt, hook]: number[]): 'interrupt' | 'hook' | null {
  if (interrupt! > 0) return 'interrupt';
  return hook! > 0 ? 'hook' : null;
}
