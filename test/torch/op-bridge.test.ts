// The operator bridge's argument checks and handle construction (native/src/core.cc), called
// through the raw addon so that the JS Tensor layer's own checks do not answer first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { native, isNativeTensor, NATIVE_TENSOR_BASE, type NativeTensor } from '../../src/torch/native.js';
import { ops as F, tidy } from '../../src/index.js';
import { op } from '../../src/torch/dispatch.js';

const addId = (): number => native.opLookup('aten::add', 'Tensor');

test('tensor arguments: a disposed handle, an ordinary number and a plain object are refused by name', () => {
  const a = F.ones([2]);
  const gone = F.ones([2]).handle;
  native.tensorRelease(gone);
  assert.throws(() => native.opCall(addId(), a.handle, gone), /aten::add\.Tensor: argument 'other' \(Tensor\): tensor was already disposed/);
  assert.throws(() => native.opCall(addId(), 3 as NativeTensor, a.handle), /aten::add\.Tensor: argument 'self' \(Tensor\): expected a tensor/);
  assert.throws(() => native.opCall(addId(), {} as NativeTensor, a.handle), /aten::add\.Tensor: argument 'self' \(Tensor\): expected a tensor/);
  assert.throws(() => native.opCall(native.opLookup('aten::cat', ''), [a.handle, gone]), /aten::cat: argument 'tensors' \(Tensor\[\]\): tensor was already disposed/);
  assert.throws(() => native.tensorShape(gone), /shape: tensor was already disposed/);
  a.dispose();
});

test('a released slot is reused under a new handle: the old handle stays refused', () => {
  const first = F.ones([1]).handle;
  native.tensorRelease(first);
  native.tensorRelease(first);
  const second = F.zeros([1]);
  assert.notEqual(second.handle, first);
  assert.equal(native.tensorIsLive(first), false);
  assert.equal(native.tensorIsLive(second.handle), true);
  assert.throws(() => native.opCall(addId(), first, second.handle), /tensor was already disposed/);
  second.dispose();
});

test('results come back as live handles and operators still work after refused calls', () => {
  const sum = tidy(() => {
    const out = op('aten::add', 'Tensor').tensor(F.ones([3]), F.full([3], 2));
    assert.equal(isNativeTensor(out.handle), true);
    assert.equal(out.handle >= NATIVE_TENSOR_BASE, true);
    return out.toArray();
  });
  assert.deepEqual(sum, [3, 3, 3]);
});

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

test('tensors no scope owns are freed by the GC once forgotten; scoped and disposed ones at once', async () => {
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) {
      collectGarbage();
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  await settle();
  const base = native.tensorLiveCount();
  tidy(() => {
    for (let i = 0; i < 50; i++) F.ones([4]);
    assert.equal(native.tensorLiveCount(), base + 50);
  });
  assert.equal(native.tensorLiveCount(), base, 'the scope released its tensors');
  const disposed = F.ones([4]);
  disposed.dispose();
  disposed.dispose();
  assert.equal(native.tensorLiveCount(), base);
  (() => {
    for (let i = 0; i < 50; i++) F.ones([4]);
  })();
  assert.equal(native.tensorLiveCount(), base + 50, 'forgotten tensors live until the GC finds them');
  await settle();
  assert.equal(native.tensorLiveCount(), base, 'the GC released the forgotten tensors');
});
