// `plsc bench engine`: GEMM throughput, conv fwd+bwd, a small-CNN training step and the per-op call cost, ours and
// PyTorch's (same thread count) measured in the same run. Prints measurements; asserts nothing.
import { ops as F, tidy, optim, manualSeed, getNumThreads, backendInfo, profileOps, type Tensor, type OpProfileEntry } from '../src/index.js';
import { SmallCnn } from './small-cnn.js';
import { median, medianMs } from './peer.js';
import { TorchPeerSession } from './peer-session.js';
import { THREAD_WAIT_ENV } from '../src/torch/native.js';

/** Calls of the tiny op per timed run of the op-overhead measurement (the peer uses the same). */
export const OP_OVERHEAD_CALLS = 2000;

/** One phase of a small-CNN step: its wall time, the part inside operator calls, and the rest. */
export interface StepPhaseProfile {
  phase: string;
  wall_ms: number;
  /** Time inside native.opCall (argument packing, libtorch, wrapping the results). */
  in_ops_ms: number;
  op_calls: number;
  /** Wall time outside operator calls: JS, scopes, and single native calls such as backward. */
  outside_ms: number;
}

export interface StepProfile {
  phases: StepPhaseProfile[];
  top_ops: OpProfileEntry[];
}

/** Where one small-CNN training step spends its time, phase by phase (median-free: one warm step). */
export function profileSmallCnnStep(model: SmallCnn, optimizer: optim.SGD, images: Tensor, labels: Tensor): StepProfile {
  const phases: StepPhaseProfile[] = [];
  const allOps = new Map<string, OpProfileEntry>();
  const phase = <T>(name: string, fn: () => T): T => {
    const { result, ops, totalMs } = profileOps(fn);
    const inOps = ops.reduce((sum, entry) => sum + entry.totalMs, 0);
    const calls = ops.reduce((sum, entry) => sum + entry.calls, 0);
    phases.push({ phase: name, wall_ms: totalMs, in_ops_ms: inOps, op_calls: calls, outside_ms: totalMs - inOps });
    for (const entry of ops) {
      const seen = allOps.get(entry.op);
      if (seen === undefined) allOps.set(entry.op, { ...entry });
      else {
        seen.calls += entry.calls;
        seen.totalMs += entry.totalMs;
      }
    }
    return result;
  };
  tidy(() => {
    phase('zero_grad', () => optimizer.zeroGrad());
    const loss = phase('forward + loss', () => F.crossEntropy(model.call(images), labels));
    phase('backward', () => loss.backward());
  });
  phase('optimizer step', () => optimizer.step());
  const topOps = [...allOps.values()].sort((a, b) => b.totalMs - a.totalMs).slice(0, 8);
  return { phases, top_ops: topOps };
}

/**
 * The measurements, each taken on both sides in every round. Our small CNN runs channels-last, as
 * plsc's backbones do by default; 'step' is PyTorch's step as written (NCHW, its default),
 * 'step_channels_last' PyTorch's with the model converted the same way, and
 * 'step_channels_last_passive' that step in a second peer whose thread pools wait as plsc's do
 * (THREAD_WAIT_ENV: OMP_WAIT_POLICY=PASSIVE; ours is the same step in all three).
 */
export const ENGINE_MEASURES = ['op_overhead', 'op_overhead_cpu', 'matmul', 'conv', 'step', 'step_channels_last', 'step_channels_last_passive'] as const;
export type EngineMeasure = (typeof ENGINE_MEASURES)[number];
// Timed runs inside one sample (each sample is their median; one untimed run before them).
const RUNS_PER_SAMPLE: Record<EngineMeasure, number> = { op_overhead: 4, op_overhead_cpu: 4, matmul: 2, conv: 2, step: 8, step_channels_last: 8, step_channels_last_passive: 8 };
const MATMUL_FLOPS = 2 * 256 * 512 * 100000;

/** Our side of the engine benchmark: inputs built once, then one sample per call. */
export class OurEngineBench {
  private readonly tiny = [F.randn([4]), F.randn([4])] as const;
  private readonly mm = [F.randn([256, 512]), F.randn([512, 100000])] as const;
  private readonly convInput = F.randn([32, 64, 56, 56]).requiresGrad_();
  private readonly convWeight = F.randn([64, 64, 3, 3]).requiresGrad_();
  // Channels-last weights: libtorch 1.13's CPU max_pool2d and batch_norm forward are 3-13x faster on
  // channels-last activations (a convolution with channels-last weights writes them).
  private readonly model = new SmallCnn().toMemoryFormat('channels_last');
  private readonly optimizer = new optim.SGD(this.model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
  private readonly images = F.randn([32, 3, 32, 32]);
  private readonly labels = F.randint(0, 10, [32]);

  /** One sample: us per tiny op, GFLOP/s, conv ms or step ms. */
  sample(measure: EngineMeasure): number {
    const runs = RUNS_PER_SAMPLE[measure];
    switch (measure) {
      case 'op_overhead': {
        const [a, b] = this.tiny;
        const ms = medianMs(() => {
          for (let i = 0; i < OP_OVERHEAD_CALLS; i++) tidy(() => void F.add(a, b));
        }, 1, runs);
        return (ms * 1000) / OP_OVERHEAD_CALLS;
      }
      case 'op_overhead_cpu': {
        // CPU time of this process: unlike wall time it does not count the moments a busy machine
        // runs someone else (a tiny op runs on this thread alone).
        const [a, b] = this.tiny;
        return medianOf(runs, () => {
          const start = process.cpuUsage();
          for (let i = 0; i < OP_OVERHEAD_CALLS; i++) tidy(() => void F.add(a, b));
          const used = process.cpuUsage(start);
          return (used.user + used.system) / OP_OVERHEAD_CALLS;
        });
      }
      case 'matmul': {
        const [a, b] = this.mm;
        // In a scope, as a model's ops run: a result no scope owns is reported to V8 (100 MB here), and
        // V8 answers with a concurrent mark that slows whatever the process measures next.
        return MATMUL_FLOPS / (medianMs(() => tidy(() => void F.mm(a, b)), 1, runs) / 1000) / 1e9;
      }
      case 'conv': {
        const [x, w] = [this.convInput, this.convWeight];
        return medianMs(
          () =>
            tidy(() => {
              F.conv2d(x, w, null, { padding: 1 }).sum().backward();
              x.grad = null;
              w.grad = null;
            }),
          1,
          runs,
        );
      }
      case 'step':
      case 'step_channels_last':
      case 'step_channels_last_passive':
        return medianMs(
          () => {
            this.optimizer.zeroGrad();
            tidy(() => F.crossEntropy(this.model.call(this.images), this.labels).backward());
            this.optimizer.step();
          },
          1,
          runs,
        );
    }
  }

  profileStep(): StepProfile {
    return profileSmallCnnStep(this.model, this.optimizer, this.images, this.labels);
  }

  dispose(): void {
    this.optimizer.dispose();
    this.model.dispose();
    dispose([...this.tiny, ...this.mm, this.convInput, this.convWeight, this.images, this.labels]);
  }
}

/**
 * Microseconds per call of a tiny elementwise op (add of two 4-element tensors), each call in its
 * own tidy() scope that disposes the result: what a model pays per op beyond the arithmetic.
 */
export function measureOpOverheadUs(repeats: number): number {
  const [a, b] = [F.randn([4]), F.randn([4])];
  const calls = (): void => {
    for (let i = 0; i < OP_OVERHEAD_CALLS; i++) tidy(() => void F.add(a, b));
  };
  const sampleMs = medianMs(calls, 3, repeats * 4);
  dispose([a, b]);
  return (sampleMs * 1000) / OP_OVERHEAD_CALLS;
}

/** Every round's samples of one measurement, ours and the peer's (null without a peer). */
export interface MeasureRounds {
  ours: number[];
  torch: number[] | null;
  /** ours / torch per round (for matmul GFLOP/s: higher is better; for the others lower is). */
  ratios: number[] | null;
}

/**
 * Takes `rounds` samples of each measurement from `takeOurs` and `takePeer`, alternating which
 * side goes first, so a drift in the machine's speed falls on both sides of each round's ratio.
 */
export async function alternateRounds(
  rounds: number,
  takeOurs: (measure: EngineMeasure) => number,
  takePeer: ((measure: EngineMeasure) => Promise<number>) | null,
): Promise<Record<EngineMeasure, MeasureRounds>> {
  const result = {} as Record<EngineMeasure, MeasureRounds>;
  for (const measure of ENGINE_MEASURES) result[measure] = { ours: [], torch: takePeer ? [] : null, ratios: takePeer ? [] : null };
  for (let round = 0; round < rounds; round++) {
    for (const measure of ENGINE_MEASURES) {
      const entry = result[measure];
      let ours: number;
      let peer: number | null = null;
      if (takePeer === null) ours = takeOurs(measure);
      else if (round % 2 === 0) {
        ours = takeOurs(measure);
        peer = await takePeer(measure);
      } else {
        peer = await takePeer(measure);
        ours = takeOurs(measure);
      }
      entry.ours.push(ours);
      if (peer !== null) {
        entry.torch?.push(peer);
        entry.ratios?.push(ours / peer);
      }
    }
  }
  return result;
}

// The median of `runs` values of sample() after one untimed call.
function medianOf(runs: number, sample: () => number): number {
  sample();
  const values: number[] = [];
  for (let i = 0; i < runs; i++) values.push(sample());
  return median(values);
}

function dispose(tensors: Tensor[]): void {
  for (const t of tensors) t.dispose();
}

const ENGINE_USAGE = `usage: plsc bench engine [--repeats 5] [--profile] [--json]

GEMM, conv2d fwd+bwd, a small-CNN training step and the per-op call cost, plsc's and PyTorch's
(same thread count), in --repeats rounds that alternate the two sides (PyTorch runs as one python
process for the whole benchmark); each figure is the median over the rounds, each ratio the median
of the per-round ratios. --profile splits the small-CNN step by operator.`;

export async function benchEngine(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(ENGINE_USAGE);
    return 0;
  }
  const json = argv.includes('--json');
  const repeatsArg = argv.indexOf('--repeats');
  const rounds = repeatsArg >= 0 ? Number(argv[repeatsArg + 1]) : 5;
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--repeats must be a positive integer');
  const threads = getNumThreads();
  const withProfile = argv.includes('--profile');
  manualSeed(0);
  const ours = new OurEngineBench();
  const peerArgs = [String(threads), String(OP_OVERHEAD_CALLS)];
  const started = await TorchPeerSession.start('torch_engine.py', peerArgs);
  // PyTorch's own default is active waiting (its users' setting); this one waits as plsc's threads do.
  const passive = started ? await TorchPeerSession.start('torch_engine.py', peerArgs, { ...THREAD_WAIT_ENV }) : null;
  let samples: Record<EngineMeasure, MeasureRounds>;
  let profile: StepProfile | null = null;
  try {
    const peer = started?.session;
    const passivePeer = passive?.session;
    const takePeer =
      peer && passivePeer
        ? async (measure: EngineMeasure): Promise<number> => {
            const repeats = RUNS_PER_SAMPLE[measure];
            if (measure === 'step_channels_last_passive') {
              return (await passivePeer.request<{ value: number }>({ measure: 'step_channels_last', repeats })).value;
            }
            return (await peer.request<{ value: number }>({ measure, repeats })).value;
          }
        : null;
    samples = await alternateRounds(rounds, (measure) => ours.sample(measure), takePeer);
    if (withProfile) profile = ours.profileStep();
  } finally {
    started?.session.close();
    passive?.session.close();
    ours.dispose();
  }
  const oursOf = (measure: EngineMeasure): number => median(samples[measure].ours);
  const torchOf = (measure: EngineMeasure): number | null => {
    const values = samples[measure].torch;
    return values === null ? null : median(values);
  };
  const ratioOf = (measure: EngineMeasure): number | null => {
    const values = samples[measure].ratios;
    return values === null ? null : median(values);
  };
  const result = {
    threads,
    libtorch: backendInfo().torchVersion,
    matmul_gflops: oursOf('matmul'),
    conv_ms: oursOf('conv'),
    step_ms: oursOf('step'),
    op_overhead_us: oursOf('op_overhead'),
    op_overhead_cpu_us: oursOf('op_overhead_cpu'),
    torch_version: started?.hello.version ?? null,
    torch_matmul_gflops: torchOf('matmul'),
    torch_conv_ms: torchOf('conv'),
    torch_step_ms: torchOf('step'),
    torch_step_channels_last_ms: torchOf('step_channels_last'),
    torch_step_channels_last_passive_ms: torchOf('step_channels_last_passive'),
    torch_op_overhead_us: torchOf('op_overhead'),
    torch_op_overhead_cpu_us: torchOf('op_overhead_cpu'),
    matmul_ratio: ratioOf('matmul'),
    conv_ratio: ratioOf('conv'),
    step_ratio: ratioOf('step'),
    step_ratio_channels_last: ratioOf('step_channels_last'),
    step_ratio_channels_last_passive: ratioOf('step_channels_last_passive'),
    op_overhead_ratio: ratioOf('op_overhead'),
    op_overhead_cpu_ratio: ratioOf('op_overhead_cpu'),
    rounds,
    round_samples: samples,
    ...(profile !== null ? { step_profile: profile } : {}),
  };
  if (json) {
    console.log(JSON.stringify(result));
    return 0;
  }
  const fmt = (v: number | null, digits = 2): string => (v === null ? 'n/a' : v.toFixed(digits));
  const spread = (measure: EngineMeasure): string => {
    const values = samples[measure].ratios;
    return values === null ? '' : ` [${fmt(Math.min(...values))}-${fmt(Math.max(...values))}]`;
  };
  console.log(`engine benchmark (${threads} threads, libtorch ${result.libtorch}; PyTorch ${result.torch_version ?? 'absent'}; ${rounds} alternating rounds, medians; ratio = median of the per-round ratios [their range])`);
  console.log(`  matmul [256x512]x[512x100000]  ours ${fmt(result.matmul_gflops, 1)} GFLOP/s  torch ${fmt(result.torch_matmul_gflops, 1)} GFLOP/s  ratio ${fmt(result.matmul_ratio)}${spread('matmul')} (higher is better)`);
  console.log(`  conv2d fwd+bwd [32,64,56,56]   ours ${fmt(result.conv_ms, 1)} ms  torch ${fmt(result.torch_conv_ms, 1)} ms  ratio ${fmt(result.conv_ratio)}${spread('conv')} (lower is better)`);
  console.log(`  small CNN train step (b=32)    ours (channels-last) ${fmt(result.step_ms, 2)} ms  torch ${fmt(result.torch_step_ms, 2)} ms  ratio ${fmt(result.step_ratio)}${spread('step')} (lower is better)`);
  console.log(`    PyTorch with channels-last weights too  torch ${fmt(result.torch_step_channels_last_ms, 2)} ms  ratio ${fmt(result.step_ratio_channels_last)}${spread('step_channels_last')}`);
  console.log(`    ... and threads waiting passively as ours torch ${fmt(result.torch_step_channels_last_passive_ms, 2)} ms  ratio ${fmt(result.step_ratio_channels_last_passive)}${spread('step_channels_last_passive')}`);
  console.log(`  op overhead (add of 4 floats)  ours ${fmt(result.op_overhead_us, 2)} us  torch ${fmt(result.torch_op_overhead_us, 2)} us  ratio ${fmt(result.op_overhead_ratio)}${spread('op_overhead')} (lower is better; ours in tidy())`);
  console.log(`    the same in CPU time per call        ours ${fmt(result.op_overhead_cpu_us, 2)} us  torch ${fmt(result.torch_op_overhead_cpu_us, 2)} us  ratio ${fmt(result.op_overhead_cpu_ratio)}${spread('op_overhead_cpu')}`);
  if (profile !== null) printStepProfile(profile);
  return 0;
}

function printStepProfile(profile: StepProfile): void {
  console.log('  one small-CNN step, ours (in ops = inside native.opCall; outside = JS, scopes, single native calls):');
  for (const p of profile.phases) {
    console.log(
      `    ${p.phase.padEnd(15)} wall ${p.wall_ms.toFixed(2).padStart(7)} ms  in ${String(p.op_calls).padStart(4)} ops ${p.in_ops_ms.toFixed(2).padStart(7)} ms  outside ${p.outside_ms.toFixed(2).padStart(7)} ms`,
    );
  }
  console.log(`    slowest operators: ${profile.top_ops.map((o) => `${o.op} ${o.totalMs.toFixed(2)} ms/${o.calls}`).join(', ')}`);
}
