// Command entry points of the training area: `plsc train`, `plsc reshard` and `plsc demo`.
// libtorch and the trainer are loaded only once the arguments are valid (so --help answers at once).
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { formatBytes, shellQuote, shown } from '../cli-kit/format.js';
import { UsageError, integerFlag, numberFlag, oneOf, required, runCommand } from '../cli-kit/args.js';
import { withStopSignals } from '../cli-kit/signals.js';
import type { TrainSummary } from './entry.js';
import type { TrainConfig } from '../config/train-config.js';
import type { DemoOptions, DemoResult } from './demo.js';
import { CLASS_STORAGES } from '../config/class-storage.js';

function command(...words: string[]): string {
  return words.map(shellQuote).join(' ');
}

function formatSeconds(seconds: number): string {
  return seconds < 120 ? `${seconds.toFixed(1)} s` : `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

// ---------------------------------------------------------------------------------------------
// plsc train

export const TRAIN_USAGE = `usage: plsc train --config file.yaml [--set key=value ...] [--nproc N] [--max-restarts R]

  --config PATH     YAML file with the Entry setters' keys (classNum, lossType, model, dataset, ...)  (required)
  --set key=value   override one key (repeatable; the value is YAML: 0.1, true, [1, 0.5, 0], null;
                    nested keys with dots: dataset.imagesPerClass=8)
  --nproc N         start N local workers (same as --set workers=N); ignored under a launcher
  --max-restarts R  with --nproc: start the workers again after one fails, up to R times, resuming
                    from the newest verified checkpoint (same as --set maxRestarts=R)

Under plsc launch (or torchrun, a Kubernetes / Slurm job script: RANK and WORLD_SIZE set) this
process joins the group as one worker. Otherwise, with --nproc N > 1 or 'workers: N' in the config,
it starts N workers on this machine itself, the way torch.multiprocessing.spawn does.

  plsc train --config examples/synthetic-arcface.yaml --nproc 2
  plsc launch --nproc-per-node 2 -- plsc train --config examples/synthetic-arcface.yaml
  (without plsc on PATH: npx plsc launch --nproc-per-node 2 -- npx plsc train --config ...,
   or node bin/plsc.js launch --nproc-per-node 2 -- node bin/plsc.js train --config ...)

Resume with --set resume=latest (the newest checkpoint in checkpointDir) or --set resume=DIR, with
any worker count: the FC shards are re-split when it differs.`;

/** The closing lines of a training run: losses and where each product went. */
export function trainingReport(summary: TrainSummary, config: TrainConfig): string[] {
  const lines: string[] = [];
  const losses = summary.losses;
  const steps = losses.length === 0 ? 'no steps run' : `${summary.stepsRun} steps run (now at step ${summary.finalStep})`;
  lines.push(`plsc train: done, ${steps} on ${summary.worldSize} worker${summary.worldSize === 1 ? '' : 's'}, ${summary.imagesPerSecond.toFixed(1)} img/s`);
  if (losses.length > 0) {
    lines.push(`  loss        ${(losses[0] as number).toFixed(4)} -> ${(losses[losses.length - 1] as number).toFixed(4)} (first -> last step of this run)`);
  }
  for (const v of summary.validation) lines.push(`  validation  ${v.target}: accuracy ${v.accuracy.toFixed(4)} ± ${v.std.toFixed(4)} (${v.pairs} pairs)`);
  if (summary.lastCheckpoint !== null) lines.push(`  checkpoint  ${shown(summary.lastCheckpoint)}  (all: ${shown(config.checkpointDir)})`);
  if (summary.modelPath !== null) lines.push(`  model       ${shown(summary.modelPath)}`);
  if (summary.metricsPath !== null) lines.push(`  metrics     ${shown(summary.metricsPath)}`);
  if (summary.reportPath !== null) lines.push(`  report      ${shown(summary.reportPath)}`);
  if (summary.lastCheckpoint !== null) {
    lines.push(`next: ${command('plsc', 'export', '--checkpoint', shown(summary.lastCheckpoint), '--out', shown(join(config.modelSaveDir, 'model.onnx')), '--dynamic-batch')}`);
  }
  return lines;
}

/** `plsc train --config file.yaml [--set key=value ...] [--nproc N]`. 0: trained; 1: training failed; 2: usage or config error. */
export async function trainCommand(argv: string[]): Promise<number> {
  const options = {
    config: { type: 'string', short: 'c' },
    set: { type: 'string', multiple: true },
    nproc: { type: 'string' },
    'max-restarts': { type: 'string' },
  } as const;
  return runCommand({ name: 'train', usage: TRAIN_USAGE, options }, argv, async ({ values }) => {
    const configPath = required(values.config, 'config');
    const nproc = integerFlag(values.nproc, 'nproc', 1);
    const maxRestarts = integerFlag(values['max-restarts'], 'max-restarts', 0);
    const { loadConfigFile } = await import('../config/train-config.js');
    const { readDistributedEnv } = await import('../distributed/env.js');
    let config: TrainConfig;
    let env;
    try {
      if (!existsSync(configPath)) throw new Error(`${resolve(configPath)}: no such config file`);
      config = loadConfigFile(configPath, [...(values.set ?? []), ...(nproc !== undefined ? [`workers=${nproc}`] : []), ...(maxRestarts !== undefined ? [`maxRestarts=${maxRestarts}`] : [])]);
      env = readDistributedEnv();
    } catch (error) {
      throw new UsageError(error instanceof Error ? error.message : String(error), false);
    }

    const { summarize, trainInLocalWorkers, TrainingStopped } = await import('./entry.js');
    let summary: TrainSummary;
    let printReport = true;
    if (env === null && config.workers > 1) {
      try {
        summary = await withStopSignals((signal) => trainInLocalWorkers(config, { signal }));
      } catch (error) {
        // The same exit code as plsc launch: 130 after Ctrl-C.
        if (!(error instanceof TrainingStopped)) throw error;
        console.error(`plsc train: ${error.message}`);
        return error.exitCode;
      }
    } else {
      if (env !== null) (await import('../distributed/lifeline.js')).watchLauncher();
      if (env !== null && nproc !== undefined && nproc !== env.worldSize && env.rank === 0) {
        console.error(`plsc train: --nproc ${nproc} ignored: this process is rank ${env.rank} of ${env.worldSize} started by a launcher`);
      }
      const { Trainer } = await import('./trainer.js');
      const trainer = await Trainer.create(config);
      try {
        summary = summarize(await trainer.train());
      } finally {
        trainer.group.destroy();
      }
      printReport = summary.rank === 0;
    }
    if (printReport) for (const line of trainingReport(summary, config)) console.log(line);
    if (summary.interrupted) {
      if (printReport) console.error(`plsc train: interrupted by SIGINT after step ${summary.finalStep}; resume with --set resume=latest`);
      return 130;
    }
    return 0;
  });
}

// ---------------------------------------------------------------------------------------------
// plsc reshard

export const RESHARD_USAGE = `usage: plsc reshard --checkpoint DIR --world-size M --out DIR [--storage DTYPE]

  --checkpoint DIR   a step-XXXXXXXX checkpoint, or a checkpoint directory (its newest step)  (required)
  --world-size M     workers the copy is split for                                          (required)
  --out DIR          where the re-sharded copy goes (must differ from --checkpoint)         (required)
  --storage DTYPE    float32, bfloat16 or float16: the dtype of the copy's class weights and
                     momentum (default: the checkpoint's; to 16 bits rounds to nearest even)

Writes a copy of the checkpoint whose FC shards (class weights and their momentum) are split for M
workers, streamed a tile of rows at a time; backbone and optimizer state are copied as they are.
Resuming with another worker count or class storage does this by itself; use this to prepare a
checkpoint offline (e.g. for another cluster).`;

function describeShards(rows: readonly { rank: number; rows: number }[]): string {
  const counts = rows.map((r) => r.rows);
  if (counts.length <= 8) return `${counts.length} shard${counts.length === 1 ? '' : 's'} of ${counts.join(', ')} classes`;
  return `${counts.length} shards of ${Math.min(...counts)} to ${Math.max(...counts)} classes (${counts.slice(0, 4).join(', ')}, ..., ${counts[counts.length - 1]})`;
}

/** `plsc reshard --checkpoint DIR --world-size M --out DIR`. 0: written; 1: failed; 2: usage error. */
export async function reshardCommand(argv: string[]): Promise<number> {
  const options = {
    checkpoint: { type: 'string' },
    'world-size': { type: 'string' },
    out: { type: 'string' },
    storage: { type: 'string' },
  } as const;
  return runCommand({ name: 'reshard', usage: RESHARD_USAGE, options }, argv, async ({ values }) => {
    const checkpoint = required(values.checkpoint, 'checkpoint');
    const out = required(values.out, 'out');
    const worldSize = required(integerFlag(values['world-size'], 'world-size', 1), 'world-size');
    const storage = values.storage === undefined ? undefined : oneOf(values.storage, 'storage', CLASS_STORAGES);
    const { reshardCheckpoint } = await import('./checkpoint.js');
    const { readMeta, resolveCheckpointDir, shardSummary } = await import('../checkpoint/format.js');
    const source = resolveCheckpointDir(checkpoint);
    // reshardCheckpoint replaces --out: only ever an earlier checkpoint, never some other directory.
    if (existsSync(out) && !existsSync(join(out, 'meta.json'))) {
      throw new Error(`--out ${resolve(out)} exists and is not a checkpoint; name a new directory (a checkpoint there is replaced)`);
    }
    const before = readMeta(source);
    const beforeShards = shardSummary(source, before);
    const after = reshardCheckpoint(source, worldSize, out, storage === undefined ? {} : { storage });
    const afterShards = shardSummary(out, after);
    console.log(`plsc reshard: ${shown(source)} (step ${before.step}, ${before.numClasses} classes x ${before.embeddingSize}, ${before.lossType}) -> ${shown(out)}`);
    console.log(`  before  ${describeShards(beforeShards)}`);
    console.log(`  after   ${describeShards(afterShards)}`);
    if (after.classStorage !== (before.classStorage ?? 'float32')) console.log(`  storage ${before.classStorage ?? 'float32'} -> ${after.classStorage} (class weights and momentum)`);
    console.log(`resume with ${after.worldSize} worker${after.worldSize === 1 ? '' : 's'}: ${command('plsc', 'train', '--config', 'CONFIG.yaml', '--set', `resume=${shown(out)}`, '--nproc', String(after.worldSize))}`);
    return 0;
  });
}

// ---------------------------------------------------------------------------------------------
// plsc demo

export const DEMO_USAGE = `usage: plsc demo [--out DIR] [--classes N] [--steps N] [--quick] [options]

Trains a real backbone with local workers on built-in synthetic identities (loss dist_arcface: the
class weights are sharded over the workers), saves checkpoints, verifies the backbone on a .bin of
held-out identities before and after training, exports ONNX and the class centres, and prints the
plsc serve command. A few minutes on a 2-core machine.

  --out DIR            output directory (default output/demo); an earlier demo's files there are replaced
  --classes N          training identities (default 10000)
  --images-per-class N (default 4)
  --steps N            optimizer steps (default 200)
  --nproc N            local workers (default 2)
  --model NAME         backbone from src/models (default mobilefacenet; iresnet18 is ~3x slower per image)
  --image-size N       input side in pixels (default 32; 112, the standard face size, has 12x the pixels)
  --batch-size N       images per worker per step (default 64)
  --lr X               learning rate per global batch of 512, PLSC's convention (default 0.1, cosine decay)
  --warmup-steps N     linear lr warmup steps (default 0)
  --pairs N            verification pairs of held-out identities (default 400)
  --storage DTYPE      class weights and momentum of the head: float32 (default), bfloat16, float16
  --quick              a much smaller run (2000 identities, 60 steps of 8 images) to check the pipeline`;

/** `plsc demo`. 0: done; 1: a phase failed; 2: usage error. */
export async function demoCommand(argv: string[]): Promise<number> {
  const options = {
    out: { type: 'string' },
    classes: { type: 'string' },
    'images-per-class': { type: 'string' },
    steps: { type: 'string' },
    nproc: { type: 'string' },
    model: { type: 'string' },
    'image-size': { type: 'string' },
    'batch-size': { type: 'string' },
    lr: { type: 'string' },
    'warmup-steps': { type: 'string' },
    pairs: { type: 'string' },
    storage: { type: 'string' },
    quick: { type: 'boolean' },
  } as const;
  return runCommand({ name: 'demo', usage: DEMO_USAGE, options }, argv, async ({ values }) => {
    const { DEMO_DEFAULTS, QUICK_DEMO, runDemo } = await import('./demo.js');
    const demo: DemoOptions = { ...DEMO_DEFAULTS, ...(values.quick ? QUICK_DEMO : {}) };
    if (values.out !== undefined) demo.out = values.out;
    demo.classes = integerFlag(values.classes, 'classes', 2) ?? demo.classes;
    demo.imagesPerClass = integerFlag(values['images-per-class'], 'images-per-class', 1) ?? demo.imagesPerClass;
    demo.steps = integerFlag(values.steps, 'steps', 1) ?? demo.steps;
    demo.workers = integerFlag(values.nproc, 'nproc', 1) ?? demo.workers;
    if (values.model !== undefined) demo.model = values.model;
    demo.imageSize = integerFlag(values['image-size'], 'image-size', 8) ?? demo.imageSize;
    demo.batchSize = integerFlag(values['batch-size'], 'batch-size', 1) ?? demo.batchSize;
    demo.lr = numberFlag(values.lr, 'lr', { greaterThan: 0 }) ?? demo.lr;
    demo.warmupSteps = integerFlag(values['warmup-steps'], 'warmup-steps', 0) ?? demo.warmupSteps;
    demo.verificationPairs = integerFlag(values.pairs, 'pairs', 10) ?? demo.verificationPairs;
    demo.heldOutClasses = Math.max(demo.heldOutClasses, demo.verificationPairs);
    if (values.storage !== undefined) demo.classStorage = oneOf(values.storage, 'storage', CLASS_STORAGES);
    if (demo.classes < demo.workers) throw new UsageError(`--classes (${demo.classes}) must be at least the number of workers (${demo.workers})`);

    const log = (line: string): void => void console.log(`plsc demo: ${line}`);
    const result: DemoResult = await withStopSignals((signal) => runDemo(demo, { log, signal }));
    for (const line of demoSummary(result)) console.log(line);
    return 0;
  });
}

/** The demo's closing summary. */
export function demoSummary(result: DemoResult): string[] {
  const { loss, verification, seconds, training } = result;
  const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
  const serve = command('plsc', 'serve', '--model', shown(result.export.modelPath), '--centers', shown(result.export.centersPath));
  return [
    '',
    `plsc demo: done in ${formatSeconds(seconds.total)} (training ${formatSeconds(seconds.training)}, verification .bin ${formatSeconds(seconds.verificationBin)}, ` +
      `verification ${formatSeconds(seconds.verification)}, export ${formatSeconds(seconds.export)})`,
    `  trained     ${result.options.model} ${result.options.imageSize}x${result.options.imageSize} -> ${result.config.embSize}-d, dist_arcface over ${result.config.classNum} identities${result.config.classStorage === 'float32' ? '' : ` (${result.config.classStorage} class storage)`}, ` +
      `${training.stepsRun} steps x ${training.worldSize} workers x ${result.config.trainBatchSize} images, ${training.imagesPerSecond.toFixed(1)} img/s`,
    `  loss        ${loss.first.toFixed(3)} -> ${loss.last.toFixed(3)} (first -> last step); mean of the first ${loss.window} steps ${loss.firstMean.toFixed(3)}, of the last ${loss.window} ${loss.lastMean.toFixed(3)}`,
    `  verification on ${verification.pairs} pairs of ${verification.identities} held-out identities: accuracy ${pct(verification.after.accuracy)} ± ${pct(verification.after.std)} ` +
      `(untrained network: ${pct(verification.before.accuracy)})`,
    `  checkpoints ${shown(result.checkpointDir)}  (last: ${shown(result.checkpoint)})`,
    `  model       ${shown(result.modelPath)}`,
    `  metrics     ${shown(result.metricsPath)}`,
    `  report      ${shown(result.reportPath)}`,
    `  .bin        ${shown(verification.path)}`,
    `  onnx        ${shown(result.export.modelPath)} (${formatBytes(result.export.modelBytes)}, input [N, ${result.export.inputShape.join(', ')}]; onnxruntime vs libtorch max abs diff ${result.export.parity.maxAbsDiff.toExponential(1)})`,
    `  centers     ${shown(result.export.centersPath)} (${formatBytes(result.export.centersBytes)})`,
    '',
    'serve it:',
    `  ${serve}`,
  ];
}
