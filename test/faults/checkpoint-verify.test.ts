// `plsc checkpoint verify DIR`: one line per file, exit 1 on any problem.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { checkpointCommand } from '../../src/train/checkpoint-cli.js';
import { dropDigests, flipExponentBit, recordCurrentDigests, scratch, tinyConfig, trainTiny, writeNaN } from './fixtures/tiny-run.js';

async function verify(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await checkpointCommand(argv, { stdout: { write: (t: string) => out.push(t) }, stderr: { write: (t: string) => err.push(t) } });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

test('checkpoint verify: a sound checkpoint gives one ok line per file and exit 0; a root verifies every step', async () => {
  const dir = scratch();
  const config = tinyConfig(dir, { lossType: 'dist_arcface', trainSteps: 2, checkpointPeriod: 1, maxLastCheckpointNum: 2 });
  const checkpoint = await trainTiny(config);
  const one = await verify('verify', checkpoint);
  assert.equal(one.code, 0, one.stdout + one.stderr);
  const lines = one.stdout.trim().split('\n');
  assert.deepEqual(lines.map((l) => l.split(/\s+/)[1]), ['meta.json', 'backbone.safetensors', 'optimizer.safetensors', 'fc-rank-0-of-1.safetensors', 'verify:']);
  assert.ok(lines.slice(0, 4).every((l) => l.startsWith('ok  ')), one.stdout);
  assert.match(one.stdout, /backbone\.safetensors  [\d.]+ KiB, sha256 [0-9a-f]{12} matches, \d+ tensors finite/);
  assert.match(one.stdout, /checkpoint verify: 4 files in 1 checkpoint are sound/);
  const root = await verify('verify', config.checkpointDir);
  assert.equal(root.code, 0);
  assert.match(root.stdout, /ok    step-00000001\/backbone\.safetensors/);
  assert.match(root.stdout, /checkpoint verify: 8 files in 2 checkpoints are sound/);
  rmSync(dir, { recursive: true, force: true });
});

test('checkpoint verify: a flipped bit, NaN values, a missing file and an unreadable meta.json each fail with the file named (exit 1)', async () => {
  const dir = scratch();
  const checkpoint = await trainTiny(tinyConfig(dir, { lossType: 'arcface' }));
  flipExponentBit(join(checkpoint, 'backbone.safetensors'));
  let result = await verify('verify', checkpoint);
  assert.equal(result.code, 1);
  assert.match(result.stdout, /FAIL  backbone\.safetensors  checkpoint file .*backbone\.safetensors is corrupt: its sha256/);
  assert.match(result.stdout, /ok    fc-rank-0-of-1\.safetensors/);
  assert.match(result.stdout, /checkpoint verify: 1 of 4 files have problems/);

  const tensor = writeNaN(join(checkpoint, 'fc-rank-0-of-1.safetensors'), 'weight');
  recordCurrentDigests(checkpoint);
  result = await verify('verify', checkpoint);
  assert.equal(result.code, 1);
  assert.match(result.stdout, new RegExp(`FAIL  fc-rank-0-of-1\\.safetensors  .*fc-rank-0-of-1\\.safetensors: tensor '${tensor}' holds 1 NaN and 0 Inf values`));

  rmSync(join(checkpoint, 'optimizer.safetensors'));
  result = await verify('verify', checkpoint);
  assert.match(result.stdout, /FAIL  optimizer\.safetensors  checkpoint file .*optimizer\.safetensors is missing \(meta\.json records \d+ bytes\)/);

  const { writeFileSync } = await import('node:fs');
  writeFileSync(join(checkpoint, 'meta.json'), '{"format": "plsc-checkpoint-1", ');
  result = await verify('verify', checkpoint);
  assert.equal(result.code, 1);
  assert.match(result.stdout, /FAIL  meta\.json  checkpoint .*meta\.json: cannot read meta\.json/);
  rmSync(dir, { recursive: true, force: true });
});

test('checkpoint verify: a checkpoint saved before digests were recorded passes with a note; usage errors exit 2', async () => {
  const dir = scratch();
  const checkpoint = await trainTiny(tinyConfig(dir));
  dropDigests(checkpoint);
  const result = await verify('verify', checkpoint);
  assert.equal(result.code, 0, result.stdout);
  assert.match(result.stdout, /ok    backbone\.safetensors  .*sha256 not recorded, \d+ tensors finite/);
  assert.match(result.stdout, /note  .*meta\.json records no digests/);
  assert.equal((await verify()).code, 2);
  assert.match((await verify('check', checkpoint)).stderr, /unknown subcommand 'check'/);
  assert.equal((await verify('verify')).code, 2);
  assert.equal((await verify('verify', join(dir, 'nothing'))).code, 1);
  rmSync(dir, { recursive: true, force: true });
});
