// Who failed, in one line: a frozen rank (SIGSTOP) is reported as the rank that failed first, the
// timed-out collective names the rank that never arrived, and a failing rank shows one line on the
// terminal while its stack trace goes to the launcher's per-rank log (or the terminal with
// PLSC_DEBUG=1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blameIn } from '../../src/distributed/fault-report.js';
import { describeFailure, isStackFrame } from '../../src/cli-kit/failure.js';
import { fixture, plscBin, readPids, runPlsc, startPlsc, survivors, waitForOutput } from '../distributed/helpers.js';
import { writeTinyConfig } from './helpers.js';

test('blameIn reads the ranks a collective timeout or a stall names; isStackFrame tells trace lines', () => {
  assert.deepEqual(blameIn('allReduce(sum) failed on rank 0 of 4: Timed out (...); ranks 1, 3 never arrived at allReduce(sum) #57', 0), {
    ranks: [1, 3],
    what: 'never arrived at allReduce(sum) #57',
    reportedBy: 0,
  });
  assert.deepEqual(blameIn('x; rank 0 is not responding (the rendezvous store it hosts did not answer within 3 s)', 2)?.ranks, [0]);
  assert.equal(blameIn('plsc train: rank 1: injected failure', 1), null);
  assert.deepEqual(blameIn('allReduce(max) failed on rank 0 of 2: Read error [10.77.0.2]:9417: Connection reset by peer (...); the peer at 10.77.0.2 is rank 1', 0), {
    ranks: [1],
    what: 'dropped out (the connection to 10.77.0.2 failed)',
    reportedBy: 0,
  });
  assert.deepEqual(blameIn('x: Timed out (...); ranks 2, 3 are unreachable (every rank arrived at allGather #44, but their heartbeats ...)', 0), {
    ranks: [2, 3],
    what: 'became unreachable (heartbeat stopped)',
    reportedBy: 0,
  });
  assert.ok(isStackFrame('    at Trainer.trainStep (file:///a/b.js:12:5)'));
  assert.ok(isStackFrame('    at async Promise.all (index 0)') === false);
  assert.ok(isStackFrame('    at node:internal/main/run_main_module:28:49'));
  assert.ok(!isStackFrame('plsc train: at step 3 the loss is NaN'));
  const error = new Error('boom');
  assert.equal(describeFailure('plsc train', error, {}), 'plsc train: boom');
  const traced = describeFailure('plsc train', error, { PLSC_DEBUG: '1' }).split('\n');
  assert.equal(traced[0], 'plsc train: boom');
  assert.ok(traced.length > 1 && traced.slice(1).every(isStackFrame));
});

test('a frozen rank 1 (SIGSTOP) is reported as the rank that failed first, naming the collective it never arrived at', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-first-'));
  try {
    const running = startPlsc(['launch', '--nproc-per-node', '2', '--', fixture('train-worker')], {
      PID_DIR: dir,
      STEPS: '100000',
      STEP_SLEEP_MS: '20',
      PLSC_COLLECTIVE_TIMEOUT_MS: '3000',
    }, 90_000);
    await waitForOutput(running, /\[rank 1\] SUM[\s\S]*\[rank 0\] SUM|\[rank 0\] SUM[\s\S]*\[rank 1\] SUM/, 60_000);
    const pids = readPids(dir);
    process.kill(pids.get('1') as number, 'SIGSTOP');
    const r = await running.done;
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /\[rank 0\] COLLECTIVE ERROR: allReduce\(sum\) failed on rank 0 of 2: .*[Tt]imed out.*; rank 1 never arrived at allReduce\(sum\) #\d+ \(it last issued #\d+\)/);
    assert.match(r.stderr, /plsc launch: rank 1 failed first: it never arrived at allReduce\(sum\) #\d+ \(reported by rank 0, which exited with code 1\); stopped rank 1/);
    assert.deepEqual(await survivors(pids.values(), 10_000), [], 'the frozen rank was killed too');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a failing rank of plsc launch -- plsc train: one line on the terminal, the stack trace in its log file; PLSC_DEBUG=1 shows it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-first-'));
  const logDir = join(dir, 'logs');
  try {
    const config = writeTinyConfig(dir);
    const args = ['launch', '--nproc-per-node', '2', '--log-dir', logDir, '--', process.execPath, plscBin, 'train', '--config', config];
    const faults = { FAULT_KIND: 'throw', FAULT_RANK: '1', FAULT_STEP: '2' };
    const run = await runPlsc(args, faults, 90_000);
    assert.equal(run.code, 1, `${run.stdout}\n${run.stderr}`);
    const rank1 = run.stderr.split('\n').filter((l) => l.startsWith('[rank 1] '));
    assert.deepEqual(rank1, ['[rank 1] plsc train: injected failure in forward call 2 on rank 1']);
    assert.doesNotMatch(run.stderr, /^\[rank \d\]\s+at /m);
    assert.match(run.stderr, new RegExp(`plsc launch: rank 1 \\(local rank 1, pid \\d+\\) exited with code 1; stopped rank 0; exiting with code 1; each rank's full output: ${logDir}/rank-R\\.log`));
    const log = readFileSync(join(logDir, 'rank-1.log'), 'utf8');
    assert.match(log, /E plsc train: injected failure in forward call 2 on rank 1\nE\s+at .*faulty-backbone\.js:\d+:\d+/);

    const debug = await runPlsc(args, { ...faults, PLSC_DEBUG: '1' }, 90_000);
    assert.equal(debug.code, 1);
    assert.match(debug.stderr, /\[rank 1\] plsc train: injected failure in forward call 2 on rank 1\n\[rank 1\]\s+at /);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
