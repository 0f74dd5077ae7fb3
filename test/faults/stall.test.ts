// The stall detector: a run whose step stops advancing for stallTimeout seconds fails with a message
// naming the rank and the last step, even while the main thread is blocked (in a synchronous hang or
// in a collective), and a distributed run names the rank that never arrived.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Entry } from '../../src/train/entry.js';
import { DEFAULT_CONFIG } from '../../src/config/train-config.js';
import { plscBin, runPlsc } from '../distributed/helpers.js';
import { writeTinyConfig } from './helpers.js';

test('stallTimeout: seconds, generous by default, 0 allowed, negative refused naming the field', () => {
  assert.ok(DEFAULT_CONFIG.stallTimeout >= 600);
  assert.equal(new Entry().setStallTimeout(0).config().stallTimeout, 0);
  assert.equal(new Entry().setStallTimeout(90).config().stallTimeout, 90);
  assert.throws(() => new Entry().setStallTimeout(-1), /stallTimeout/);
});

test('a single-process run whose step hangs synchronously fails after stallTimeout, naming the last step', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-stall-'));
  try {
    const config = writeTinyConfig(dir, 'stallTimeout: 2\n');
    // Forward call 3 blocks the main thread for 10 minutes: steps 1-3 finish, step 4 never does.
    const run = await runPlsc(['train', '--config', config], { FAULT_KIND: 'block', FAULT_STEP: '3' }, 90_000);
    assert.equal(run.code, 1, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stderr, /plsc: training: stalled: no progress for [2-9] s after step 3 \(stallTimeout 2 s\); stopping/);
    assert.ok(run.ms < 60_000, `took ${run.ms} ms`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('stallTimeout 0 turns the detector off', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-stall-'));
  try {
    // Every step is slowed to 1.5 s, well past a 1 s stallTimeout, but the detector is off.
    const config = writeTinyConfig(dir, 'stallTimeout: 0\n');
    const run = await runPlsc(['train', '--config', config, '--set', 'trainSteps=3'], { STEP_DELAY_MS: '1500' }, 90_000);
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    assert.doesNotMatch(run.stderr, /stalled/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('two ranks, rank 1 hangs: the run fails within stallTimeout (not the 60 s collective timeout) and rank 1 is named as the one that failed first', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-stall-'));
  try {
    const config = writeTinyConfig(dir, 'stallTimeout: 3\n');
    const run = await runPlsc(['launch', '--nproc-per-node', '2', '--', process.execPath, plscBin, 'train', '--config', config], {
      FAULT_KIND: 'block',
      FAULT_RANK: '1',
      FAULT_STEP: '3',
      PLSC_COLLECTIVE_TIMEOUT_MS: '60000',
    }, 90_000);
    assert.equal(run.code, 1, `${run.stdout}\n${run.stderr}`);
    // Whichever watchdog fires first, the summary blames rank 1.
    assert.match(run.stderr, /\[rank [01]\] plsc: rank [01] of 2: stalled: no progress for \d+ s after step 3/);
    assert.match(run.stderr, /plsc launch: (rank 1 failed first: it never arrived at .*#\d+ \(reported by rank 0, which exited with code 1|rank 1 \(local rank 1, pid \d+\) exited with code 1)/);
    assert.ok(run.ms < 60_000, `took ${run.ms} ms`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
