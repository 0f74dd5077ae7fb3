// `plsc train --nproc 2 --max-restarts 1` with a worker SIGKILLed at a random step: the group is
// restarted and resumes from the newest verified checkpoint by itself. With a checkpoint every step
// the final weights equal an uninterrupted run's; with sparser checkpoints the run still finishes
// with a falling loss; with no restart left the run fails naming the rank.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSafetensors, listCheckpoints, type Tensor } from '../../src/index.js';
import { runPlsc } from '../distributed/helpers.js';
import { writeTinyConfig } from './helpers.js';

function writeConfig(dir: string, steps: number, checkpointPeriod: number): string {
  return writeTinyConfig(dir, `checkpointPeriod: ${checkpointPeriod}\nmaxLastCheckpointNum: 100\n`, steps);
}

/** A step in [low, high], drawn at random (printed, so a failure can be replayed). */
function randomStep(low: number, high: number): number {
  const step = low + Math.floor(Math.random() * (high - low + 1));
  console.log(`# killing rank 1 at step ${step}`);
  return step;
}

function tensorsOf(path: string): Map<string, number[]> {
  const tensors: Record<string, Tensor> = loadSafetensors(path);
  const values = new Map<string, number[]>();
  for (const [name, tensor] of Object.entries(tensors)) {
    values.set(name, tensor.toArray());
    tensor.dispose();
  }
  return values;
}

function lossesOf(metricsPath: string): Map<number, number> {
  const losses = new Map<number, number>();
  for (const line of readFileSync(metricsPath, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    const record = JSON.parse(line) as { step?: unknown; loss?: unknown };
    if (typeof record.step === 'number' && typeof record.loss === 'number') losses.set(record.step, record.loss);
  }
  return losses;
}

const killRank1 = (step: number, restart = '0'): Record<string, string> => ({ FAULT_RANK: '1', FAULT_STEP: String(step), FAULT_KIND: 'sigkill', ...(restart === 'every' ? {} : { FAULT_RESTART: restart }) });

test('a worker SIGKILLed at a random step with --max-restarts 1 and a checkpoint every step ends with the same weights as an uninterrupted run', async () => {
  const steps = 8;
  const clean = mkdtempSync(join(tmpdir(), 'plsc-restart-clean-'));
  const killed = mkdtempSync(join(tmpdir(), 'plsc-restart-killed-'));
  try {
    const step = randomStep(1, steps - 2);
    const [a, b] = await Promise.all([
      runPlsc(['train', '--config', writeConfig(clean, steps, 1), '--nproc', '2'], {}, 240_000),
      runPlsc(['train', '--config', writeConfig(killed, steps, 1), '--nproc', '2', '--max-restarts', '1'], killRank1(step), 240_000),
    ]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stderr, /plsc launch: rank 1 \(local rank 1, pid \d+\) was killed by signal SIGKILL; stopped the group; restart 1 of 1/);
    assert.match(b.stdout + b.stderr, /plsc train: restart 1 of 1: resuming from \S+step-0000000\d \(step \d; every file matches its recorded sha256\)/);
    const resumedAt = Number(/resuming from \S+ \(step (\d+);/.exec(b.stdout + b.stderr)?.[1]);
    assert.ok(resumedAt >= step - 1 && resumedAt <= step, `resumed at step ${resumedAt}, killed in step ${step}`);
    for (const file of ['output/backbone.safetensors', `checkpoints/step-0000000${steps}/fc-rank-0-of-2.safetensors`, `checkpoints/step-0000000${steps}/fc-rank-1-of-2.safetensors`]) {
      assert.deepEqual(tensorsOf(join(killed, file)), tensorsOf(join(clean, file)), `${file} differs from the uninterrupted run's`);
    }
  } finally {
    rmSync(clean, { recursive: true, force: true });
    rmSync(killed, { recursive: true, force: true });
  }
});

test('with a checkpoint every 10 steps a run killed at a random step restarts from the last checkpoint (or fresh) and the loss still falls', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-restart-sparse-'));
  try {
    const steps = 30;
    const step = randomStep(3, steps - 3);
    const r = await runPlsc(['train', '--config', writeConfig(dir, steps, 10), '--nproc', '2', '--max-restarts', '1'], killRank1(step), 240_000);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /restart 1 of 1/);
    const output = r.stdout + r.stderr;
    const lastCheckpoint = Math.floor(step / 10) * 10;
    if (lastCheckpoint === 0) assert.match(output, /plsc train: restart 1 of 1: no verified checkpoint in \S+; starting fresh from step 0/);
    else assert.match(output, new RegExp(`plsc train: restart 1 of 1: resuming from \\S+step-000000${lastCheckpoint} \\(step ${lastCheckpoint};`));
    assert.equal(listCheckpoints(join(dir, 'checkpoints')).at(-1)?.step, steps);
    const losses = lossesOf(join(dir, 'output', 'metrics.jsonl'));
    const first = [1, 2, 3].map((s) => losses.get(s) as number);
    const last = [steps - 2, steps - 1, steps].map((s) => losses.get(s) as number);
    assert.ok(first.concat(last).every(Number.isFinite), `losses of steps 1-3 and the last 3 recorded: ${JSON.stringify([...losses])}`);
    const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;
    assert.ok(mean(last) < mean(first), `loss ${mean(first)} (steps 1-3) -> ${mean(last)} (last 3 steps)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a worker that is killed again after its one restart fails the run, naming the rank', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-restart-exhausted-'));
  try {
    const r = await runPlsc(['train', '--config', writeConfig(dir, 6, 1), '--nproc', '2', '--max-restarts', '1'], killRank1(2, 'every'), 240_000);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /restart 1 of 1/);
    assert.match(r.stderr, /training failed on rank 1 \(exit SIGKILL\) after 1 restart \(no restarts left\)/);
    assert.ok(!existsSync(join(dir, 'output', 'backbone.safetensors')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
