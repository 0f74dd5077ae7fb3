// The launchers' elastic rendezvous on a c10d TCPStore, in one process: rounds close at MAX nodes
// or after the last call with at least MIN, node ranks and rank offsets follow the arrival order, a
// late launcher waits for the next round, a failure opens the next round, and too few launchers
// time out with a message naming the rendezvous.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findFreePort } from '../../src/distributed/launcher.js';
import { RendezvousStore } from '../../src/distributed/rendezvous-store.js';
import { RendezvousFinished, RendezvousTimeout, currentRound, markFinished, rendezvous, type RendezvousSettings } from '../../src/distributed/rendezvous.js';
import { parseEndpoint, parseNodeRange } from '../../src/distributed/elastic-options.js';
import { parseLaunchArgs } from '../../src/distributed/launcher.js';

const settings = (overrides: Partial<RendezvousSettings> = {}): RendezvousSettings => ({
  runId: 'test',
  minNodes: 1,
  maxNodes: 3,
  lastCallMs: 400,
  timeoutMs: 20_000,
  nprocPerNode: 1,
  pollMs: 20,
  ...overrides,
});

async function stores(count: number): Promise<RendezvousStore[]> {
  const port = await findFreePort('127.0.0.1');
  const host = await RendezvousStore.open('127.0.0.1', port, 5000);
  const opened = [host];
  for (let i = 1; i < count; i++) opened.push(await RendezvousStore.open('127.0.0.1', port, 5000));
  return opened;
}

test('the first launcher hosts the store, the others connect; a round closes at MAX nodes with ranks in arrival order', async () => {
  const [a, b] = await stores(2);
  assert.ok(a?.hosted && b !== undefined && !b.hosted);
  try {
    const [ra, rb] = await Promise.all([rendezvous(a, settings({ maxNodes: 2, nprocPerNode: 2 }), 0), rendezvous(b, settings({ maxNodes: 2, nprocPerNode: 3 }), 0)]);
    assert.equal(ra.round, 0);
    assert.equal(rb.round, 0);
    assert.deepEqual([ra.nnodes, rb.nnodes, ra.worldSize, rb.worldSize], [2, 2, 5, 5]);
    assert.deepEqual([ra.nodeRank, rb.nodeRank].sort(), [0, 1]);
    const first = ra.nodeRank === 0 ? ra : rb;
    const second = ra.nodeRank === 0 ? rb : ra;
    assert.equal(first.rankOffset, 0);
    assert.equal(second.rankOffset, first === ra ? 2 : 3);
  } finally {
    b?.close();
    a?.close();
  }
});

test('a late launcher waits for the next round; a failure opens it and all three meet there after the last call', async () => {
  const [a, b, c] = (await stores(3)) as [RendezvousStore, RendezvousStore, RendezvousStore];
  try {
    const round0 = await Promise.all([rendezvous(a, settings(), 0), rendezvous(b, settings(), 0)]);
    assert.deepEqual(round0.map((r) => [r.round, r.nnodes]), [[0, 2], [0, 2]], 'two launchers: closed after the last call (MIN 1, MAX 3)');
    let lateDone = false;
    const late = rendezvous(c, settings(), 0).then((r) => {
      lateDone = true;
      return r;
    });
    await new Promise((resolve) => setTimeout(resolve, 800));
    assert.equal(lateDone, false, 'the late launcher waits while round 0 runs');
    assert.equal(await currentRound(a, 'test'), 0);
    const round1 = await Promise.all([rendezvous(a, settings(), 1), rendezvous(b, settings(), 1), late]);
    assert.deepEqual(round1.map((r) => r.round), [1, 1, 1]);
    assert.deepEqual(round1.map((r) => r.nnodes), [3, 3, 3]);
    assert.deepEqual(round1.map((r) => r.nodeRank).sort(), [0, 1, 2]);
    assert.equal(await currentRound(c, 'test'), 1);

    // A launcher waiting to be taken in when the job finishes stops waiting.
    const waiting = rendezvous(c, settings(), 0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await markFinished(a, 'test');
    await assert.rejects(waiting, (error: Error) => error instanceof RendezvousFinished && /the job finished \(its workers succeeded\) before a round took this node in/.test(error.message));
  } finally {
    c.close();
    b.close();
    a.close();
  }
});

test('fewer than MIN launchers: the rendezvous times out naming the id, the endpoint and the count', async () => {
  const [a] = (await stores(1)) as [RendezvousStore];
  try {
    await assert.rejects(rendezvous(a, settings({ minNodes: 2, timeoutMs: 500 }), 0), (error: Error) => {
      assert.ok(error instanceof RendezvousTimeout);
      assert.match(error.message, /^rendezvous 'test' at 127\.0\.0\.1:\d+: only 1 of at least 2 nodes joined round 0 within 0\.5 s \(--rdzv-timeout\)$/);
      return true;
    });
  } finally {
    a.close();
  }
});

test('elastic launch options: torchrun names, checked', () => {
  assert.deepEqual(parseNodeRange('1:4'), { minNodes: 1, maxNodes: 4 });
  assert.deepEqual(parseNodeRange('2'), { minNodes: 2, maxNodes: 2 });
  assert.throws(() => parseNodeRange('3:2'), /needs 1 <= MIN <= MAX/);
  assert.deepEqual(parseEndpoint('10.0.0.1:29500'), { host: '10.0.0.1', port: 29500 });
  assert.deepEqual(parseEndpoint('node0'), { host: 'node0', port: 29400 });
  assert.deepEqual(parseEndpoint('[::1]:1234'), { host: '::1', port: 1234 });
  const parsed = parseLaunchArgs(['--nproc-per-node', '2', '--nnodes', '1:2', '--rdzv-endpoint', '127.0.0.1:5000', '--rdzv-id', 'job7', '--rdzv-last-call', '3', '--', 'x']);
  assert.deepEqual(parsed.elastic, { endpointHost: '127.0.0.1', endpointPort: 5000, runId: 'job7', minNodes: 1, maxNodes: 2, lastCallMs: 3000 });
  assert.equal(parsed.nnodes, undefined);
  assert.throws(() => parseLaunchArgs(['--nproc-per-node', '2', '--nnodes', '1:2', '--', 'x']), /--nnodes MIN:MAX needs --rdzv-endpoint HOST:PORT/);
  assert.throws(() => parseLaunchArgs(['--nproc-per-node', '2', '--rdzv-endpoint', 'h:1', '--node-rank', '0', '--', 'x']), /--node-rank cannot be combined with --rdzv-endpoint/);
  assert.throws(() => parseLaunchArgs(['--nproc-per-node', '2', '--rdzv-endpoint', 'h:1', '--rdzv-id', 'a b', '--', 'x']), /--rdzv-id needs an id/);
});
