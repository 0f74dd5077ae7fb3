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
   * Whether the run should stop now because some rank received SIGINT. Distributed, every rank must
   * call it after the same step: it is a one-element allReduce(max).
   */
  stopRequested(): boolean {
    const local = this.interrupt.requested;
    if (this.group.worldSize === 1) return local;
    const flag = F.tensor([local ? 1 : 0]);
    try {
      this.group.allReduce(flag, 'max').wait();
      return flag.item() > 0;
    } finally {
      flag.dispose();
    }
  }

  dispose(): void {
    this.watchdog?.stop();
    this.interrupt.release();
  }
}
