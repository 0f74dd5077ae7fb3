// `plsc bench engine`: GEMM throughput, conv fwd+bwd, a small-CNN training step and the per-op call cost, ours and
// PyTorch's (same thread count) measured in the same run. Prints measurements; asserts nothing.
import { ops as F, tidy, optim, manualSeed, getNumThreads, backendInfo, profileOps, type Tensor, type OpProfileEntry } from '../src/index.js';
import { SmallCnn } from './small-cnn.js';
import { medianMs, runTorchPeer } from './peer.js';

interface EngineNumbers {
  matmul_gflops: number;
  conv_ms: number;
  step_ms: number;
  op_overhead_us: number;
}

/** Calls of the tiny op per timed sample of the op-overhead measurement (the peer uses the same). */
export const OP_OVERHEAD_CALLS = 2000;

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

function measureOurs(repeats: number, withProfile: boolean): { numbers: EngineNumbers; profile: StepProfile | null } {
  manualSeed(0);
  const opOverheadUs = measureOpOverheadUs(repeats);
  const matmulFlops = 2 * 256 * 512 * 100000;
  const [a, b] = [F.randn([256, 512]), F.randn([512, 100000])];
  const matmulMs = medianMs(() => F.mm(a, b).dispose(), 2, repeats);
  a.dispose();
  b.dispose();

  const x = F.randn([32, 64, 56, 56]).requiresGrad_();
  const w = F.randn([64, 64, 3, 3]).requiresGrad_();
  const convMs = medianMs(
    () =>
      tidy(() => {
        F.conv2d(x, w, null, { padding: 1 }).sum().backward();
        x.grad = null;
        w.grad = null;
      }),
    2,
    repeats,
  );
  x.dispose();
  w.dispose();

  const model = new SmallCnn();
  const optimizer = new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
  const images = F.randn([32, 3, 32, 32]);
  const labels = F.randint(0, 10, [32]);
  const stepMs = medianMs(
    () => {
      optimizer.zeroGrad();
      tidy(() => F.crossEntropy(model.call(images), labels).backward());
      optimizer.step();
    },
    3,
    repeats * 4,
  );
  const profile = withProfile ? profileSmallCnnStep(model, optimizer, images, labels) : null;
  optimizer.dispose();
  model.dispose();
  dispose([images, labels]);
  const numbers = { matmul_gflops: matmulFlops / (matmulMs / 1000) / 1e9, conv_ms: convMs, step_ms: stepMs, op_overhead_us: opOverheadUs };
  return { numbers, profile };
}

function dispose(tensors: Tensor[]): void {
  for (const t of tensors) t.dispose();
}

const ENGINE_USAGE = `usage: plsc bench engine [--repeats 5] [--profile] [--json]

GEMM, conv2d fwd+bwd, a small-CNN training step and the per-op call cost, plsc's and PyTorch's
(same thread count) in the same run. --profile splits the small-CNN step by operator.`;

export async function benchEngine(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(ENGINE_USAGE);
    return 0;
  }
  const json = argv.includes('--json');
  const repeatsArg = argv.indexOf('--repeats');
  const repeats = repeatsArg >= 0 ? Number(argv[repeatsArg + 1]) : 5;
  if (!Number.isInteger(repeats) || repeats < 1) throw new Error('--repeats must be a positive integer');
  const threads = getNumThreads();
  const withProfile = argv.includes('--profile');
  const { numbers: ours, profile } = measureOurs(repeats, withProfile);
  const peer = runTorchPeer<EngineNumbers & { threads: number; version: string }>('torch_engine.py', [
    String(threads),
    String(repeats),
    String(OP_OVERHEAD_CALLS),
  ]);
  const result = {
    threads,
    libtorch: backendInfo().torchVersion,
    ...ours,
    torch_version: peer?.version ?? null,
    torch_matmul_gflops: peer?.matmul_gflops ?? null,
    torch_conv_ms: peer?.conv_ms ?? null,
    torch_step_ms: peer?.step_ms ?? null,
    torch_op_overhead_us: peer?.op_overhead_us ?? null,
    matmul_ratio: peer ? ours.matmul_gflops / peer.matmul_gflops : null,
    conv_ratio: peer ? ours.conv_ms / peer.conv_ms : null,
    step_ratio: peer ? ours.step_ms / peer.step_ms : null,
    op_overhead_ratio: peer ? ours.op_overhead_us / peer.op_overhead_us : null,
    ...(profile !== null ? { step_profile: profile } : {}),
  };
  if (json) {
    console.log(JSON.stringify(result));
    return 0;
  }
  const fmt = (v: number | null, digits = 2): string => (v === null ? 'n/a' : v.toFixed(digits));
  console.log(`engine benchmark (${threads} threads, libtorch ${result.libtorch}; PyTorch ${result.torch_version ?? 'absent'})`);
  console.log(`  matmul [256x512]x[512x100000]  ours ${fmt(ours.matmul_gflops, 1)} GFLOP/s  torch ${fmt(result.torch_matmul_gflops, 1)} GFLOP/s  ratio ${fmt(result.matmul_ratio)} (higher is better)`);
  console.log(`  conv2d fwd+bwd [32,64,56,56]   ours ${fmt(ours.conv_ms, 1)} ms  torch ${fmt(result.torch_conv_ms, 1)} ms  ratio ${fmt(result.conv_ratio)} (lower is better)`);
  console.log(`  small CNN train step (b=32)    ours ${fmt(ours.step_ms, 2)} ms  torch ${fmt(result.torch_step_ms, 2)} ms  ratio ${fmt(result.step_ratio)} (lower is better)`);
  console.log(`  op overhead (add of 4 floats)  ours ${fmt(ours.op_overhead_us, 2)} us  torch ${fmt(result.torch_op_overhead_us, 2)} us  ratio ${fmt(result.op_overhead_ratio)} (lower is better; ours in tidy())`);
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
