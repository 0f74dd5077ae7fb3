// `plsc launch --nnodes MIN:MAX --rdzv-endpoint HOST:PORT --rdzv-id ID`: one launcher per host; they
// meet in rounds on a c10d TCPStore (rendezvous.ts), each round fixes the node ranks and the world
// size, and the workers join their group through that same store (torchrun's agent store). When a
// worker fails anywhere, its launcher opens the next round; every launcher stops its workers and
// joins it; a host that is gone for good is left out once the last call expires (MIN hosts
// suffice), and a host that arrives while a round runs is taken in at the next one. Each new round
// is a restart (TORCHELASTIC_RESTART_COUNT): plsc train resumes from the newest verified checkpoint
// and re-splits the FC shards when the world size changed.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { restartMessage, runGroup, validateLaunchOptions, type LaunchOptions, type LaunchResult, type RestartRecord } from './launcher.js';
import type { ElasticSettings } from './elastic-options.js';
import { RendezvousStore } from './rendezvous-store.js';
import { RendezvousFinished, RendezvousTimeout, currentRound, markFinished, rendezvous, type RendezvousRound } from './rendezvous.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Runs this host's workers in elastic rounds until they succeed, restarts run out, or the rendezvous fails. */
export async function launchElastic(options: LaunchOptions, elastic: ElasticSettings): Promise<LaunchResult> {
  validateLaunchOptions(options);
  const maxRestarts = options.maxRestarts ?? 0;
  const timeoutMs = elastic.timeoutMs ?? 600_000;
  const settings = {
    runId: elastic.runId,
    minNodes: elastic.minNodes,
    maxNodes: elastic.maxNodes,
    lastCallMs: elastic.lastCallMs ?? 30_000,
    timeoutMs,
    nprocPerNode: options.nprocPerNode,
  };
  const defaultLogDir = options.logDir === undefined;
  const logDir: string | null = defaultLogDir ? mkdtempSync(join(tmpdir(), 'plsc-launch-')) : (options.logDir ?? null);
  if (logDir !== null && !defaultLogDir) mkdirSync(logDir, { recursive: true });
  const where = `rendezvous '${elastic.runId}' at ${elastic.endpointHost}:${elastic.endpointPort}`;
  const restarts: RestartRecord[] = [];
  const onRestart = options.onRestart ?? ((record: RestartRecord) => say(restartMessage(record)));

  let store: RendezvousStore | null = null;
  // The store's host may be the launcher that was lost: then one of the survivors hosts a new one.
  const connect = async (): Promise<RendezvousStore> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const opened = await RendezvousStore.open(elastic.endpointHost, elastic.endpointPort, Math.min(10_000, timeoutMs));
        say(`plsc launch: ${where}: ${opened.hosted ? `hosting the store on ${hostname()}` : 'connected to the store'}`);
        return opened;
      } catch (error) {
        if (Date.now() > deadline || options.signal?.aborted) throw new Error(`${where}: ${(error as Error).message}`);
        await sleep(500);
      }
    }
  };
  const meet = async (atLeast: number): Promise<RendezvousRound> => {
    for (;;) {
      try {
        store ??= await connect();
        return await rendezvous(store, settings, atLeast);
      } catch (error) {
        if (error instanceof RendezvousTimeout || error instanceof RendezvousFinished || options.signal?.aborted) throw error;
        say(`plsc launch: ${where}: lost the store (${(error as Error).message}); reconnecting`);
        store?.close();
        store = null;
      }
    }
  };

  let atLeast = 0;
  let previous: RendezvousRound | null = null;
  try {
    for (;;) {
      let round: RendezvousRound;
      try {
        round = await meet(atLeast);
      } catch (error) {
        say(`plsc launch: ${(error as Error).message}`);
        return finish({ exitCode: error instanceof RendezvousFinished ? 0 : 1, failure: null, aborted: null, workers: [], masterAddr: elastic.endpointHost, masterPort: elastic.endpointPort, blame: null, exitGrace: null, logDir, restarts });
      }
      if (round.round > maxRestarts) {
        say(`plsc launch: ${where}: round ${round.round} would be restart ${round.round}, but --max-restarts is ${maxRestarts}; stopping`);
        return finish({ exitCode: 1, failure: null, aborted: null, workers: [], masterAddr: elastic.endpointHost, masterPort: elastic.endpointPort, blame: null, exitGrace: null, logDir, restarts });
      }
      const last = round.rankOffset + options.nprocPerNode - 1;
      say(
        `plsc launch: ${where}: round ${round.round}: node rank ${round.nodeRank} of ${round.nnodes} node${round.nnodes > 1 ? 's' : ''}, ` +
          `ranks ${round.rankOffset}${last > round.rankOffset ? `-${last}` : ''} of world size ${round.worldSize}` +
          (previous !== null && previous.worldSize !== round.worldSize ? ` (was ${previous.worldSize}: training resumes from the last checkpoint with the FC shards re-split)` : ''),
      );
      previous = round;
      const stop = new AbortController();
      let newer: number | null = null;
      const watch = setInterval(() => {
        void (async () => {
          try {
            const current = store === null ? null : await currentRound(store, elastic.runId);
            if (current !== null && current > round.round && !stop.signal.aborted) {
              newer = current;
              stop.abort();
            }
          } catch {
            // The store went away (its host was lost): the workers notice through their group.
          }
        })();
      }, elastic.pollMs ?? 500);
      let result;
      try {
        result = await runGroup(options, {
          rankOffset: round.rankOffset,
          worldSize: round.worldSize,
          groupRank: round.nodeRank,
          groupWorldSize: round.nnodes,
          masterAddr: elastic.endpointHost,
          masterPort: elastic.endpointPort,
          restartCount: round.round,
          maxRestarts,
          logDir,
          env: { TORCHELASTIC_USE_AGENT_STORE: 'True', TORCHELASTIC_RUN_ID: elastic.runId },
          stop: stop.signal,
        });
      } finally {
        clearInterval(watch);
      }
      if (result.aborted !== null) return finish({ ...result, restarts });
      if (result.stoppedForRestart) {
        say(`plsc launch: ${where}: round ${newer ?? round.round + 1} was opened by another node (a worker failed or a node left there); stopped this node's workers`);
        atLeast = newer ?? round.round + 1;
        continue;
      }
      if (result.failure === null) {
        if (result.exitCode === 0) await announceFinished();
        return finish({ ...result, restarts });
      }
      if (round.round >= maxRestarts) return finish({ ...result, restarts });
      const record: RestartRecord = { restart: round.round + 1, maxRestarts, failure: result.failure, blame: result.blame };
      restarts.push(record);
      onRestart(record);
      atLeast = round.round + 1;
    }
  } finally {
    (store as RendezvousStore | null)?.close();
  }

  // Launchers waiting to be taken in learn that the job is over; the host keeps its store up long
  // enough for them to see it.
  async function announceFinished(): Promise<void> {
    const current = store as RendezvousStore | null;
    if (current === null) return;
    try {
      await markFinished(current, elastic.runId);
      if (current.hosted) await sleep(4 * (elastic.pollMs ?? 500) + 1000);
    } catch {
      // the store is gone: nobody is left waiting on it
    }
  }

  function finish(result: LaunchResult): LaunchResult {
    if (logDir !== null && defaultLogDir && result.exitCode === 0) {
      rmSync(logDir, { recursive: true, force: true });
      return { ...result, logDir: null };
    }
    return result;
  }
}
