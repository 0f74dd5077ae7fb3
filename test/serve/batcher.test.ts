import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { DynamicBatcher, OverloadedError } from '../../src/serve/batcher.js';
import { MetricsRegistry } from '../../src/serve/metrics.js';

function recordingBatcher(options: { maxBatch: number; maxWaitMs: number; maxQueue: number }, delayMs = 0) {
  const batches: number[][] = [];
  const batcher = new DynamicBatcher<number, number>(async (inputs) => {
    batches.push([...inputs]);
    if (delayMs) await sleep(delayMs);
    return inputs.map((value) => value * 10);
  }, options);
  return { batcher, batches };
}

test('concurrent submissions are grouped into batches of at most maxBatch, in order', async () => {
  const { batcher, batches } = recordingBatcher({ maxBatch: 4, maxWaitMs: 1000, maxQueue: 100 });
  const results = await Promise.all([batcher.run([1, 2]), batcher.run([3]), batcher.run([4, 5, 6]), batcher.run([7, 8])]);
  assert.deepEqual(results, [[10, 20], [30], [40, 50, 60], [70, 80]]);
  assert.deepEqual(batches, [[1, 2, 3, 4], [5, 6, 7, 8]]);
});

test('a partial batch runs after maxWaitMs', async () => {
  const { batcher, batches } = recordingBatcher({ maxBatch: 64, maxWaitMs: 30, maxQueue: 100 });
  const started = performance.now();
  assert.deepEqual(await batcher.run([1]), [10]);
  assert.ok(performance.now() - started >= 25);
  assert.deepEqual(batches, [[1]]);
});

test('items arriving while a batch runs are batched together for the next run', async () => {
  const { batcher, batches } = recordingBatcher({ maxBatch: 8, maxWaitMs: 0, maxQueue: 100 }, 40);
  const first = batcher.run([1]);
  await sleep(5);
  const rest = [batcher.run([2]), batcher.run([3]), batcher.run([4])];
  await Promise.all([first, ...rest]);
  assert.deepEqual(batches, [[1], [2, 3, 4]]);
});

test('admission beyond maxQueue throws OverloadedError; release frees the slots', async () => {
  const { batcher } = recordingBatcher({ maxBatch: 8, maxWaitMs: 20, maxQueue: 3 });
  const held = batcher.admit(2);
  assert.equal(batcher.queueDepth, 2);
  assert.throws(() => batcher.admit(2), (error: unknown) => error instanceof OverloadedError && /2 images queued, limit 3/.test(error.message));
  held.release();
  held.release();
  assert.equal(batcher.queueDepth, 0);
  const again = batcher.admit(3);
  const result = again.submit([1, 2, 3]);
  assert.equal(batcher.queueDepth, 3);
  await assert.rejects(again.submit([1, 2, 3]), /already used/);
  assert.deepEqual(await result, [10, 20, 30]);
  await batcher.idle();
  assert.equal(batcher.queueDepth, 0);
});

test('a failing model run rejects every request in the batch and the batcher keeps working', async () => {
  let fail = true;
  const batcher = new DynamicBatcher<number, number>(async (inputs) => {
    if (fail) throw new Error('model exploded');
    return inputs;
  }, { maxBatch: 4, maxWaitMs: 5, maxQueue: 10 });
  const outcomes = await Promise.allSettled([batcher.run([1]), batcher.run([2])]);
  assert.deepEqual(outcomes.map((o) => o.status), ['rejected', 'rejected']);
  fail = false;
  assert.deepEqual(await batcher.run([3]), [3]);
});

test('metrics registry renders Prometheus text with escaped labels and cumulative buckets', () => {
  const registry = new MetricsRegistry();
  const counter = registry.counter('x_total', 'Things.', ['route']);
  counter.inc({ route: 'a"b\\c' });
  counter.inc({ route: 'a"b\\c' }, 2);
  registry.counter('idle_total', 'Never incremented.');
  const histogram = registry.histogram('h', 'Sizes.', [1, 4]);
  histogram.observe({}, 1);
  histogram.observe({}, 3);
  histogram.observe({}, 9);
  registry.gauge('g', 'A gauge.', () => 7);
  const text = registry.render();
  assert.match(text, /^x_total\{route="a\\"b\\\\c"\} 3$/m);
  assert.match(text, /^idle_total 0$/m);
  assert.match(text, /^h_bucket\{le="1"\} 1$/m);
  assert.match(text, /^h_bucket\{le="4"\} 2$/m);
  assert.match(text, /^h_bucket\{le="\+Inf"\} 3$/m);
  assert.match(text, /^h_sum 13$/m);
  assert.match(text, /^h_count 3$/m);
  assert.match(text, /^# TYPE g gauge\ng 7$/m);
});
