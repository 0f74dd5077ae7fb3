import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FairDecodeQueue } from '../../src/serve/decode-queue.js';

/** A task that records its start and finishes when the test says so. */
function controlled(log: string[], name: string): { task: () => Promise<string>; finish: () => void } {
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  return {
    task: async () => {
      log.push(`start ${name}`);
      await done;
      return name;
    },
    finish: () => finish(),
  };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('a one-task group queued behind a large group starts after one turn of it, not after the whole group', async () => {
  const queue = new FairDecodeQueue(1);
  const log: string[] = [];
  const large = queue.group();
  const bigTasks = [0, 1, 2, 3].map((i) => controlled(log, `big${i}`));
  const bigResults = bigTasks.map(({ task }) => large.run(task));
  await tick();
  const small = queue.group().run(controlled(log, 'small').task);
  assert.equal(queue.active, 1);
  assert.equal(queue.waiting, 4);
  // big1 had its turn queued before the small group arrived; after it, the small group goes first.
  bigTasks[0]!.finish();
  await tick();
  bigTasks[1]!.finish();
  await tick();
  assert.deepEqual(log, ['start big0', 'start big1', 'start small']);
  assert.equal(queue.waiting, 2);
  assert.deepEqual(await Promise.all(bigResults.slice(0, 2)), ['big0', 'big1']);
  void small;
});

test('slots go to the waiting groups in turn and never exceed the concurrency', async () => {
  const queue = new FairDecodeQueue(2);
  const log: string[] = [];
  const finishers = new Map<string, () => void>();
  const results: Promise<string>[] = [];
  for (const name of ['a', 'b', 'c']) {
    const group = queue.group();
    for (let i = 0; i < 3; i++) {
      const { task, finish } = controlled(log, `${name}${i}`);
      finishers.set(`${name}${i}`, finish);
      results.push(group.run(task));
    }
  }
  await tick();
  assert.deepEqual(log, ['start a0', 'start a1']);
  let maxActive = queue.active;
  // Finish the oldest running task, one at a time, until all nine have run.
  for (let finished = 0; finished < 9; finished++) {
    finishers.get(log[finished]!.slice('start '.length))!();
    await tick();
    maxActive = Math.max(maxActive, queue.active);
  }
  assert.deepEqual(await Promise.all(results), ['a0', 'a1', 'a2', 'b0', 'b1', 'b2', 'c0', 'c1', 'c2']);
  assert.equal(maxActive, 2);
  // After a0 and a1, each freed slot goes to the next group in turn (a, b, c, b, c, ...).
  assert.deepEqual(log.map((line) => line.slice('start '.length)), ['a0', 'a1', 'a2', 'b0', 'c0', 'b1', 'c1', 'b2', 'c2']);
});

test('cancel drops the group\'s tasks that have not started; running ones finish; failures reach the caller', async () => {
  const queue = new FairDecodeQueue(1);
  const log: string[] = [];
  const group = queue.group();
  const first = controlled(log, 'first');
  const running = group.run(first.task);
  const dropped = group.run(controlled(log, 'never').task);
  await tick();
  group.cancel(new Error('request failed'));
  await assert.rejects(dropped, /request failed/);
  assert.equal(queue.waiting, 0);
  first.finish();
  assert.equal(await running, 'first');
  await assert.rejects(queue.group().run(async () => {
    throw new Error('bad image');
  }), /bad image/);
  assert.equal(queue.active, 0);
  assert.deepEqual(log, ['start first']);
  assert.throws(() => new FairDecodeQueue(0), /concurrency must be a positive integer/);
});
