// `plsc launch` as a real process over plain Node workers (no libtorch): environment, output,
// fail-fast with the failed rank named, escalation to SIGKILL, Ctrl-C, nothing left running.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launch, type WorkerOutputLine } from '../../src/distributed/launcher.js';
import { fixture, linesOf, readPids, runPlsc, startPlsc, survivors, waitForOutput } from './helpers.js';

const echo = fixture('echo-worker');

function pidDir(): string {
  return mkdtempSync(join(tmpdir(), 'plsc-launch-'));
}

test('every worker gets the torchrun environment and its output is prefixed with its rank', async () => {
  const r = await runPlsc(['launch', '--nproc-per-node', '3', '--', echo]);
  assert.equal(r.code, 0, r.stderr);
  const ports = new Set<string>();
  for (let rank = 0; rank < 3; rank++) {
    const lines = linesOf(r.stdout, rank);
    const env = JSON.parse((lines.find((l) => l.startsWith('ENV ')) as string).slice(4)) as Record<string, string>;
    assert.deepEqual(
      { ...env, MASTER_PORT: undefined },
      { RANK: `${rank}`, WORLD_SIZE: '3', LOCAL_RANK: `${rank}`, LOCAL_WORLD_SIZE: '3', GROUP_RANK: '0', MASTER_ADDR: '127.0.0.1', MASTER_PORT: undefined },
    );
    ports.add(env.MASTER_PORT as string);
    assert.ok(lines.includes('no newline at the end'), 'a last line without newline is still printed');
    assert.deepEqual(linesOf(r.stderr, rank), ['to stderr']);
  }
  assert.equal(ports.size, 1, 'all workers share one master port');
  assert.ok(Number([...ports][0]) > 0);
});

test('multi-node ranks: node K runs ranks K*N .. K*N+N-1 of nnodes*N', async () => {
  const lines: WorkerOutputLine[] = [];
  const result = await launch({
    nprocPerNode: 2,
    nnodes: 3,
    nodeRank: 2,
    masterAddr: '127.0.0.1',
    masterPort: 29999,
    command: echo,
    onOutput: (line) => lines.push(line),
  });
  assert.equal(result.exitCode, 0);
  const envs = lines.filter((l) => l.text.startsWith('ENV ')).map((l) => ({ rank: l.rank, env: JSON.parse(l.text.slice(4)) as Record<string, string> }));
  envs.sort((a, b) => a.rank - b.rank);
  assert.deepEqual(envs.map((e) => e.rank), [4, 5]);
  assert.deepEqual(envs[1]?.env, {
    RANK: '5',
    WORLD_SIZE: '6',
    LOCAL_RANK: '1',
    LOCAL_WORLD_SIZE: '2',
    GROUP_RANK: '2',
    MASTER_ADDR: '127.0.0.1',
    MASTER_PORT: '29999',
  });
});

test('a worker exiting non-zero stops the others; the launch exits with its code and names the rank', async () => {
  const dir = pidDir();
  try {
    const r = await runPlsc(['launch', '--nproc-per-node', '3', '--', echo], { PID_DIR: dir, FAIL_RANK: '1', FAIL_CODE: '3', SLEEP_MS: '60000', CHILD: '1' });
    assert.equal(r.code, 3);
    assert.match(r.stderr, /rank 1 \(local rank 1, pid \d+\) exited with code 3; stopped ranks 0, 2/);
    assert.ok(r.ms < 30_000, `took ${r.ms} ms`);
    const pids = readPids(dir);
    assert.equal(pids.size, 6, 'three workers and their three children');
    assert.deepEqual(await survivors(pids.values()), [], 'no worker (or worker child) is left running');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a worker killed by a signal is reported with the signal; exit code 128+signal', async () => {
  const dir = pidDir();
  try {
    const r = await runPlsc(['launch', '--nproc-per-node', '2', '--', echo], { PID_DIR: dir, KILL_RANK: '0', SLEEP_MS: '60000' });
    assert.equal(r.code, 137);
    assert.match(r.stderr, /rank 0 \(local rank 0, pid \d+\) was killed by signal SIGKILL; stopped rank 1/);
    assert.deepEqual(await survivors(readPids(dir).values()), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a worker that ignores SIGTERM is killed after the grace period', async () => {
  const dir = pidDir();
  try {
    const r = await runPlsc(['launch', '--nproc-per-node', '2', '--grace-period-ms', '500', '--', echo], {
      PID_DIR: dir,
      FAIL_RANK: '0',
      IGNORE_TERM: '1',
      SLEEP_MS: '60000',
    });
    assert.equal(r.code, 1);
    assert.ok(linesOf(r.stdout, 1).some((l) => l.endsWith('ignoring SIGTERM')), r.stdout);
    assert.match(r.stderr, /rank 0 .* exited with code 1; stopped rank 1/);
    assert.ok(r.ms < 30_000);
    assert.deepEqual(await survivors(readPids(dir).values()), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('Ctrl-C (SIGINT) to the launcher stops every worker cleanly', async () => {
  const dir = pidDir();
  try {
    const running = startPlsc(['launch', '--nproc-per-node', '2', '--', echo], { PID_DIR: dir, SLEEP_MS: '60000' });
    await waitForOutput(running, /\[rank 1\] ENV[\s\S]*\[rank 0\] ENV|\[rank 0\] ENV[\s\S]*\[rank 1\] ENV/, 20_000);
    running.child.kill('SIGINT');
    const r = await running.done;
    assert.equal(r.code, 130);
    assert.match(r.stderr, /received SIGINT; stopped all 2 workers/);
    assert.deepEqual(await survivors(readPids(dir).values()), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a command that cannot start fails the launch with a message', async () => {
  const r = await runPlsc(['launch', '--nproc-per-node', '2', '--', '/nonexistent/program']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /rank \d .*could not be started: .*ENOENT/);
});

test('bad launch arguments are refused with usage', async () => {
  const missing = await runPlsc(['launch', '--', echo]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--nproc-per-node is required/);
  const badRank = await runPlsc(['launch', '--nproc-per-node', '1', '--nnodes', '2', '--node-rank', '2', '--', echo]);
  assert.equal(badRank.code, 2);
  assert.match(badRank.stderr, /--node-rank must be an integer in \[0, 2\)/);
  const noCommand = await runPlsc(['launch', '--nproc-per-node', '1']);
  assert.equal(noCommand.code, 2);
  assert.match(noCommand.stderr, /no command to launch/);
});
