// agreeOnInput: one rank's bad input makes every rank raise the same error, naming that rank.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProcessGroup } from '../../src/distributed/process-group.js';
import { agreeOnInput } from '../../src/distributed/agree.js';
import { fixture, linesOf, runPlsc } from './helpers.js';

const worker = fixture('agree-worker');

test('agreeOnInput in a group of one: the problem is raised as is, or nothing happens', () => {
  const group = ProcessGroup.local();
  assert.throws(() => agreeOnInput(group, 'labels[2] = 7', 'Check'), { name: 'RangeError', message: 'Check: labels[2] = 7' });
  assert.doesNotThrow(() => agreeOnInput(group, null, 'Check'));
});

test('agreeOnInput over 2 processes: both ranks raise rank 1 problem; with none both go on', async () => {
  for (const [badRank, expected] of [['1', 'AGREED Check on rank 1: labels[1] = -1 (négatif)'], ['-1', 'AGREED ok']] as const) {
    const r = await runPlsc(['launch', '--nproc-per-node', '2', '--', worker], { BAD_RANK: badRank });
    assert.equal(r.code, 0, `launch failed:\n${r.stdout}\n${r.stderr}`);
    for (const rank of [0, 1]) {
      const lines = linesOf(r.stdout, rank);
      assert.ok(lines.includes(expected), `rank ${rank}: ${lines.join(' | ')}`);
      assert.ok(lines.includes('AFTER 2'), `rank ${rank} still runs collectives`);
    }
  }
});
