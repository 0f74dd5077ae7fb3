// `plsc bench eval`: eval-mode embedding throughput of a backbone as trained (conv, BatchNorm and
// PReLU as separate operators) and of its BN-folded inference form (foldBatchNorm), the two timed in
// alternating rounds of one run, with the operators per forward and the largest difference between
// their embeddings. Prints measurements; asserts nothing.
import { createBackbone, foldBatchNorm, getNumThreads, noGrad, ops as F, profileOps, tidy, manualSeed, type Backbone, type Tensor } from '../src/index.js';
import { runCommand, integerFlag } from '../src/cli-kit/args.js';
import { median } from './peer.js';

const EVAL_BENCH_USAGE = `usage: plsc bench eval [options]

Times eval-mode embedding (forward without grad) of a random-weight backbone, as trained and with
its BatchNorms folded into the convolutions and linear layers (what plsc eval, training validation
and plsc export use), in alternating rounds.

  --model LIST          comma-separated backbone names (default mobilefacenet,iresnet18)
  --image-size N        input side (default 112)
  --batch N             images per forward (default 32)
  --iterations N        forwards per timed sample (default 3)
  --rounds N            samples of each form, alternating (default 5)
  --json                one JSON object per model`;

export interface EvalEmbedBenchSettings {
  model: string;
  imageSize: number;
  batch: number;
  iterations: number;
  rounds: number;
}

export interface EvalEmbedBenchResult {
  model: string;
  image_size: number;
  batch: number;
  threads: number;
  /** Median over the rounds, images per second. */
  unfolded_img_per_s: number;
  folded_img_per_s: number;
  /** Median over the rounds of (unfolded time / folded time), each pair measured back to back. */
  speedup: number;
  /**
   * The same ratio of the process's CPU time (user + system; idle OpenMP threads sleep, as plsc sets
   * OMP_WAIT_POLICY=PASSIVE): steadier than wall time when other processes share the cores.
   */
  cpu_speedup: number;
  rounds: Round[];
  /** aten operator calls of one forward. */
  unfolded_ops: number;
  folded_ops: number;
  /** BatchNorm calls of one forward. */
  unfolded_batch_norms: number;
  folded_batch_norms: number;
  /** Fraction of the unfolded forward's time inside operators that its batch_norm calls took (profileOps, one forward). */
  unfolded_batch_norm_share: number;
  /** Time to build the folded form, ms. */
  fold_ms: number;
  /** max |folded - unfolded| / max |unfolded| over the batch's embeddings. */
  max_relative_difference: number;
}

function forwardData(model: Backbone, input: Tensor): Float32Array {
  return noGrad(() => tidy(() => model.call(input).dataSync() as Float32Array));
}

interface Round {
  unfolded_ms: number;
  folded_ms: number;
  unfolded_cpu_ms: number;
  folded_cpu_ms: number;
}

function timeForwards(model: Backbone, input: Tensor, iterations: number): { wallMs: number; cpuMs: number } {
  const cpuStart = process.cpuUsage();
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) noGrad(() => tidy(() => void model.call(input)));
  const wallMs = Number(process.hrtime.bigint() - start) / 1e6;
  const cpu = process.cpuUsage(cpuStart);
  return { wallMs, cpuMs: (cpu.user + cpu.system) / 1000 };
}

function operatorCounts(model: Backbone, input: Tensor): { ops: number; batchNorms: number; batchNormShare: number } {
  const { ops } = profileOps(() => noGrad(() => tidy(() => void model.call(input))));
  const isBatchNorm = (op: string): boolean => op.includes('batch_norm');
  const count = (filter: (op: string) => boolean): number => ops.filter((entry) => filter(entry.op)).reduce((sum, entry) => sum + entry.calls, 0);
  const ms = (filter: (op: string) => boolean): number => ops.filter((entry) => filter(entry.op)).reduce((sum, entry) => sum + entry.totalMs, 0);
  const totalMs = ms(() => true);
  return { ops: count(() => true), batchNorms: count(isBatchNorm), batchNormShare: totalMs > 0 ? ms(isBatchNorm) / totalMs : 0 };
}

/** Measures one backbone: unfolded and folded forwards alternate, first one then the other. */
export function measureEvalEmbedding(settings: EvalEmbedBenchSettings): EvalEmbedBenchResult {
  manualSeed(0);
  const backbone = createBackbone(settings.model, { inputSize: settings.imageSize });
  const input = F.randn([settings.batch, ...backbone.inputShape]);
  try {
    // Running statistics that are not the initial 0 / 1: two training-mode forwards.
    noGrad(() => tidy(() => void backbone.call(F.randn([Math.max(2, settings.batch), ...backbone.inputShape]))));
    noGrad(() => tidy(() => void backbone.call(F.mul(F.randn([Math.max(2, settings.batch), ...backbone.inputShape]), 2))));
    backbone.eval();
    const foldStart = process.hrtime.bigint();
    const folded = foldBatchNorm(backbone);
    const foldMs = Number(process.hrtime.bigint() - foldStart) / 1e6;
    try {
      const expected = forwardData(backbone, input);
      const actual = forwardData(folded, input);
      let worst = 0;
      let scale = 0;
      for (let i = 0; i < expected.length; i++) {
        worst = Math.max(worst, Math.abs((actual[i] as number) - (expected[i] as number)));
        scale = Math.max(scale, Math.abs(expected[i] as number));
      }
      const unfoldedOps = operatorCounts(backbone, input);
      const foldedOps = operatorCounts(folded, input);
      const rounds: Round[] = [];
      for (let round = 0; round < settings.rounds; round++) {
        // Alternate which form goes first, so drift in machine load does not favour one of them.
        const [first, second] = round % 2 === 0 ? [backbone, folded] : [folded, backbone];
        const firstTimes = timeForwards(first, input, settings.iterations);
        const secondTimes = timeForwards(second, input, settings.iterations);
        const [unfolded, foldedTimes] = round % 2 === 0 ? [firstTimes, secondTimes] : [secondTimes, firstTimes];
        rounds.push({ unfolded_ms: unfolded.wallMs, folded_ms: foldedTimes.wallMs, unfolded_cpu_ms: unfolded.cpuMs, folded_cpu_ms: foldedTimes.cpuMs });
      }
      const images = settings.batch * settings.iterations;
      return {
        model: settings.model,
        image_size: settings.imageSize,
        batch: settings.batch,
        threads: getNumThreads(),
        unfolded_img_per_s: images / (median(rounds.map((r) => r.unfolded_ms)) / 1000),
        folded_img_per_s: images / (median(rounds.map((r) => r.folded_ms)) / 1000),
        speedup: median(rounds.map((r) => r.unfolded_ms / r.folded_ms)),
        cpu_speedup: median(rounds.map((r) => r.unfolded_cpu_ms / r.folded_cpu_ms)),
        rounds,
        unfolded_ops: unfoldedOps.ops,
        folded_ops: foldedOps.ops,
        unfolded_batch_norms: unfoldedOps.batchNorms,
        folded_batch_norms: foldedOps.batchNorms,
        unfolded_batch_norm_share: unfoldedOps.batchNormShare,
        fold_ms: foldMs,
        max_relative_difference: scale > 0 ? worst / scale : worst,
      };
    } finally {
      folded.dispose();
    }
  } finally {
    input.dispose();
    backbone.dispose();
  }
}

function formatRow(result: EvalEmbedBenchResult): string {
  return [
    `${result.model} ${result.image_size}x${result.image_size}, batch ${result.batch}, ${result.threads} threads:`,
    `  unfolded ${result.unfolded_img_per_s.toFixed(1)} img/s (${result.unfolded_ops} ops, ${result.unfolded_batch_norms} batch norms taking ${(100 * result.unfolded_batch_norm_share).toFixed(1)}% of the operator time)`,
    `  folded   ${result.folded_img_per_s.toFixed(1)} img/s (${result.folded_ops} ops, ${result.folded_batch_norms} batch norms; folding took ${result.fold_ms.toFixed(0)} ms)`,
    `  speedup ${result.speedup.toFixed(3)}x wall, ${result.cpu_speedup.toFixed(3)}x CPU time (medians of ${result.rounds.length} back-to-back pairs); max relative difference ${result.max_relative_difference.toExponential(2)}`,
  ].join('\n');
}

/** `plsc bench eval`. */
export async function benchEvalCommand(argv: string[]): Promise<number> {
  const options = {
    model: { type: 'string' },
    'image-size': { type: 'string' },
    batch: { type: 'string' },
    iterations: { type: 'string' },
    rounds: { type: 'string' },
    json: { type: 'boolean' },
  } as const;
  return runCommand({ name: 'bench eval', usage: EVAL_BENCH_USAGE, options }, argv, async ({ values }) => {
    const models = (values.model ?? 'mobilefacenet,iresnet18').split(',').map((name) => name.trim()).filter((name) => name !== '');
    const settings = {
      imageSize: integerFlag(values['image-size'], 'image-size') ?? 112,
      batch: integerFlag(values.batch, 'batch') ?? 32,
      iterations: integerFlag(values.iterations, 'iterations') ?? 3,
      rounds: integerFlag(values.rounds, 'rounds') ?? 5,
    };
    for (const model of models) {
      const result = measureEvalEmbedding({ model, ...settings });
      console.log(values.json ? JSON.stringify(result) : formatRow(result));
    }
    return 0;
  });
}
