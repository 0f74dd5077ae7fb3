// Fault behaviour: a dead peer fails the others with an error naming the collective (never a
// hang), a worker that kills itself fails the whole launch fast with nothing left running, and
// rendezvous problems (never arriving, port in use, master unreachable, world size mismatch) give
// clear messages within their timeouts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findFreePort } from '../../src/distributed/launcher.js';
import { initProcessGroup } from '../../src/distributed/process-group.js';
import { fixture, linesOf, readPids, runPlsc, startNode, startPlsc, survivors, waitForOutput } from './helpers.js';

const trainer = fixture('train-worker');

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'plsc-faults-'));
}

test('a worker that kills itself mid-training: launch exits non-zero within 30 s, names the rank, leaves nothing running', async () => {
  const dir = tempDir();
  try {
    const r = await runPlsc(['launch', '--nproc-per-node', '3', '--', trainer], {
      PID_DIR: dir,
      STEPS: '100000',
      STEP_SLEEP_MS: '20',
      DIE_RANK: '1',
      DIE_STEP: '5',
    });
    assert.notEqual(r.code, 0);
    assert.equal(r.code, 128 + 9);
    assert.ok(r.ms < 30_000, `took ${r.ms} ms`);
    assert.match(r.stderr, /plsc launch: rank 1 \(local rank 1, pid \d+\) was killed by signal SIGKILL/);
    assert.ok(linesOf(r.stdout, 0).some((l) => l.startsWith('SUM ')), 'training had started');
    const pids = readPids(dir);
    assert.equal(pids.size, 3);
    assert.deepEqual(await survivors(pids.values()), [], 'no worker process is left running');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

async function pair(env: Record<string, string>): Promise<[Awaited<ReturnType<typeof startNode>['done']>, Awaited<ReturnType<typeof startNode>['done']>]> {
  const port = await findFreePort('127.0.0.1');
  const common = { MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), WORLD_SIZE: '2', LOCAL_WORLD_SIZE: '2', ...env };
  const ranks = [0, 1].map((rank) => startNode([trainer], { ...common, RANK: String(rank), LOCAL_RANK: String(rank) }, 60_000));
  return [await (ranks[0] as ReturnType<typeof startNode>).done, await (ranks[1] as ReturnType<typeof startNode>).done];
}

test('without a launcher, a peer that died makes the survivor fail with an error naming the collective', async () => {
  const [survivor, dead] = await pair({ STEPS: '100000', STEP_SLEEP_MS: '20', DIE_RANK: '1', DIE_STEP: '5', PLSC_COLLECTIVE_TIMEOUT_MS: '20000' });
  assert.equal(dead.signal, 'SIGKILL');
  assert.equal(survivor.code, 1, survivor.stderr);
  assert.match(survivor.stdout, /COLLECTIVE ERROR: allReduce\(sum\) failed on rank 0 of 2: /);
  assert.match(survivor.stdout, /a peer process probably died/);
});

test('a peer that stops issuing collectives makes the others time out, naming the collective', async () => {
  const started = Date.now();
  const port = await findFreePort('127.0.0.1');
  const common = { MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), WORLD_SIZE: '2', STEPS: '10', STALL_RANK: '1', PLSC_COLLECTIVE_TIMEOUT_MS: '2000' };
  const stalled = startNode([trainer], { ...common, RANK: '1' }, 60_000);
  const waiting = startNode([trainer], { ...common, RANK: '0' }, 60_000);
  const r = await waiting.done;
  stalled.child.kill('SIGKILL');
  await stalled.done;
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stdout, /COLLECTIVE ERROR: allReduce\(sum\) failed on rank 0 of 2: .*[Tt]imed out/);
  assert.match(r.stdout, /group timeout 2000 ms/);
  assert.ok(Date.now() - started < 40_000);
});

test('exiting with a collective still outstanding neither hangs nor crashes', async () => {
  const [first, second] = await pair({ STEPS: '2', EXIT_PENDING: '1' });
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /EXITING with 1 pending/);
  assert.equal(second.code, 0, second.stderr);
  // Rank 0 ended while rank 1 was still alive (it sleeps 3 s after printing).
  assert.ok(first.ms < second.ms, `rank 0 took ${first.ms} ms, rank 1 ${second.ms} ms`);
});

test('a worker that never arrives: rendezvous fails with a clear timeout error and the launch stops', async () => {
  const dir = tempDir();
  try {
    const r = await runPlsc(['launch', '--nproc-per-node', '2', '--', trainer], {
      PID_DIR: dir,
      NEVER_JOIN_RANK: '1',
      PLSC_RENDEZVOUS_TIMEOUT_MS: '2000',
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /\[rank 0\] .*rendezvous failed for rank 0 of 2 at 127\.0\.0\.1:\d+ while waiting for all 2 processes to join \(timeout 2000 ms\): timed out: only 1 of 2 processes joined/);
    assert.match(r.stderr, /plsc launch: rank 0 .* exited with code 1; stopped rank 1/);
    assert.deepEqual(await survivors(readPids(dir).values()), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('rendezvous: the master port already in use is named', async () => {
  const server = createServer();
  const port = await new Promise<number>((resolve) => server.listen(0, () => resolve((server.address() as { port: number }).port)));
  try {
    await assert.rejects(
      initProcessGroup({ rank: 0, worldSize: 2, masterAddr: '127.0.0.1', masterPort: port, rendezvousTimeoutMs: 1000, setDefault: false }),
      new RegExp(`rendezvous failed for rank 0 of 2 .*Address already in use.*port ${port} is already in use on the master`),
    );
  } finally {
    server.close();
  }
});

test('rendezvous: an unreachable master times out with a message saying so', async () => {
  const port = await findFreePort('127.0.0.1');
  const started = Date.now();
  await assert.rejects(
    initProcessGroup({ rank: 1, worldSize: 2, masterAddr: '127.0.0.1', masterPort: port, rendezvousTimeoutMs: 1000, setDefault: false }),
    new RegExp(`rendezvous failed for rank 1 of 2 at 127\\.0\\.0\\.1:${port} while connecting to the rendezvous store .*timed out.*is 127\\.0\\.0\\.1:${port} reachable`),
  );
  assert.ok(Date.now() - started < 15_000);
});

test('rendezvous: a mismatched world size is reported as such', async () => {
  const port = await findFreePort('127.0.0.1');
  const base = { masterAddr: '127.0.0.1', masterPort: port, rendezvousTimeoutMs: 2000, setDefault: false };
  const root = initProcessGroup({ ...base, rank: 0, worldSize: 2 });
  const rootFailure = assert.rejects(root, /only 1 of 2 processes joined/);
  await assert.rejects(initProcessGroup({ ...base, rank: 2, worldSize: 3 }), /world size mismatch: this process has WORLD_SIZE=3 but rank 0 has WORLD_SIZE=2/);
  await rootFailure;
});

test('workers exit on their own when the launcher is killed with SIGKILL', async () => {
  const dir = tempDir();
  try {
    const running = startPlsc(['launch', '--nproc-per-node', '2', '--', trainer], { PID_DIR: dir, STEPS: '100000', STEP_SLEEP_MS: '50' });
    await waitForOutput(running, /\[rank 1\] SUM[\s\S]*\[rank 0\] SUM|\[rank 0\] SUM[\s\S]*\[rank 1\] SUM/, 60_000);
    running.child.kill('SIGKILL');
    await running.done;
    const pids = readPids(dir);
    assert.equal(pids.size, 2);
    assert.deepEqual(await survivors(pids.values(), 10_000), [], 'orphaned workers noticed the launcher is gone');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
