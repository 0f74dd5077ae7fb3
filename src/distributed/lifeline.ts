// Lifelines of a worker that hold while JavaScript is busy (a synchronous data loader or a blocking
// collective keeps timers and signal listeners from running): dying with the launcher, a stall
// watchdog, and a SIGINT flag that lets training stop after the current step. All three live in the
// native addon (native/src/lifeline.cc) and run on their own threads or in a signal handler.
import { native } from '../torch/native.js';
import { LAUNCHER_PID_VAR } from './env.js';

interface LifelineAddon {
  watchParent(pid: number): boolean;
  stallWatch(timeoutMs: number, label: string, exitCode: number): void;
  stallBeat(step: number): void;
  interruptCatch(): void;
  interruptRelease(): void;
  interruptCount(): number;
}

const addon = native as unknown as LifelineAddon;

/**
 * Under `plsc launch` (or `plsc train --nproc N`): this process exits, taking its own process group
 * along, as soon as the launcher is gone, even when it was SIGKILLed. A direct child gets
 * PR_SET_PDEATHSIG; any descendant gets a native thread waiting on a pidfd of the launcher.
 * Returns whether a watch was started (false without a launcher, or when one runs already).
 */
export function watchLauncher(env: Readonly<Record<string, string | undefined>> = process.env): boolean {
  const raw = env[LAUNCHER_PID_VAR];
  if (raw === undefined || !/^\d+$/.test(raw)) return false;
  const pid = Number(raw);
  if (pid <= 1 || pid === process.pid) return false;
  return addon.watchParent(pid);
}

/**
 * Fails the process when no progress is reported for `timeoutSeconds`: a native thread prints
 * "plsc: LABEL: stalled: no progress for N s after step S (...)" (naming the collective it is
 * blocked in and the ranks that never arrived there) and exits with code 1. One per process.
 */
export class StallWatchdog {
  private stopped = false;

  constructor(
    readonly timeoutSeconds: number,
    label: string,
  ) {
    if (!(timeoutSeconds >= 0)) throw new RangeError(`stall timeout must be >= 0 seconds, got ${timeoutSeconds}`);
    addon.stallWatch(Math.round(timeoutSeconds * 1000), label, 1);
  }

  /** Progress: `step` is the last step finished. */
  beat(step: number): void {
    if (!this.stopped) addon.stallBeat(step);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    addon.stallWatch(0, '', 1);
  }
}

/**
 * Takes over SIGINT until released: the first SIGINT only sets `requested` (polled between steps,
 * so it works while the event loop is blocked), a second one exits at once with code 130.
 */
export class InterruptFlag {
  private released = false;

  private constructor() {
    addon.interruptCatch();
  }

  static catch(): InterruptFlag {
    return new InterruptFlag();
  }

  get requested(): boolean {
    return !this.released && addon.interruptCount() > 0;
  }

  /** Gives SIGINT back to whatever handled it before. */
  release(): void {
    if (this.released) return;
    this.released = true;
    addon.interruptRelease();
  }
}
