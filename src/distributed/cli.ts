// Command entry point of the distributed area: `plsc launch` (`plsc bench comm` is in bench/comm-cli.ts).
// It does not load libtorch in this process (the workers do).
import { LAUNCH_USAGE, describeOutcome, launch, parseLaunchArgs, validateLaunchOptions, type LaunchResult } from './launcher.js';
import { join } from 'node:path';
import { withStopSignals } from '../cli-kit/signals.js';

/** The launcher's closing report, or null when every worker succeeded. */
export function launchReport(result: LaunchResult): string | null {
  let logs = result.logDir !== null ? `; each rank's full output: ${join(result.logDir, 'rank-R.log')}` : '';
  if (result.aborted !== null) {
    return `plsc launch: received ${result.aborted}; stopped all ${result.workers.length} workers`;
  }
  const stopped = result.workers.filter((w) => w.stoppedByLauncher).map((w) => w.rank);
  const stoppedText = stopped.length > 0 ? `; stopped rank${stopped.length > 1 ? 's' : ''} ${stopped.join(', ')}` : '';
  const grace = result.exitGrace;
  if (grace !== null) {
    const still = grace.stillRunning;
    return (
      `plsc launch: rank${still.length > 1 ? 's' : ''} ${still.join(', ')} still running ${grace.graceMs / 1000} s after rank ${grace.finishedRank} ` +
      `exited with code 0 (--exit-grace); stopped them; exiting with code ${result.exitCode}${logs}`
    );
  }
  const f = result.failure;
  if (f === null) return null;
  const count = result.restarts.length;
  if (count > 0) logs = `; no restarts left (${count} of --max-restarts ${count} used)${logs}`;
  const how = `rank ${f.rank} (local rank ${f.localRank}${f.pid !== undefined ? `, pid ${f.pid}` : ''}) ${describeOutcome(f)}`;
  const blame = result.blame;
  if (blame !== null && !blame.ranks.includes(f.rank)) {
    const ranks = blame.ranks.join(', ');
    return (
      `plsc launch: rank${blame.ranks.length > 1 ? 's' : ''} ${ranks} failed first: ${blame.ranks.length > 1 ? 'they' : 'it'} ${blame.what} ` +
      `(reported by rank ${f.rank}, which ${describeOutcome(f)})${stoppedText}; exiting with code ${result.exitCode}${logs}`
    );
  }
  return `plsc launch: ${how}${stoppedText}; exiting with code ${result.exitCode}${logs}`;
}

/** `plsc launch --nproc-per-node N [...] -- CMD ARGS...` */
export async function launchCommand(argv: string[]): Promise<number> {
  let options;
  try {
    options = parseLaunchArgs(argv);
    if (!options.help) validateLaunchOptions(options);
  } catch (err) {
    console.error(`plsc launch: ${err instanceof Error ? err.message : String(err)}`);
    return 2;
  }
  if (options.help) {
    console.log(LAUNCH_USAGE);
    return 0;
  }
  const elastic = options.elastic;
  const result = await withStopSignals(async (signal) =>
    elastic === undefined ? launch({ ...options, signal }) : (await import('./elastic.js')).launchElastic({ ...options, signal }, elastic),
  );
  const report = launchReport(result);
  if (report !== null) console.error(report);
  return result.exitCode;
}
