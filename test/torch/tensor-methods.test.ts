// The Tensor methods installed by tensor-methods.ts, the typed operators that replaced raw
// dispatcher calls in nn/optim, and the package root's surface (no raw dispatcher by name).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as root from '../../src/index.js';
import { ops as F, tidy, Tensor } from '../../src/index.js';

test('the package root exports no raw dispatcher (op, callOp, Op)', () => {
  const names = Object.keys(root);
  for (const raw of ['op', 'callOp', 'Op']) assert.equal(names.includes(raw), false, `${raw} is exported`);
  assert.equal(typeof root.profileOps, 'function');
});

test('installed methods work, are non-enumerable and live on the prototype', () => {
  tidy(() => {
    const t = F.tensor([1, 2, 3]);
    assert.deepEqual(t.add(1).mul(2).toArray(), [4, 6, 8]);
    assert.deepEqual(t.reshape([3, 1]).shape, [3, 1]);
    assert.equal(t.add_(1), t);
    assert.deepEqual(t.toArray(), [2, 3, 4]);
    for (const name of ['add', 'add_', 'reshape', 'dataSync', 'backward', 'detach']) {
      const descriptor = Object.getOwnPropertyDescriptor(Tensor.prototype, name);
      assert.equal(typeof descriptor?.value, 'function', name);
      assert.equal(descriptor?.enumerable, false, name);
    }
    const enumerated: string[] = [];
    for (const key in t) enumerated.push(key);
    assert.deepEqual(enumerated, Object.keys(t), 'only own fields enumerate, no method');
  });
});

test('float16 data comes back as float32 through the installed conversion', () => {
  tidy(() => {
    const half = F.tensor([0.5, -2]).half();
    assert.equal(half.dtype, 'float16');
    const data = half.dataSync();
    assert.equal(data instanceof Float32Array, true);
    assert.deepEqual(Array.from(data as Float32Array), [0.5, -2]);
  });
});

test('typed operators: alias, set_, maximum_, lerp_', () => {
  tidy(() => {
    const t = F.tensor([1, 5, 3]);
    const aliased = F.alias(t);
    assert.equal(aliased.storageId(), t.storageId());
    aliased.dispose();
    assert.deepEqual(t.toArray(), [1, 5, 3]);

    const target = F.zeros([1]);
    F.set_(target, F.tensor([7, 8]));
    assert.deepEqual(target.toArray(), [7, 8]);

    const running = F.tensor([2, 2, 2]);
    assert.equal(F.maximum_(running, t), running);
    assert.deepEqual(running.toArray(), [2, 5, 3]);

    const start = F.tensor([0, 10]);
    F.lerp_(start, F.tensor([10, 20]), 0.25);
    assert.deepEqual(start.toArray(), [2.5, 12.5]);
  });
});

test('typed list operators: foreachAdd, foreachAdd_, foreachMul_, foreachNeg', () => {
  tidy(() => {
    const a = [F.tensor([1, 2]), F.tensor([3])];
    const b = [F.tensor([10, 20]), F.tensor([30])];
    const sums = F.foreachAdd(a, b, 0.5);
    assert.deepEqual(sums.map((t) => t.toArray()), [[6, 12], [18]]);
    assert.deepEqual(a[0]?.toArray(), [1, 2]);
    F.foreachAdd_(a, b, -1);
    assert.deepEqual(a.map((t) => t.toArray()), [[-9, -18], [-27]]);
    F.foreachMul_(a, 2);
    assert.deepEqual(a.map((t) => t.toArray()), [[-18, -36], [-54]]);
    assert.deepEqual(F.foreachNeg(a).map((t) => t.toArray()), [[18, 36], [54]]);
  });
});
