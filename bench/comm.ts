// `plsc bench comm`: bus bandwidth of allReduce and allGather on loopback, measured by real worker
// processes started through the launcher. Formulas follow nccl-tests (doc/PERFORMANCE.md):
//   allreduce: busbw = algbw * 2(n-1)/n     allgather: busbw = algbw * (n-1)/n
// where algbw = bytes / time and, for allgather, bytes is the size of the gathered output.
import { fileURLToPath } from 'node:url';
import { launch } from '../src/distributed/launcher.js';

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
