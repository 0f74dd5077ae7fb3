// How a failing plsc process (a command, or a worker under `plsc launch`) prints its error: one line
// with the message on the terminal; the stack trace only where it reaches a log (the launcher's
// per-rank log) or where PLSC_DEBUG=1 asks for it.

/** Set by `plsc launch` in every worker: the launcher's pid (a worker dies with it). */
export const LAUNCHER_PID_VAR = 'PLSC_LAUNCHER_PID';

/** A line of a Node stack trace ("    at f (file.js:1:2)"). */
export function isStackFrame(line: string): boolean {
  return /^\s+at (?:.+ \()?(?:[^\s()]+:\d+:\d+|native|<anonymous>)\)?$/.test(line);
}

/**
 * What a worker prints when it fails: `prefix: message`, followed by the stack frames when they
 * will reach a log (under plsc launch, which keeps them out of the terminal) or PLSC_DEBUG=1 asks.
 */
export function describeFailure(prefix: string, error: unknown, env: Readonly<Record<string, string | undefined>> = process.env): string {
  const message = error instanceof Error ? error.message : String(error);
  const lines = [`${prefix}: ${message}`];
  const wantTrace = env.PLSC_DEBUG === '1' || env[LAUNCHER_PID_VAR] !== undefined;
  if (wantTrace && error instanceof Error && error.stack !== undefined) {
    lines.push(...error.stack.split('\n').filter(isStackFrame));
  }
  return lines.join('\n');
}
