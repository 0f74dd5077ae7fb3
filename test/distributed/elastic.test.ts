// Two "hosts" on one machine: two elastic launchers (1 worker each) rendezvous on 127.0.0.1 and train
// together at world size 2; the launcher hosting the store is killed with SIGKILL mid-run, and the
// other one hosts a new store, re-rendezvouses alone after the last call and finishes the run at
// world size 1 from the last checkpoint (FC shards re-split 2 -> 1) with a falling loss.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findFreePort } from '../../src/distributed/launcher.js';
import { listCheckpoints } from '../../src/index.js';
import { plscBin, startPlsc, survivors, type Running } from './helpers.js';
import { descendants, firstAndLastLoss, writeTinyConfig } from '../faults/helpers.js';

/** Everything a process printed so far (stdout and stderr), kept from its start. */
function recorded(running: Running): () => string {
  let text = '';
  running.child.stdout?.on('data', (d: Buffer) => (text += d.toString()));
  running.child.stderr?.on('data', (d: Buffer) => (text += d.toString()));
  return () => text;
}

async function waitFor(output: () => string, pattern: RegExp, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pattern.test(output())) {
    if (Date.now() > deadline) throw new Error(`no ${pattern} within ${ms} ms in:\n${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}


test('two elastic launchers train together; SIGKILL of the store host leaves the other to finish alone at world size 1 with a falling loss', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-elastic-'));
  const port = await findFreePort('127.0.0.1');
  const steps = 40;
  const config = writeTinyConfig(dir, 'checkpointPeriod: 4\n', steps);
  const args = ['launch', '--nproc-per-node', '1', '--nnodes', '1:2', '--rdzv-endpoint', `127.0.0.1:${port}`, '--rdzv-id', 'two-hosts', '--rdzv-last-call', '15', '--rdzv-timeout', '60', '--max-restarts', '2', '--', process.execPath, plscBin, 'train', '--config', config];
  // Slow steps, so the kill lands mid-run; a collective with a dead peer fails within 20 s at worst.
  const env = { STEP_DELAY_MS: '150', PLSC_COLLECTIVE_TIMEOUT_MS: '20000' };
  const launchers: Running[] = [];
  try {
    launchers.push(startPlsc(args, env, 240_000));
    const hostOutput = recorded(launchers[0] as Running);
    await waitFor(hostOutput, /hosting the store/, 60_000);
    launchers.push(startPlsc(args, env, 240_000));
    const [host, other] = launchers as [Running, Running];
    const otherOutput = recorded(other);
    for (const output of [hostOutput, otherOutput]) await waitFor(output, /round 0: node rank \d of 2 nodes, ranks \d of world size 2/, 90_000);
    // A few steps at world size 2 (rank 0 logs every step; it runs under either launcher).
    await waitFor(() => hostOutput() + otherOutput(), /\[rank 0\] step 6\/40/, 120_000);
    const workers = descendants(host.child.pid as number);
    host.child.kill('SIGKILL');
    const started = Date.now();
    const r = await other.done;
    const tookMs = Date.now() - started;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(tookMs < 200_000, `the survivor took ${tookMs} ms`);
    assert.match(r.stderr, /hosting the store/, 'the survivor hosts a new store');
    assert.match(r.stderr, /round 1: node rank 0 of 1 node, ranks 0 of world size 1 \(was 2: training resumes from the last checkpoint with the FC shards re-split\)/);
    assert.match(r.stdout + r.stderr, /world size 2 -> 1 since the checkpoint: per-worker batch stays 4, so the global batch goes 8 -> 4 and the base lr \(linear in the global batch\) 0\.0015\d* -> 0\.00078\d*/);
    assert.match(r.stdout + r.stderr, /restart 1 of 2: (resuming from \S+step-\d+|no verified checkpoint)/);
    assert.equal(listCheckpoints(join(dir, 'checkpoints')).at(-1)?.step, steps);
    const { first, last } = firstAndLastLoss(join(dir, 'output'), steps);
    assert.ok(last < first, `loss ${first} (steps 1-3) -> ${last} (last 3 steps)`);
    assert.deepEqual(await survivors(workers, 10_000), [], 'the killed launcher\'s worker died with it');
  } finally {
    for (const launcher of launchers) launcher.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
