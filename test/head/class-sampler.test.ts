// Partial FC's per-step class sample, on its own: size, order, positives, determinism, spread.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sampleClasses, sampledClassCount } from '../../src/index.js';

function assertSortedUnique(index: Int32Array, numLocalClasses: number): void {
  for (let i = 0; i < index.length; i++) {
    const c = index[i] as number;
    assert.ok(c >= 0 && c < numLocalClasses, `index[${i}] = ${c} is outside the shard`);
    if (i > 0) assert.ok(c > (index[i - 1] as number), `index is not strictly increasing at ${i}`);
  }
}

test('class sample: budget-sized, sorted, unique, every positive kept (sparse and dense draws)', () => {
  for (const [numLocal, rate] of [[1000, 0.1], [1000, 0.9], [37, 0.5], [5, 1]] as const) {
    const positives = [3, 3, 0, numLocal - 1, 17 % numLocal];
    const { index, numPositives } = sampleClasses(positives, numLocal, rate, { seed: 1, rank: 0, step: 4 });
    assert.equal(numPositives, new Set(positives).size);
    assert.equal(index.length, sampledClassCount(numLocal, rate));
    assertSortedUnique(index, numLocal);
    const members = new Set(index);
    for (const p of positives) assert.ok(members.has(p), `positive ${p} missing at rate ${rate}`);
  }
});

test('class sample: more positives than the budget keeps them all', () => {
  const positives = Array.from({ length: 30 }, (_, i) => i * 3);
  const { index, numPositives } = sampleClasses(positives, 100, 0.1, { seed: 0, rank: 0, step: 0 });
  assert.equal(numPositives, 30);
  assert.deepEqual(Array.from(index), positives);
});

test('class sample: a pure function of (seed, rank, step) and the positives', () => {
  const draw = (seed: number, rank: number, step: number): number[] =>
    Array.from(sampleClasses([5, 9], 500, 0.2, { seed, rank, step }).index);
  assert.deepEqual(draw(3, 1, 7), draw(3, 1, 7));
  assert.notDeepEqual(draw(3, 1, 7), draw(3, 1, 8));
  assert.notDeepEqual(draw(3, 1, 7), draw(3, 0, 7));
  assert.notDeepEqual(draw(3, 1, 7), draw(4, 1, 7));
});

test('class sample: negatives spread over the whole shard', () => {
  const numLocal = 200;
  const counts = new Array<number>(numLocal).fill(0);
  const steps = 400;
  for (let step = 0; step < steps; step++) {
    for (const c of sampleClasses([0], numLocal, 0.1, { seed: 9, rank: 0, step }).index) counts[c] = (counts[c] as number) + 1;
  }
  assert.equal(counts[0], steps);
  // Each other class is drawn with probability 19/199 per step (expected ~38 of 400).
  for (let c = 1; c < numLocal; c++) {
    assert.ok((counts[c] as number) > 15 && (counts[c] as number) < 65, `class ${c} drawn ${counts[c]} times in ${steps} steps`);
  }
});
