// `plsc bench train`: images per second of the full training step (plsc's Trainer: synthetic
// identities, data-parallel backbone, dist_arcface head sharded over the workers, SGD) with its
// per-phase breakdown, and, in the same run, the backbone-only step (forward, mean(e^2), backward,
// SGD momentum) timed in plsc and in PyTorch (bench/torch_train.py, same architecture, same
// threads per process, as many processes at once as workers). PyTorch's malloc keeps freed memory
// by default (`--torch-malloc cached`), as plsc's caching CPU allocator does; `--torch-malloc default`
// measures stock malloc, which unmaps large blocks every step. Prints measurements; asserts nothing.
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { backendInfo, launch, describeOutcome, type PhaseTimes } from '../src/index.js';
import { median, runTorchPeer } from './peer.js';
import { measureBackboneRound, measureWorker, type BackboneRoundNumbers, type TrainBenchSettings, type WorkerTrainNumbers } from './train-measure.js';

export const TRAIN_BENCH_MODELS = ['iresnet18', 'mobilefacenet', 'mobilefacenet-s1', 'iresnet34', 'iresnet50', 'iresnet100'] as const;
/** The issue's target: our backbone step takes at most this fraction of PyTorch's time. */
export const BACKBONE_TARGET_RATIO = 0.9;
const WARMUP_STEPS = 2;

type TorchMalloc = 'cached' | 'default';

interface TrainBenchArgs extends TrainBenchSettings {
  json: boolean;
  torchMalloc: TorchMalloc;
  /** Rounds of (plsc backbone-only step, then PyTorch's): the ratio is the median of the per-round ratios. */
  rounds: number;
}

interface TorchTrainNumbers {
  version: string;
  threads: number;
  step_ms: number;
  per_process_step_ms: number[];
  img_per_s: number;
  malloc: TorchMalloc;
}

export interface TrainBenchResult {
  model: string;
  nproc: number;
  batch: number;
  image_size: number;
  classes: number;
  warmup_steps: number;
  steps: number;
  threads_per_worker: number;
  libtorch: string;
  /** Full training step, all workers together. */
  img_per_s: number;
  /** Sum of the phases: mean ms of one full training step. */
  step_ms: number;
  /** Mean ms per step (rank 0): data wait, backbone forward, head forward, backward (head and backbone), gradient all-reduce, optimizer. */
  phases: PhaseTimes;
  final_loss: number | null;
  /** Median over the rounds of plsc's backbone-only step. */
  backbone_step_ms: number;
  /** Rank by rank, first round. */
  backbone_step_ms_per_rank: number[];
  /** plsc's and PyTorch's backbone-only step of each round, measured one right after the other. */
  rounds: { ours_ms: number; torch_ms: number | null }[];
  backbone_img_per_s: number;
  torch_version: string | null;
  /** How the peer's malloc treated freed memory ('cached' | 'default'); null without PyTorch. */
  torch_malloc: TorchMalloc | null;
  torch_backbone_step_ms: number | null;
  /** PyTorch's backbone-only step, all processes together; null without PyTorch. */
  torch_img_per_s: number | null;
  /** Median over the rounds of ours / PyTorch backbone step time (lower is better; target <= 0.9). */
  backbone_step_ratio: number | null;
  target_ratio: number;
}

function parseArgs(argv: string[]): TrainBenchArgs {
  const args: TrainBenchArgs = { model: 'iresnet18', nproc: 1, batch: 32, imageSize: 112, steps: 5, classes: 10000, warmupSteps: WARMUP_STEPS, json: false, torchMalloc: 'cached', rounds: 3 };
  const integerFlags: Record<string, 'nproc' | 'batch' | 'imageSize' | 'steps' | 'classes' | 'rounds'> = {
    '--rounds': 'rounds',
    '--nproc': 'nproc',
    '--batch': 'batch',
    '--image-size': 'imageSize',
    '--steps': 'steps',
    '--classes': 'classes',
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] as string;
    if (flag === '--json') {
      args.json = true;
      continue;
    }
    const value = argv[i + 1];
    if (flag !== '--model' && flag !== '--torch-malloc' && integerFlags[flag] === undefined) {
      throw new Error(
        `plsc bench train: unknown option ${flag} (options: --model ${TRAIN_BENCH_MODELS.join('|')}, --nproc, --batch, --image-size, --steps, --classes, --rounds, --torch-malloc cached|default, --json)`,
      );
    }
    if (value === undefined) throw new Error(`plsc bench train: ${flag} needs a value`);
    i++;
    if (flag === '--model') {
      if (!(TRAIN_BENCH_MODELS as readonly string[]).includes(value)) throw new Error(`plsc bench train: --model must be one of ${TRAIN_BENCH_MODELS.join(', ')}, got ${JSON.stringify(value)}`);
      args.model = value;
      continue;
    }
    if (flag === '--torch-malloc') {
      if (value !== 'cached' && value !== 'default') throw new Error(`plsc bench train: --torch-malloc must be cached or default, got ${JSON.stringify(value)}`);
      args.torchMalloc = value;
      continue;
    }
    const number = Number(value);
    if (!Number.isInteger(number) || number < 1) throw new Error(`plsc bench train: ${flag} must be a positive integer, got ${JSON.stringify(value)}`);
    args[integerFlags[flag] as 'nproc'] = number;
  }
  if (args.imageSize < 16) throw new Error(`plsc bench train: --image-size must be at least 16, got ${args.imageSize}`);
  return args;
}

async function measureOurs(settings: TrainBenchSettings & { backboneOnly: true }): Promise<BackboneRoundNumbers>;
async function measureOurs(settings: TrainBenchSettings): Promise<WorkerTrainNumbers>;
async function measureOurs(settings: TrainBenchSettings): Promise<WorkerTrainNumbers | BackboneRoundNumbers> {
  if (settings.nproc === 1) return settings.backboneOnly === true ? measureBackboneRound(settings) : measureWorker(settings);
  const scratch = mkdtempSync(join(tmpdir(), 'plsc-bench-train-'));
  const resultPath = join(scratch, 'result.json');
  try {
    const result = await launch({
      nprocPerNode: settings.nproc,
      command: process.execPath,
      args: [fileURLToPath(new URL('./train-worker.js', import.meta.url))],
      env: { PLSC_BENCH_TRAIN: JSON.stringify(settings), PLSC_BENCH_TRAIN_RESULT: resultPath },
      onOutput: ({ rank, text }) => process.stderr.write(`[rank ${rank}] ${text}\n`),
    });
    if (result.exitCode !== 0) {
      const how = result.failure === null ? `was interrupted (${result.aborted})` : `failed: rank ${result.failure.rank} ${describeOutcome(result.failure)}`;
      throw new Error(`plsc bench train with ${settings.nproc} workers ${how}`);
    }
    if (!existsSync(resultPath)) throw new Error(`plsc bench train: rank 0 wrote no result to ${resultPath}`);
    return JSON.parse(readFileSync(resultPath, 'utf8')) as WorkerTrainNumbers | BackboneRoundNumbers;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

const TRAIN_USAGE = `usage: plsc bench train [--model ${TRAIN_BENCH_MODELS.join('|')}] [--nproc 1] [--batch 32]
                        [--image-size 112] [--steps 5] [--classes 10000] [--rounds 3]
                        [--torch-malloc cached|default] [--json]

Images per second of the full training step (plsc's Trainer) with its per-phase breakdown, and the
backbone-only step timed in plsc and in PyTorch (bench/torch_train.py) in the same run.`;

export async function benchTrain(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(TRAIN_USAGE);
    return 0;
  }
  const { json, torchMalloc, rounds: roundCount, ...settings } = parseArgs(argv);
  const ours = await measureOurs(settings);
  const runPeer = (threads: number): TorchTrainNumbers | null =>
    runTorchPeer<TorchTrainNumbers>(
      'torch_train.py',
      [settings.model, settings.batch, settings.imageSize, threads, settings.warmupSteps, settings.steps, settings.nproc, torchMalloc].map(String),
      3_600_000,
    );
  // This VM's speed drifts with its neighbours' load over minutes: each round times plsc and then
  // PyTorch right after it, and the ratio is the median of the rounds' ratios.
  let peer = runPeer(ours.threads);
  const rounds: { ours_ms: number; torch_ms: number | null }[] = [{ ours_ms: ours.backboneStepMs, torch_ms: peer?.step_ms ?? null }];
  for (let round = 1; round < roundCount && peer !== null; round++) {
    const again = await measureOurs({ ...settings, backboneOnly: true });
    peer = runPeer(ours.threads);
    rounds.push({ ours_ms: again.backboneStepMs, torch_ms: peer?.step_ms ?? null });
  }
  const oursMs = median(rounds.map((r) => r.ours_ms));
  const torchRounds = rounds.filter((r): r is { ours_ms: number; torch_ms: number } => r.torch_ms !== null);
  const torchMs = torchRounds.length > 0 ? median(torchRounds.map((r) => r.torch_ms)) : null;
  const ratio = torchRounds.length > 0 ? median(torchRounds.map((r) => r.ours_ms / r.torch_ms)) : null;
  const phases = ours.phases;
  const stepMs = phases.data + phases.forward + phases.head + phases.backward + phases.comm + phases.optimizer;
  const result: TrainBenchResult = {
    model: settings.model,
    nproc: settings.nproc,
    batch: settings.batch,
    image_size: settings.imageSize,
    classes: settings.classes,
    warmup_steps: settings.warmupSteps,
    steps: settings.steps,
    threads_per_worker: ours.threads,
    libtorch: backendInfo().torchVersion,
    img_per_s: ours.imagesPerSecond,
    step_ms: stepMs,
    phases,
    final_loss: ours.losses.length > 0 ? (ours.losses[ours.losses.length - 1] as number) : null,
    backbone_step_ms: oursMs,
    backbone_step_ms_per_rank: ours.backboneStepMsPerRank,
    rounds,
    backbone_img_per_s: (settings.nproc * settings.batch * 1000) / oursMs,
    torch_version: peer?.version ?? null,
    torch_malloc: peer?.malloc ?? null,
    torch_backbone_step_ms: torchMs,
    torch_img_per_s: torchMs === null ? null : (settings.nproc * settings.batch * 1000) / torchMs,
    backbone_step_ratio: ratio,
    target_ratio: BACKBONE_TARGET_RATIO,
  };
  if (json) {
    console.log(JSON.stringify(result));
    return 0;
  }
  const fmt = (v: number | null, digits = 1): string => (v === null ? 'n/a' : v.toFixed(digits));
  const workers = `${settings.nproc} worker${settings.nproc > 1 ? 's' : ''} x ${ours.threads} thread${ours.threads > 1 ? 's' : ''}`;
  console.log(
    `train benchmark: ${settings.model}, ${workers}, batch ${settings.batch}/worker, ${settings.imageSize}x${settings.imageSize}, ` +
      `${settings.classes} classes (dist_arcface), ${settings.steps} steps after ${settings.warmupSteps} warm-up; libtorch ${result.libtorch}, PyTorch ${result.torch_version ?? 'absent'}`,
  );
  console.log(`  full training step (plsc Trainer)  ${fmt(result.img_per_s)} img/s   ${fmt(stepMs)} ms/step`);
  console.log(
    `    data ${fmt(phases.data)} | backbone fwd ${fmt(phases.forward)} | head fwd ${fmt(phases.head)} | backward (head + backbone) ${fmt(phases.backward)} | ` +
      `comm ${fmt(phases.comm)} | optimizer ${fmt(phases.optimizer)}  (ms, rank 0)`,
  );
  const verdict = result.backbone_step_ratio === null ? '' : result.backbone_step_ratio <= BACKBONE_TARGET_RATIO ? '  meets target' : '  misses target';
  console.log(
    `  backbone-only step (fwd + bwd + SGD, per worker)  plsc ${fmt(result.backbone_step_ms)} ms (${fmt(result.backbone_img_per_s)} img/s)   ` +
      `PyTorch (malloc ${torchMalloc}) ${fmt(result.torch_backbone_step_ms)} ms (${fmt(result.torch_img_per_s)} img/s)   ` +
      `ratio ${fmt(result.backbone_step_ratio, 2)} (target <= ${BACKBONE_TARGET_RATIO}, lower is better)${verdict}`,
  );
  console.log(`    rounds (plsc / PyTorch ms, one right after the other): ${rounds.map((r) => `${fmt(r.ours_ms, 0)} / ${fmt(r.torch_ms, 0)}`).join(', ')}`);
  return 0;
}
