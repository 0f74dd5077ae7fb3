// How a worker's failure reaches the person running the job: one line with the error's message on
// the terminal, the stack trace in the launcher's per-rank log (or on the terminal with
// PLSC_DEBUG=1), and the rank(s) a timed-out collective names as never arrived, which the launcher
// reports as the ones that failed first.
import { LAUNCHER_PID_VAR } from './env.js';

/** Ranks a worker's error line names as the cause of its failure. */
export interface Blame {
  ranks: number[];
  /** What they did not do, e.g. "never arrived at allReduce(sum) #57", "is not responding". */
  what: string;
  /** The rank whose error named them. */
  reportedBy: number;
}

const NEVER_ARRIVED = /\branks? (\d+(?:, \d+)*) never arrived at ([^;]*?#\d+)/;
const NOT_RESPONDING = /\brank (\d+) is not responding/;
const PEER_LOST = /; the peer at (\S+) is ranks? (\d+(?:, \d+)*)/;
const UNREACHABLE = /\branks? (\d+(?:, \d+)*) (?:is|are) unreachable/;

/**
 * The ranks an error line names as never arrived / not responding / unreachable / the peer whose
 * connection failed (see native/src/c10d.cc), or null.
 */
export function blameIn(line: string, reportedBy: number): Blame | null {
  const missing = NEVER_ARRIVED.exec(line);
  if (missing !== null) {
    return { ranks: (missing[1] as string).split(', ').map(Number), what: `never arrived at ${missing[2] as string}`, reportedBy };
  }
  const silent = NOT_RESPONDING.exec(line);
  if (silent !== null) return { ranks: [Number(silent[1])], what: 'is not responding', reportedBy };
  const unreachable = UNREACHABLE.exec(line);
  if (unreachable !== null) return { ranks: (unreachable[1] as string).split(', ').map(Number), what: 'became unreachable (heartbeat stopped)', reportedBy };
  const lost = PEER_LOST.exec(line);
  if (lost !== null) {
    return { ranks: (lost[2] as string).split(', ').map(Number), what: `dropped out (the connection to ${lost[1] as string} failed)`, reportedBy };
  }
  return null;
}

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
