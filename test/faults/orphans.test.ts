// No orphans: workers die with their launcher even when it is SIGKILLed together with its process
// group while the workers train on the synthetic dataset (whose loader never lets the event loop
// turn, so no JS timer could notice): both for plsc launch -- plsc train and plsc train --nproc 2.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { plscBin, survivors, type Running, type RunResult } from '../distributed/helpers.js';
import { descendants, outputMatching, writeTinyConfig } from './helpers.js';

/** Starts `node bin/plsc.js ...args` as the leader of its own process group (like a shell job). */
function startJob(args: readonly string[]): Running {
  const started = Date.now();
  const child = spawn(process.execPath, [plscBin, ...args], { env: { ...process.env, PLSC_NUM_THREADS: '1' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => process.kill(-(child.pid as number), 'SIGKILL'), 120_000);
  const done = new Promise<RunResult>((resolve) =>
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    }),
  );
  return { child, done };
}

async function killGroupAndCountSurvivors(args: readonly string[]): Promise<{ workers: number[]; alive: number[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-orphans-'));
  try {
    const job = startJob([...args.map((a) => a.replace('CONFIG', writeTinyConfig(dir)))]);
    // Both ranks train (rank 0 prints the steps; the other rank is in the same collectives).
    await outputMatching(job, /step 3\/\d+/, 90_000);
    const workers = descendants(job.child.pid as number);
    process.kill(-(job.child.pid as number), 'SIGKILL');
    await job.done;
    return { workers, alive: await survivors(workers, 10_000) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('plsc launch -- plsc train on synthetic data: SIGKILL of the launcher\'s process group leaves no worker alive after 10 s', async () => {
  const { workers, alive } = await killGroupAndCountSurvivors(['launch', '--nproc-per-node', '2', '--', process.execPath, plscBin, 'train', '--config', 'CONFIG']);
  assert.ok(workers.length >= 2, `found the workers: ${workers.join(', ')}`);
  assert.deepEqual(alive, [], 'orphaned workers');
});

test('plsc train --nproc 2 on synthetic data: SIGKILL of its process group leaves no worker alive after 10 s', async () => {
  const { workers, alive } = await killGroupAndCountSurvivors(['train', '--config', 'CONFIG', '--nproc', '2']);
  assert.ok(workers.length >= 2, `found the workers: ${workers.join(', ')}`);
  assert.deepEqual(alive, [], 'orphaned workers');
});
