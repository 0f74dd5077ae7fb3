// `plsc launch --max-restarts`: a failed group is stopped and started again while restarts remain,
// each restart is printed naming the rank and how it failed, and the workers see torchrun's
// TORCHELASTIC_RESTART_COUNT / TORCHELASTIC_MAX_RESTARTS. Plain Node workers (no libtorch).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { launch, parseLaunchArgs, validateLaunchOptions, type RestartRecord, type WorkerOutputLine } from '../../src/distributed/launcher.js';
import { fixture, runPlsc } from './helpers.js';

const echo = fixture('echo-worker');

test('a worker killed in the first start is restarted once; the workers see the restart count', async () => {
  const lines: WorkerOutputLine[] = [];
  const restarts: RestartRecord[] = [];
  const result = await launch({
    nprocPerNode: 2,
    command: echo,
    maxRestarts: 2,
    env: { KILL_RANK: '1', FAIL_RESTARTS: '1', SLEEP_MS: '3000' },
    onOutput: (line) => lines.push(line),
    onRestart: (record) => restarts.push(record),
  });
  assert.equal(result.exitCode, 0);
  assert.equal(result.failure, null);
  assert.equal(restarts.length, 1);
  assert.equal(restarts[0]?.restart, 1);
  assert.equal(restarts[0]?.maxRestarts, 2);
  assert.equal(restarts[0]?.failure.rank, 1);
  assert.equal(restarts[0]?.failure.signal, 'SIGKILL');
  assert.deepEqual(result.restarts, restarts);
  const elastic = lines.filter((l) => l.text.startsWith('ELASTIC ')).map((l) => `${l.rank}:${l.text.slice(8)}`).sort();
  assert.deepEqual(elastic, ['0:0/2', '0:1/2', '1:0/2', '1:1/2'], 'both ranks ran twice, with TORCHELASTIC_RESTART_COUNT 0 then 1');
});

test('restarts exhausted: plsc launch exits with the failed rank code, naming the rank, after printing each restart', async () => {
  const r = await runPlsc(['launch', '--nproc-per-node', '2', '--max-restarts', '2', '--', echo], { FAIL_RANK: '0', FAIL_CODE: '7', SLEEP_MS: '3000' });
  assert.equal(r.code, 7, r.stderr);
  assert.match(r.stderr, /plsc launch: rank 0 \(local rank 0, pid \d+\) exited with code 7; stopped the group; restart 1 of 2/);
  assert.match(r.stderr, /plsc launch: rank 0 \(local rank 0, pid \d+\) exited with code 7; stopped the group; restart 2 of 2/);
  assert.match(r.stderr, /plsc launch: rank 0 \(local rank 0, pid \d+\) exited with code 7; stopped rank 1; exiting with code 7; no restarts left \(2 of --max-restarts 2 used\)/);
  const logDir = /each rank's full output: (\S+)\/rank-R\.log/.exec(r.stderr)?.[1];
  assert.ok(logDir !== undefined, r.stderr);
  try {
    const log = readFileSync(join(logDir, 'rank-0.log'), 'utf8');
    assert.equal(log.match(/ELASTIC /g)?.length, 3, 'the log of rank 0 holds all three starts');
    assert.match(log, /--- restart 2 of 2 ---/);
  } finally {
    rmSync(logDir, { recursive: true, force: true });
  }
});

test('without --max-restarts a failure ends the launch at once (no restart)', async () => {
  const restarts: RestartRecord[] = [];
  const result = await launch({ nprocPerNode: 1, command: echo, env: { FAIL_RANK: '0', FAIL_CODE: '3' }, logDir: null, onOutput: () => undefined, onRestart: (r) => restarts.push(r) });
  assert.equal(result.exitCode, 3);
  assert.deepEqual(restarts, []);
});

test('--max-restarts is parsed and checked', () => {
  assert.equal(parseLaunchArgs(['--nproc-per-node', '2', '--max-restarts', '3', '--', 'x']).maxRestarts, 3);
  assert.throws(() => parseLaunchArgs(['--nproc-per-node', '2', '--max-restarts', '-1', '--', 'x']), /--max-restarts needs a non-negative integer/);
  assert.throws(() => validateLaunchOptions({ nprocPerNode: 1, command: 'x', maxRestarts: 1.5 }), /--max-restarts must be a non-negative integer, got 1.5/);
});
