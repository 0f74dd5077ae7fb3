// Collectives over real processes started by `plsc launch`: every collective for float32,
// float16, bfloat16 and int64 at world sizes 1-4, uneven allGather, async overlap (the checks run
// in fixtures/collectives-worker.ts; each rank prints how many passed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ops as F } from '../../src/torch/index.js';
import { initProcessGroup, destroyProcessGroup, getProcessGroup } from '../../src/distributed/process-group.js';
import { allReduce, allGather } from '../../src/distributed/collectives.js';
import { fixture, linesOf, runNodeChecks, runPlsc } from './helpers.js';

const worker = fixture('collectives-worker');

for (const worldSize of [1, 2, 3, 4]) {
  test(`world size ${worldSize}: allReduce, allGather (equal and uneven), reduceScatter, broadcast, barrier, async`, async () => {
    const r = await runPlsc(['launch', '--nproc-per-node', String(worldSize), '--', worker]);
    assert.equal(r.code, 0, `launch failed:\n${r.stdout}\n${r.stderr}`);
    const counts = Array.from({ length: worldSize }, (_, rank) => linesOf(r.stdout, rank).find((l) => l.startsWith('CHECKS ')));
    assert.ok(counts.every((c) => c !== undefined && c === counts[0]), `every rank passed the same checks: ${counts.join(', ')}`);
    assert.ok(Number((counts[0] as string).slice(7)) > 60);
  });
}

test('without any launcher environment the worker runs as a group of one', async () => {
  const r = await runNodeChecks(worker, {});
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^CHECKS \d+$/m);
});

test('world size 1 needs no network: a local group whose collectives are identities', async () => {
  const group = await initProcessGroup({ worldSize: 1, rank: 0, masterAddr: 'unreachable.invalid', masterPort: 1 });
  try {
    assert.equal(group.backend, 'local');
    assert.equal(getProcessGroup(), group);
    const t = F.tensor([1, 2, 3]);
    assert.equal(allReduce(t, { op: 'avg' }), t);
    assert.deepEqual(t.toArray(), [1, 2, 3]);
    assert.deepEqual(allGather(F.tensor([[1, 2]])).shape, [1, 2]);
    assert.throws(() => allReduce(F.tensor([1], { dtype: 'int64' }), { op: 'avg' }), /avg needs a floating-point tensor/);
    assert.throws(() => group.broadcast(t, 1), /source rank must be in \[0, 1\)/);
  } finally {
    destroyProcessGroup();
  }
  assert.throws(() => getProcessGroup(), /call initProcessGroup\(\) first/);
  assert.throws(() => group.barrier(), /destroyed/);
});
