// Elastic rendezvous of launchers (torchrun's --nnodes MIN:MAX --rdzv-endpoint --rdzv-id), over a
// c10d TCPStore. Rounds are numbered 0, 1, 2, ...; the round number is the workers'
// TORCHELASTIC_RESTART_COUNT. Keys, under rdzv/<id>/:
//   round           the newest round opened (a failure opens the next one)
//   <r>/arrived     launchers that joined round r (each one's arrival number is its node rank + 1)
//   <r>/node/<k>    node k's worker count
//   <r>/closed      the node count round r closed with
//   done            set once a node's workers all succeeded: the job is over
// A round closes once MAX launchers joined, or once at least MIN did and no more came for the last
// call. A launcher that finds the newest round closed (a running job) joins the next one and waits
// for it to open (the next restart). Every wait is bounded by the rendezvous timeout.
import type { RendezvousStore } from './rendezvous-store.js';

export interface RendezvousSettings {
  runId: string;
  minNodes: number;
  maxNodes: number;
  /** Once MIN launchers joined, how long to wait for more before the round closes. */
  lastCallMs: number;
  /** The longest a launcher waits for a round to open or to reach MIN launchers. */
  timeoutMs: number;
  /** Workers this launcher starts. */
  nprocPerNode: number;
  /** Between polls of the store (default 100 ms). */
  pollMs?: number;
}

export interface RendezvousRound {
  round: number;
  nodeRank: number;
  nnodes: number;
  /** Global rank of this node's first worker. */
  rankOffset: number;
  worldSize: number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Rendezvous failures that no retry fixes (too few launchers within the timeout). */
export class RendezvousTimeout extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RendezvousTimeout';
  }
}

/** The job finished while this launcher waited for a round to join. */
export class RendezvousFinished extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RendezvousFinished';
  }
}

/** Marks the job finished, so launchers still waiting for a round stop waiting. */
export async function markFinished(store: RendezvousStore, runId: string): Promise<void> {
  await store.set(roundKey(runId, 'done'), '1');
}

export function roundKey(runId: string, name: string): string {
  return `rdzv/${runId}/${name}`;
}

/** The newest round opened, or null when none was (a fresh store). */
export async function currentRound(store: RendezvousStore, runId: string): Promise<number | null> {
  const value = await store.peek(roundKey(runId, 'round'));
  return value === null ? null : Number(value);
}

/**
 * Opens round `round` (unless a later one is open already) and returns the newest round open.
 * Several launchers may do it at once: the store's compareSet lets one of them win.
 */
export async function openRound(store: RendezvousStore, runId: string, round: number): Promise<number> {
  const key = roundKey(runId, 'round');
  let current = Number(await store.setIfAbsent(key, String(round)));
  while (current < round) current = Number(await store.compareSet(key, String(current), String(round)));
  return current;
}

/**
 * Joins the rendezvous at round `atLeast` or later (0 for a first start; the failed round + 1 after a
 * failure, which opens it). Resolves once the round closed with this launcher in it.
 */
export async function rendezvous(store: RendezvousStore, settings: RendezvousSettings, atLeast: number): Promise<RendezvousRound> {
  const { runId, minNodes, maxNodes, lastCallMs, timeoutMs } = settings;
  const pollMs = settings.pollMs ?? 100;
  const key = (name: string): string => roundKey(runId, name);
  const started = Date.now();
  const opened = atLeast === 0 ? Number(await store.setIfAbsent(key('round'), '0')) : await openRound(store, runId, atLeast);
  let target = opened;
  // A running job's round is closed: wait in the next one.
  if ((await store.peek(key(`${target}/closed`))) !== null) target += 1;
  for (;;) {
    const arrival = await store.add(key(`${target}/arrived`), 1);
    await store.set(key(`${target}/node/${arrival - 1}`), String(settings.nprocPerNode));
    let minReachedAt: number | null = null;
    let moveTo: number | null = null;
    while (moveTo === null) {
      if ((await store.peek(key('done'))) !== null) {
        throw new RendezvousFinished(`rendezvous '${runId}' at ${store.endpoint}: the job finished (its workers succeeded) before a round took this node in`);
      }
      const round = Number(await store.peek(key('round')));
      const closed = await store.peek(key(`${target}/closed`));
      if (closed !== null) {
        const nnodes = Number(closed);
        if (arrival > nnodes) {
          moveTo = target + 1;
          break;
        }
        const counts: number[] = [];
        for (let node = 0; node < nnodes; node++) counts.push(Number(await store.get(key(`${target}/node/${node}`))));
        const rankOffset = counts.slice(0, arrival - 1).reduce((sum, n) => sum + n, 0);
        return { round: target, nodeRank: arrival - 1, nnodes, rankOffset, worldSize: counts.reduce((sum, n) => sum + n, 0) };
      }
      if (round > target) {
        // A newer round opened while this one gathered: join that one.
        moveTo = round;
        break;
      }
      const elapsed = Date.now() - started;
      if (round === target) {
        const arrived = await store.add(key(`${target}/arrived`), 0);
        if (arrived >= maxNodes) await store.setIfAbsent(key(`${target}/closed`), String(maxNodes));
        else if (arrived >= minNodes) {
          minReachedAt ??= Date.now();
          if (Date.now() - minReachedAt >= lastCallMs) await store.setIfAbsent(key(`${target}/closed`), String(arrived));
        } else if (elapsed > timeoutMs) {
          throw new RendezvousTimeout(
            `rendezvous '${runId}' at ${store.endpoint}: only ${arrived} of at least ${minNodes} node${minNodes > 1 ? 's' : ''} joined round ${target} within ${timeoutMs / 1000} s (--rdzv-timeout)`,
          );
        }
      } else if (elapsed > timeoutMs) {
        throw new RendezvousTimeout(
          `rendezvous '${runId}' at ${store.endpoint}: the job is running round ${round} without this node, and no new round opened within ${timeoutMs / 1000} s (--rdzv-timeout); a node joins a running job at its next restart`,
        );
      }
      await sleep(pollMs);
    }
    target = moveTo;
  }
}
