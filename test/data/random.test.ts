import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng, hashSeeds, randomPermutation } from '../../src/data/random.js';

test('Rng is deterministic per seed and differs across seeds', () => {
  const a = new Rng(42);
  const b = new Rng(42);
  const c = new Rng(43);
  const seqA = Array.from({ length: 16 }, () => a.nextU32());
  const seqB = Array.from({ length: 16 }, () => b.nextU32());
  const seqC = Array.from({ length: 16 }, () => c.nextU32());
  assert.deepEqual(seqA, seqB);
  assert.notDeepEqual(seqA, seqC);
});

test('Rng floats are in [0,1) with a plausible mean; normals have mean 0 and variance 1', () => {
  const rng = new Rng(7);
  let sum = 0;
  for (let i = 0; i < 20000; i++) {
    const v = rng.nextFloat();
    assert.ok(v >= 0 && v < 1);
    sum += v;
  }
  assert.ok(Math.abs(sum / 20000 - 0.5) < 0.01);
  let m = 0;
  let s = 0;
  for (let i = 0; i < 20000; i++) {
    const v = rng.normal();
    m += v;
    s += v * v;
  }
  assert.ok(Math.abs(m / 20000) < 0.03);
  assert.ok(Math.abs(s / 20000 - 1) < 0.05);
});

test('randomPermutation is a permutation, deterministic, and seed dependent', () => {
  const p = randomPermutation(1000, 5);
  assert.deepEqual([...p].sort((x, y) => x - y), Array.from({ length: 1000 }, (_, i) => i));
  assert.deepEqual(p, randomPermutation(1000, 5));
  assert.notDeepEqual(p, randomPermutation(1000, 6));
  assert.equal(randomPermutation(0, 1).length, 0);
});

test('hashSeeds depends on every part and on order', () => {
  assert.notEqual(hashSeeds(1, 2), hashSeeds(2, 1));
  assert.notEqual(hashSeeds(1, 2), hashSeeds(1, 3));
  assert.notEqual(hashSeeds(2 ** 32), hashSeeds(0));
  assert.throws(() => hashSeeds(1.5), /integers/);
});
