// One worker of `plsc bench comm` (started by the launcher; not part of the public API). Times
// allReduce and allGather of float32 tensors and has rank 0 print one JSON line per measurement.
import * as ops from '../src/torch/ops.js';
import { initProcessGroup } from '../src/distributed/process-group.js';
import { busBandwidth, type CommBenchConfig, type CommBenchRecord } from './comm.js';

function parseConfig(): CommBenchConfig {
  const raw = process.env.PLSC_BENCH_COMM;
  if (raw === undefined) throw new Error('bench-comm-worker: PLSC_BENCH_COMM is not set (run it through `plsc bench comm`)');
  return JSON.parse(raw) as CommBenchConfig;
}

async function main(): Promise<void> {
  const config = parseConfig();
  const group = await initProcessGroup();
  const n = group.worldSize;
  for (const op of config.ops) {
    for (const bytes of config.sizes) {
      // allGather's size is the gathered output (nccl-tests convention): each rank sends bytes / n.
      const numel = Math.max(1, Math.floor((op === 'allgather' ? bytes / n : bytes) / 4));
      const input = ops.ones([numel]);
      const iters = config.iters ?? Math.min(config.maxIters, Math.max(config.minIters, Math.floor(config.bytesPerSize / bytes)));
      const once = (): void => {
        if (op === 'allreduce') group.allReduce(input, 'sum').wait();
        else group.allGather(input).wait().dispose();
      };
      for (let i = 0; i < config.warmup; i++) once();
      group.barrier().wait();
      const start = process.hrtime.bigint();
      for (let i = 0; i < iters; i++) once();
      const seconds = Number(process.hrtime.bigint() - start) / 1e9 / iters;
      // The slowest rank's time is the collective's time.
      const slowest = ops.tensor([seconds], { dtype: 'float64' });
      group.allReduce(slowest, 'max').wait();
      const time = slowest.item();
      slowest.dispose();
      input.dispose();
      if (group.rank === 0) {
        const actualBytes = op === 'allgather' ? numel * 4 * n : numel * 4;
        const algbw = actualBytes / time / 1e9;
        const record: CommBenchRecord = {
          op,
          bytes: actualBytes,
          nproc: n,
          // Significant digits, not decimals: small messages on a busy machine run at well under 0.0001 GB/s.
          busbw_gbps: Number(busBandwidth(op, algbw, n).toPrecision(4)),
          algbw_gbps: Number(algbw.toPrecision(4)),
          time_us: Number((time * 1e6).toFixed(1)),
          iters,
        };
        process.stdout.write(`${JSON.stringify(record)}\n`);
      }
    }
  }
  group.destroy();
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
