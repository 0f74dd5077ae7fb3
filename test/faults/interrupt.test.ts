// SIGINT: the first finishes the current step, saves a checkpoint of it and exits 130 (one process,
// plsc train --nproc 2 and plsc launch alike).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { plscBin, startPlsc } from '../distributed/helpers.js';
import { checkpointSteps, outputMatching, writeTinyConfig } from './helpers.js';

async function interruptAfterStep3(args: (config: string) => string[], env: Record<string, string> = {}): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-interrupt-'));
  try {
    const config = writeTinyConfig(dir);
    const running = startPlsc(args(config), env, 120_000);
    await outputMatching(running, /step 3\/\d+/, 90_000);
    running.child.kill('SIGINT');
    const run = await running.done;
    assert.equal(run.code, 130, `${run.stdout}\n${run.stderr}`);
    const all = `${run.stdout}\n${run.stderr}`;
    const stopped = /interrupted: stopping after step (\d+)/.exec(all);
    assert.ok(stopped !== null, all);
    const step = Number(stopped[1]);
    assert.ok(step >= 3, `stopped after step ${step}`);
    // The checkpoint holds exactly the step training stopped after; the final model was not written.
    assert.equal(checkpointSteps(join(dir, 'checkpoints')).at(-1), step);
    assert.ok(!existsSync(join(dir, 'output', 'backbone.safetensors')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('plsc train: the first SIGINT finishes the step, saves its checkpoint and exits 130', async () => {
  await interruptAfterStep3((config) => ['train', '--config', config]);
});

test('plsc train --nproc 2: SIGINT stops both workers after the same step with one checkpoint; exit 130 as plsc launch', async () => {
  await interruptAfterStep3((config) => ['train', '--config', config, '--nproc', '2']);
});

test('plsc launch -- plsc train: SIGINT to the launcher stops every rank after the same step with a checkpoint; exit 130', async () => {
  await interruptAfterStep3((config) => ['launch', '--nproc-per-node', '2', '--', process.execPath, plscBin, 'train', '--config', config]);
});
