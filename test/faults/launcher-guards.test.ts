// Launcher guards: a warning when workers exceed cores, --exit-grace ending a job whose other ranks
// keep running after one finished, and the flags that set them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpus } from 'node:os';
import { DEFAULT_EXIT_GRACE_MS, oversubscriptionWarning, parseLaunchArgs } from '../../src/distributed/launcher.js';
import { runPlsc } from '../distributed/helpers.js';

test('more workers than cores gets a warning naming both; as many as cores does not', () => {
  assert.equal(oversubscriptionWarning(2, 2), null);
  assert.match(oversubscriptionWarning(1000, 2) ?? '', /warning: 1000 workers on 2 cores: .*--nproc-per-node 2 or fewer/);
});

test('plsc launch prints the oversubscription warning', async () => {
  const nproc = cpus().length + 1;
  const run = await runPlsc(['launch', '--nproc-per-node', String(nproc), '--', process.execPath, '-e', '']);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, new RegExp(`plsc launch: warning: ${nproc} workers on ${cpus().length} core`));
});

test('--exit-grace and --log-dir parse; the default grace is generous', () => {
  const parsed = parseLaunchArgs(['--nproc-per-node', '2', '--exit-grace', '7', '--log-dir', '/tmp/x', '--', 'node', 'a.js']);
  assert.equal(parsed.exitGraceMs, 7000);
  assert.equal(parsed.logDir, '/tmp/x');
  assert.ok(DEFAULT_EXIT_GRACE_MS >= 60_000);
  assert.throws(() => parseLaunchArgs(['--nproc-per-node', '2', '--exit-grace', '-1', '--', 'x']), /--exit-grace needs a non-negative integer/);
});

test('a rank that exits 0 while another keeps running: after --exit-grace the job ends with a message naming them', async () => {
  // Rank 1 hangs outside any collective (no timeout would ever fire); rank 0 finishes at once.
  const script = "if (process.env.RANK === '1') setInterval(() => {}, 1000);";
  const run = await runPlsc(['launch', '--nproc-per-node', '2', '--exit-grace', '2', '--', process.execPath, '-e', script], {}, 60_000);
  assert.equal(run.code, 1, run.stderr);
  assert.match(run.stderr, /plsc launch: rank 1 still running 2 s after rank 0 exited with code 0 \(--exit-grace\); stopped them; exiting with code 1/);
  assert.ok(run.ms < 30_000, `took ${run.ms} ms`);
});
