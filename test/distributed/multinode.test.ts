// Two launchers with --nnodes 2 on one machine (127.0.0.1) form one group of 4, as two nodes would.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findFreePort } from '../../src/distributed/launcher.js';
import { fixture, linesOf, startPlsc } from './helpers.js';

const trainer = fixture('train-worker');

test('two launchers (--nnodes 2 --node-rank 0|1) form one group of 4', async () => {
  const port = await findFreePort('127.0.0.1');
  const node = (nodeRank: number): ReturnType<typeof startPlsc> =>
    startPlsc(
      ['launch', '--nproc-per-node', '2', '--nnodes', '2', '--node-rank', String(nodeRank), '--master-addr', '127.0.0.1', '--master-port', String(port), '--', trainer],
      { STEPS: '3' },
    );
  // Node 1 first: its workers must wait for rank 0's store to appear.
  const second = node(1);
  await new Promise((r) => setTimeout(r, 500));
  const first = node(0);
  const [r0, r1] = [await first.done, await second.done];
  assert.equal(r0.code, 0, `node 0:\n${r0.stdout}\n${r0.stderr}`);
  assert.equal(r1.code, 0, `node 1:\n${r1.stdout}\n${r1.stderr}`);
  const seen: string[] = [];
  for (const [nodeRank, r] of [[0, r0], [1, r1]] as const) {
    for (let local = 0; local < 2; local++) {
      const rank = nodeRank * 2 + local;
      const lines = linesOf(r.stdout, rank);
      seen.push(lines.find((l) => l.startsWith('JOINED')) as string);
      // allReduce(sum) of rank+1 over 4 ranks: 1+2+3+4.
      assert.deepEqual(lines.filter((l) => l.startsWith('SUM')), ['SUM 10', 'SUM 10', 'SUM 10'], `rank ${rank}`);
    }
  }
  assert.deepEqual(seen, ['JOINED 0/4 local 0 group 0', 'JOINED 1/4 local 1 group 0', 'JOINED 2/4 local 0 group 1', 'JOINED 3/4 local 1 group 1']);
});
