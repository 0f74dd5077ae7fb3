// `plsc bench engine`: GEMM throughput, conv fwd+bwd, and a small-CNN training step, ours and
// PyTorch's (same thread count) measured in the same run. Prints measurements; asserts nothing.
import { ops as F, tidy, optim, manualSeed, getNumThreads, backendInfo, type Tensor } from '../src/index.js';
import { SmallCnn } from './small-cnn.js';
import { medianMs, runTorchPeer } from './peer.js';

interface EngineNumbers {
  matmul_gflops: number;
  conv_ms: number;
  step_ms: number;
}

function measureOurs(repeats: number): EngineNumbers {
  manualSeed(0);
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
  optimizer.dispose();
  model.dispose();
  dispose([images, labels]);
  return { matmul_gflops: matmulFlops / (matmulMs / 1000) / 1e9, conv_ms: convMs, step_ms: stepMs };
}

function dispose(tensors: Tensor[]): void {
  for (const t of tensors) t.dispose();
}

export async function benchEngine(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  const repeatsArg = argv.indexOf('--repeats');
  const repeats = repeatsArg >= 0 ? Number(argv[repeatsArg + 1]) : 5;
  if (!Number.isInteger(repeats) || repeats < 1) throw new Error('--repeats must be a positive integer');
  const threads = getNumThreads();
  const ours = measureOurs(repeats);
  const peer = runTorchPeer<EngineNumbers & { threads: number; version: string }>('torch_engine.py', [String(threads), String(repeats)]);
  const result = {
    threads,
    libtorch: backendInfo().torchVersion,
    ...ours,
    torch_version: peer?.version ?? null,
    torch_matmul_gflops: peer?.matmul_gflops ?? null,
    torch_conv_ms: peer?.conv_ms ?? null,
    torch_step_ms: peer?.step_ms ?? null,
    matmul_ratio: peer ? ours.matmul_gflops / peer.matmul_gflops : null,
    conv_ratio: peer ? ours.conv_ms / peer.conv_ms : null,
    step_ratio: peer ? ours.step_ms / peer.step_ms : null,
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
  return 0;
}
