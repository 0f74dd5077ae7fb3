// The rank(s) a timed-out collective names as never arrived, which the launcher reports as the ones
// that failed first. (The failing worker's own line and stack trace: src/cli-kit/failure.ts.)

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
