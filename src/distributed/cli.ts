// Command entry points of the distributed area: `plsc launch` and `plsc bench comm`.
// Neither loads libtorch in this process (the workers do).
import { LAUNCH_USAGE, describeOutcome, launch, parseLaunchArgs, validateLaunchOptions, type LaunchResult } from './launcher.js';
import { benchSizes, parseBytes, runCommBench, type CommBenchConfig, type CommBenchOp, type CommBenchRecord } from './bench-comm.js';
import { join } from 'node:path';
import { withStopSignals } from '../cli/signals.js';

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

export const BENCH_COMM_USAGE = `usage: plsc bench comm [--nproc 2,4] [--min-bytes 1K] [--max-bytes 64M] [--factor 4]
                       [--ops allreduce,allgather] [--iters N] [--json]

Bus bandwidth (GB/s, nccl-tests formulas) of gloo allReduce and allGather of float32 tensors
between processes on this machine (loopback). allGather sizes are the gathered output.
--json prints one object per line: {"op","bytes","nproc","busbw_gbps",...}.`;

interface BenchCommArgs {
  nprocs: number[];
  config: CommBenchConfig;
  json: boolean;
  help: boolean;
}

function parseBenchCommArgs(argv: readonly string[]): BenchCommArgs {
  let nprocs = [2, 4];
  let minBytes = 1024;
  let maxBytes = 64 * 1024 * 1024;
  let factor = 4;
  let opsList: CommBenchOp[] = ['allreduce', 'allgather'];
  let iters: number | undefined;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.indexOf('=');
    const flag = eq >= 0 ? arg.slice(0, eq) : arg;
    const value = (): string => {
      const v = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--json':
        json = true;
        break;
      case '--help':
      case '-h':
        return { nprocs, config: {} as CommBenchConfig, json, help: true };
      case '--nproc':
        nprocs = value().split(',').map((s) => {
          const n = Number(s);
          if (!Number.isInteger(n) || n < 2) throw new Error(`--nproc: ${JSON.stringify(s)} is not an integer >= 2`);
          return n;
        });
        break;
      case '--min-bytes':
        minBytes = parseBytes(value());
        break;
      case '--max-bytes':
        maxBytes = parseBytes(value());
        break;
      case '--factor':
        factor = Number(value());
        break;
      case '--ops':
        opsList = value().split(',').map((s) => {
          if (s !== 'allreduce' && s !== 'allgather') throw new Error(`--ops: unknown op ${JSON.stringify(s)} (allreduce, allgather)`);
          return s;
        });
        break;
      case '--iters': {
        const n = Number(value());
        if (!Number.isInteger(n) || n < 1) throw new Error('--iters needs a positive integer');
        iters = n;
        break;
      }
      default:
        throw new Error(`unknown option ${flag}`);
    }
  }
  const config: CommBenchConfig = {
    ops: opsList,
    sizes: benchSizes(minBytes, maxBytes, factor),
    warmup: 2,
    bytesPerSize: 64 * 1024 * 1024,
    minIters: 3,
    maxIters: 100,
    ...(iters !== undefined ? { iters } : {}),
  };
  return { nprocs, config, json, help: false };
}

function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 2) return `${bytes / 1024 ** 2} MiB`;
  if (bytes >= 1024) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}

/** `plsc bench comm [--json] ...` */
export async function benchCommCommand(argv: string[]): Promise<number> {
  let args: BenchCommArgs;
  try {
    args = parseBenchCommArgs(argv);
  } catch (err) {
    console.error(`plsc bench comm: ${err instanceof Error ? err.message : String(err)}\n\n${BENCH_COMM_USAGE}`);
    return 2;
  }
  if (args.help) {
    console.log(BENCH_COMM_USAGE);
    return 0;
  }
  if (!args.json) {
    console.log(`${'op'.padEnd(10)} ${'nproc'.padStart(5)} ${'size'.padStart(10)} ${'time (us)'.padStart(12)} ${'algbw GB/s'.padStart(11)} ${'busbw GB/s'.padStart(11)}`);
  }
  const print = (r: CommBenchRecord): void => {
    if (args.json) {
      console.log(JSON.stringify(r));
    } else {
      console.log(
        `${r.op.padEnd(10)} ${String(r.nproc).padStart(5)} ${formatBytes(r.bytes).padStart(10)} ${r.time_us.toFixed(1).padStart(12)} ` +
          `${r.algbw_gbps.toFixed(3).padStart(11)} ${r.busbw_gbps.toFixed(3).padStart(11)}`,
      );
    }
  };
  try {
    await withStopSignals(async (signal) => {
      for (const nproc of args.nprocs) await runCommBench(nproc, args.config, print, undefined, signal);
    });
  } catch (err) {
    console.error(`plsc bench comm: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  return 0;
}
