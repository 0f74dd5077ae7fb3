// `plsc bench comm`: bus bandwidth of allReduce and allGather on loopback, measured by real worker
// processes started through the launcher. Formulas follow nccl-tests (doc/PERFORMANCE.md):
//   allreduce: busbw = algbw * 2(n-1)/n     allgather: busbw = algbw * (n-1)/n
// where algbw = bytes / time and, for allgather, bytes is the size of the gathered output.
import { fileURLToPath } from 'node:url';
import { launch } from '../src/distributed/launcher.js';
import { withStopSignals } from '../src/cli-kit/signals.js';

export type CommBenchOp = 'allreduce' | 'allgather';

export interface CommBenchConfig {
  ops: CommBenchOp[];
  sizes: number[];
  warmup: number;
  /** Fixed iteration count; otherwise bytesPerSize / bytes, clamped to [minIters, maxIters]. */
  iters?: number;
  bytesPerSize: number;
  minIters: number;
  maxIters: number;
}

export interface CommBenchRecord {
  op: CommBenchOp;
  bytes: number;
  nproc: number;
  busbw_gbps: number;
  algbw_gbps: number;
  time_us: number;
  iters: number;
}

export function busBandwidth(op: CommBenchOp, algbwGbps: number, nproc: number): number {
  const factor = op === 'allreduce' ? (2 * (nproc - 1)) / nproc : (nproc - 1) / nproc;
  return algbwGbps * factor;
}

/** Sizes from min to max (inclusive when reached), multiplying by factor. */
export function benchSizes(minBytes: number, maxBytes: number, factor: number): number[] {
  if (!(minBytes >= 4) || !(maxBytes >= minBytes) || !(factor > 1)) {
    throw new Error(`bench sizes: need 4 <= min (${minBytes}) <= max (${maxBytes}) and factor (${factor}) > 1`);
  }
  const sizes: number[] = [];
  for (let s = minBytes; s <= maxBytes; s *= factor) sizes.push(Math.round(s));
  return sizes;
}

/** Parses 1024, 1K, 4KiB, 64M, 1G (binary units). */
export function parseBytes(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?$/i.exec(text.trim());
  if (m === null) throw new Error(`not a byte size: ${JSON.stringify(text)} (examples: 1024, 4K, 64M)`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m[2] as string).toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Math.round(Number(m[1]) * unit);
}

/**
 * Runs the benchmark for one process count; each record is passed to onRecord as rank 0 prints it.
 * Worker output that is not a record goes to onLog.
 */
export async function runCommBench(
  nproc: number,
  config: CommBenchConfig,
  onRecord: (record: CommBenchRecord) => void,
  onLog: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
  signal?: AbortSignal,
): Promise<void> {
  const worker = fileURLToPath(new URL('./comm-worker.js', import.meta.url));
  const result = await launch({
    nprocPerNode: nproc,
    command: process.execPath,
    args: [worker],
    env: { PLSC_BENCH_COMM: JSON.stringify(config) },
    ...(signal ? { signal } : {}),
    onOutput: ({ rank, stream, text }) => {
      if (rank === 0 && stream === 'stdout' && text.startsWith('{')) onRecord(JSON.parse(text) as CommBenchRecord);
      else onLog(`[rank ${rank}] ${text}`);
    },
  });
  if (result.exitCode !== 0) {
    const f = result.failure;
    const how = f === null ? `was interrupted (${result.aborted})` : `failed: rank ${f.rank} ${f.signal !== null ? `was killed by ${f.signal}` : `exited with code ${f.exitCode}`}`;
    throw new Error(`comm benchmark with ${nproc} processes ${how}`);
  }
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
