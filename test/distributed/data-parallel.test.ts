// Data parallel over real processes: parameters and buffers broadcast from rank 0, and bucketed
// gradient averaging (with and without overlap, with accumulation) equal to the mean of the
// per-rank gradients, which the worker recomputes locally (fixtures/data-parallel-worker.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fixture, linesOf, runPlsc } from './helpers.js';

const worker = fixture('data-parallel-worker');

for (const worldSize of [1, 2, 3, 4]) {
  test(`world size ${worldSize}: bucketed gradient averaging equals the mean of per-rank gradients`, async () => {
    const r = await runPlsc(['launch', '--nproc-per-node', String(worldSize), '--', worker]);
    assert.equal(r.code, 0, `launch failed:\n${r.stdout}\n${r.stderr}`);
    for (let rank = 0; rank < worldSize; rank++) {
      assert.ok(linesOf(r.stdout, rank).includes('CHECKS 11'), `rank ${rank}:\n${r.stdout}`);
    }
  });
}
