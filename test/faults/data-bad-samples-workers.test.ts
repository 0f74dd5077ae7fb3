// Bad samples with two workers: each worker reports the ones it meets, the per-epoch count in
// metrics.jsonl is the sum over the workers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { makeListDataset, plsc, readMetrics, scratch, writeTinyYaml } from './data-fixtures.js';

test('two workers: bad samples are printed by the worker that met them and counted over both per epoch', async () => {
  const { dir, cleanup } = scratch();
  try {
    const data = await makeListDataset(dir, 48, 4);
    rmSync(data.images[7]!);
    rmSync(data.images[20]!);
    const config = writeTinyYaml(dir, data.list, 'maxBadSampleFraction: 0.1\n');
    const run = await plsc(['train', '--config', config, '--nproc', '2'], 180_000);
    assert.equal(run.code, 0, run.stderr);
    const printed = [...`${run.stdout}\n${run.stderr}`.matchAll(/bad sample skipped on rank (\d): file .*label\.txt line (\d+) /g)];
    assert.deepEqual([...new Set(printed.map((m) => Number(m[2])))].sort((a, b) => a - b), [8, 21]);
    const records = readMetrics(join(dir, 'output', 'metrics.jsonl')).filter((r) => r.type === 'bad_samples');
    // 48 samples, 2 workers of 8 per step: 3 steps an epoch, 6 steps = 2 epochs.
    assert.deepEqual(records.map((r) => [r.epoch, r.bad, r.samples]), [[0, 2, 48], [1, 2, 48]]);
  } finally {
    cleanup();
  }
});
