// Ctrl-C / SIGTERM / SIGHUP during a long command (training, a launch): the first one aborts the work
// (local workers are stopped rather than orphaned), a second one exits at once.
import { constants as osConstants } from 'node:os';

const STOP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** Runs `fn` with an AbortSignal that the first stop signal aborts; a second exits with 128 + its number. */
export async function withStopSignals<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const handler = (signal: NodeJS.Signals): void => {
    if (controller.signal.aborted) process.exit(128 + ((osConstants.signals as Record<string, number>)[signal] ?? 1));
    controller.abort(signal);
  };
  for (const s of STOP_SIGNALS) process.on(s, handler);
  try {
    return await fn(controller.signal);
  } finally {
    for (const s of STOP_SIGNALS) process.off(s, handler);
  }
}
