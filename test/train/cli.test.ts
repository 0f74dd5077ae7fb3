// plsc train / reshard / demo as real processes: YAML config with overrides and local workers,
// offline re-sharding and resuming from the result, the demo end to end, and plsc launch around
// plsc train forming one group.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensorsHeader } from '../../src/torch/safetensors.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const plscBin = join(repoRoot, 'bin', 'plsc.js');
const tinyBackbone = `${fileURLToPath(new URL('./fixtures/tiny-backbone.js', import.meta.url))}#createTinyBackbone`;

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `node bin/plsc.js ...args` with one libtorch thread per process (the tests share 2 cores). */
function plsc(args: readonly string[], timeoutMs = 120_000): Promise<RunResult> {
  const child = spawn(process.execPath, [plscBin, ...args], { cwd: repoRoot, env: { ...process.env, PLSC_NUM_THREADS: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

function scratch(): string {
  return mkdtempSync(join(tmpdir(), 'plsc-train-cli-'));
}

/** A tiny dist_arcface config on 60 synthetic identities (the fixture CNN, 16x16 images). */
function writeTinyConfig(dir: string, extra = ''): string {
  const path = join(dir, 'tiny.yaml');
  writeFileSync(
    path,
    `# tiny test config
dataset:
  type: synthetic
  numClasses: 60
  imagesPerClass: 4
  seed: 3
lossType: dist_arcface
model: ${tinyBackbone}
imageSize: 16
embSize: 32
trainBatchSize: 8
trainSteps: 4
lr: 1.0
scale: 16
withTest: false
logPeriod: 2
checkpointDir: ${join(dir, 'checkpoints')}
modelSaveDir: ${join(dir, 'output')}
${extra}`,
  );
  return path;
}

function metricsSteps(path: string): number[] {
  return readFileSync(path, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { type?: string; step: number })
    .filter((r) => r.type === undefined)
    .map((r) => r.step);
}

function shardRows(dir: string, worldSize: number): number[] {
  return Array.from({ length: worldSize }, (_, r) => {
    const header = readSafetensorsHeader(join(dir, `fc-rank-${r}-of-${worldSize}.safetensors`));
    return header.entries.find((e) => e.name === 'weight')?.shape[0] ?? -1;
  });
}

test('plsc train: usage and config errors exit 2 with a message naming the file and field', async () => {
  const dir = scratch();
  try {
    const missing = await plsc(['train']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--config is required/);
    const config = writeTinyConfig(dir);
    const badSet = await plsc(['train', '--config', config, '--set', 'trainBatchSize=0']);
    assert.equal(badSet.code, 2);
    assert.match(badSet.stderr, /tiny\.yaml: trainBatchSize: must be a positive integer, got 0/);
    const unknown = await plsc(['train', '--config', config, '--set', 'learningRate=0.1']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /learningRate: unknown setting/);
    const badNproc = await plsc(['train', '--config', config, '--nproc', 'two']);
    assert.equal(badNproc.code, 2);
    assert.match(badNproc.stderr, /--nproc must be an integer >= 1, got 'two'/);
    const help = await plsc(['train', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /plsc launch --nproc-per-node 2 -- plsc train --config/);
    // The same conventions in reshard and demo (answered before anything is loaded or written).
    const noWorld = await plsc(['reshard', '--checkpoint', dir, '--out', join(dir, 'x')]);
    assert.equal(noWorld.code, 2);
    assert.match(noWorld.stderr, /plsc reshard: --world-size is required\n\nusage: plsc reshard/);
    const badFlag = await plsc(['demo', '--clases', '10']);
    assert.equal(badFlag.code, 2);
    assert.match(badFlag.stderr, /plsc demo: Unknown option '--clases'/);
    const badLr = await plsc(['demo', '--lr=-1', '--out', join(dir, 'demo')]);
    assert.equal(badLr.code, 2);
    assert.match(badLr.stderr, /--lr must be a positive number, got '-1'/);
    const tooFew = await plsc(['demo', '--classes', '2', '--nproc', '3', '--out', join(dir, 'demo')]);
    assert.equal(tooFew.code, 2);
    assert.match(tooFew.stderr, /--classes \(2\) must be at least the number of workers \(3\)/);
    assert.ok(!existsSync(join(dir, 'demo')), 'a usage error wrote the demo directory');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('plsc train --config --set --nproc 2, then plsc reshard 2 -> 3 and resuming from the copy', async () => {
  const dir = scratch();
  try {
    const config = writeTinyConfig(dir);
    // A fresh run replaces the metrics of an earlier one in the same output directory.
    mkdirSync(join(dir, 'output'), { recursive: true });
    writeFileSync(join(dir, 'output', 'metrics.jsonl'), '{"step":99,"epoch":0,"loss":1,"lr":0.1,"img_per_s":1,"accuracy":null,"time":"2020-01-01T00:00:00Z"}\n');
    const run = await plsc(['train', '--config', config, '--set', 'trainSteps=6', '--set', 'dataset.imagesPerClass=3', '--nproc', '2']);
    assert.equal(run.code, 0, run.stderr);
    const all = `${run.stdout}\n${run.stderr}`;
    assert.match(all, /\[rank 0\] training .* head on 2 worker\(s\)[\s\S]*?\[rank 0\] dataset: .*[\s\S]*?\[rank 0\] schedule: \d+ steps\/epoch, 6 steps = .*global batch 16 \(8 x 2\)[\s\S]*?\[rank 0\] head: 60 classes in 2 shard\(s\), 30 classes/);
    assert.match(run.stdout, /plsc train: done, 6 steps run \(now at step 6\) on 2 workers/);
    const loss = /loss +(\S+) -> (\S+) \(first -> last step/.exec(run.stdout);
    assert.ok(loss && Number.isFinite(Number(loss[1])) && Number.isFinite(Number(loss[2])), run.stdout);
    const checkpoint = join(dir, 'checkpoints', 'step-00000006');
    for (const [label, path] of [
      ['checkpoint', checkpoint],
      ['model', join(dir, 'output', 'backbone.safetensors')],
      ['metrics', join(dir, 'output', 'metrics.jsonl')],
      ['report', join(dir, 'output', 'training-report.html')],
    ] as const) {
      assert.match(run.stdout, new RegExp(`${label} +${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`), `${label} line`);
      assert.ok(existsSync(path), path);
    }
    assert.deepEqual(metricsSteps(join(dir, 'output', 'metrics.jsonl')), [2, 4, 6]);
    assert.deepEqual(shardRows(checkpoint, 2), [30, 30]);
    assert.match(run.stdout, /next: plsc export --checkpoint .*step-00000006 --out .*model\.onnx --dynamic-batch/);

    // Offline re-shard of the checkpoint directory (its newest step) for 3 workers.
    const resharded = join(dir, 'resharded');
    const reshard = await plsc(['reshard', '--checkpoint', join(dir, 'checkpoints'), '--world-size', '3', '--out', resharded]);
    assert.equal(reshard.code, 0, reshard.stderr);
    assert.match(reshard.stdout, /step 6, 60 classes x 32, dist_arcface/);
    assert.match(reshard.stdout, /before +2 shards of 30, 30 classes/);
    assert.match(reshard.stdout, /after +3 shards of 20, 20, 20 classes/);
    assert.match(reshard.stdout, /resume with 3 workers: plsc train --config CONFIG\.yaml --set resume=.*resharded --nproc 3/);
    assert.deepEqual(shardRows(resharded, 3), [20, 20, 20]);
    const meta = JSON.parse(readFileSync(join(resharded, 'meta.json'), 'utf8')) as { worldSize: number; step: number };
    assert.equal(meta.worldSize, 3);
    assert.equal(meta.step, 6);

    // The re-sharded copy resumes in one process (its 3 shards re-split again for 1 worker).
    const resumed = await plsc(['train', '--config', config, '--set', `resume=${resharded}`, '--set', 'trainSteps=8', '--set', 'dataset.imagesPerClass=3']);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /plsc train: done, 2 steps run \(now at step 8\) on 1 worker/);
    assert.deepEqual(shardRows(join(dir, 'checkpoints', 'step-00000008'), 1), [60]);
    // A resumed run appends to the metrics of the run it continues.
    assert.deepEqual(metricsSteps(join(dir, 'output', 'metrics.jsonl')), [2, 4, 6, 8]);

    const bad = await plsc(['reshard', '--checkpoint', join(dir, 'nowhere'), '--world-size', '2', '--out', join(dir, 'x')]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /nowhere: no such directory/);
    const notCheckpoint = await plsc(['reshard', '--checkpoint', checkpoint, '--world-size', '2', '--out', join(dir, 'output')]);
    assert.equal(notCheckpoint.code, 1);
    assert.match(notCheckpoint.stderr, /output exists and is not a checkpoint/);
    assert.ok(existsSync(join(dir, 'output', 'backbone.safetensors')), 'the directory is left alone');
    const tooMany = await plsc(['reshard', '--checkpoint', checkpoint, '--world-size', '61', '--out', join(dir, 'x')]);
    assert.equal(tooMany.code, 1);
    assert.match(tooMany.stderr, /60 classes cannot be split over 61 workers/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('plsc launch --nproc-per-node 2 -- node bin/plsc.js train: both workers join one group', async () => {
  const dir = scratch();
  try {
    // workers: 5 in the file must not matter under a launcher: the launcher decides.
    const config = writeTinyConfig(dir, 'workers: 5\n');
    const run = await plsc(['launch', '--nproc-per-node', '2', '--', process.execPath, plscBin, 'train', '--config', config]);
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    const all = `${run.stdout}\n${run.stderr}`;
    assert.match(all, /\[rank 0\] training .* head on 2 worker\(s\)[\s\S]*?\[rank 0\] dataset: .*[\s\S]*?\[rank 0\] schedule: \d+ steps\/epoch, 4 steps = .*global batch 16 \(8 x 2\)[\s\S]*?\[rank 0\] head: 60 classes in 2 shard\(s\), 30 classes/);
    // One report, from rank 0.
    assert.match(run.stdout, /\[rank 0\] plsc train: done, 4 steps run \(now at step 4\) on 2 workers/);
    assert.doesNotMatch(all, /\[rank 1\] plsc train: done/);
    const checkpoint = join(dir, 'checkpoints', 'step-00000004');
    assert.deepEqual(shardRows(checkpoint, 2), [30, 30]);
    const meta = JSON.parse(readFileSync(join(checkpoint, 'meta.json'), 'utf8')) as { worldSize: number };
    assert.equal(meta.worldSize, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('plsc demo --quick: trains on 2 workers, verifies, exports, prints the serve command', async () => {
  const dir = scratch();
  const out = join(dir, 'demo');
  try {
    const run = await plsc(['demo', '--quick', '--out', out], 180_000);
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    const text = run.stdout;
    assert.match(`${text}\n${run.stderr}`, /\[rank 0\] training mobilefacenet \+ dist_arcface head on 2 worker\(s\)[\s\S]*\[rank 0\] head: 2000 classes in 2 shard\(s\), 1000 classes/);
    const loss = /loss +(\S+) -> (\S+) \(first -> last step\)/.exec(text);
    assert.ok(loss, text);
    assert.ok(Number.isFinite(Number(loss[1])) && Number.isFinite(Number(loss[2])));
    const accuracy = /accuracy (\S+)% ± (\S+)% \(untrained network: (\S+)%\)/.exec(text);
    assert.ok(accuracy, text);
    for (const value of accuracy.slice(1, 4)) assert.ok(Number(value) >= 0 && Number(value) <= 100, value);

    const checkpoints = readdirSync(join(out, 'checkpoints')).filter((n) => n.startsWith('step-'));
    assert.ok(checkpoints.length >= 1);
    const last = join(out, 'checkpoints', checkpoints.sort().at(-1) as string);
    assert.ok(existsSync(join(last, 'fc-rank-0-of-2.safetensors')) && existsSync(join(last, 'fc-rank-1-of-2.safetensors')));
    for (const name of ['backbone.safetensors', 'metrics.jsonl', 'training-report.html', 'verification.bin', 'model.onnx', 'centers.safetensors']) {
      assert.ok(existsSync(join(out, name)), name);
    }
    // The held-out verification result is recorded next to the loss curve.
    const records = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type?: string; results?: unknown[] });
    assert.equal(records.filter((r) => r.type === 'validation').length, 1);
    assert.match(readFileSync(join(out, 'training-report.html'), 'utf8'), /held-out synthetic/);
    const centers = readSafetensorsHeader(join(out, 'centers.safetensors')).entries.find((e) => e.name === 'centers');
    assert.deepEqual(centers?.shape, [2000, 128]);
    const serve = /^ +plsc serve --model (\S+) --centers (\S+)$/m.exec(text);
    assert.ok(serve, text);
    assert.ok(existsSync(join(repoRoot, serve[1] as string)) || existsSync(serve[1] as string));
    assert.ok(existsSync(join(repoRoot, serve[2] as string)) || existsSync(serve[2] as string));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
