// The operator bridge's argument checks and handle construction (native/src/core.cc), called
// through the raw addon so that the JS Tensor layer's own checks do not answer first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { native, type NativeTensor } from '../../src/torch/native.js';
import { ops as F, tidy } from '../../src/index.js';
import { op } from '../../src/torch/dispatch.js';

const NativeTensorClass = native.NativeTensor as new (...args: unknown[]) => NativeTensor;
const addId = (): number => native.opLookup('aten::add', 'Tensor');

test('a NativeTensor cannot be made from JavaScript, with or without arguments', () => {
  assert.throws(() => new NativeTensorClass(), /NativeTensor cannot be constructed from JavaScript/);
  assert.throws(() => new NativeTensorClass({}), /NativeTensor cannot be constructed from JavaScript/);
});

test('tensor arguments: a disposed handle, a look-alike object and a plain object are refused by name', () => {
  const a = F.ones([2]);
  const gone = F.ones([2]).handle;
  gone.dispose();
  assert.throws(() => native.opCall(addId(), [a.handle, gone]), /aten::add\.Tensor: argument 'other' \(Tensor\): tensor was already disposed/);
  const lookAlike = Object.create(NativeTensorClass.prototype as object) as NativeTensor;
  assert.throws(() => native.opCall(addId(), [lookAlike, a.handle]));
  assert.throws(() => native.opCall(addId(), [{} as NativeTensor, a.handle]), /aten::add\.Tensor: argument 'self' \(Tensor\): expected a tensor/);
  assert.throws(() => native.opCall(native.opLookup('aten::cat', ''), [[a.handle, gone]]), /aten::cat: argument 'tensors' \(Tensor\[\]\): tensor was already disposed/);
  a.dispose();
});

test('results come back as live handles and operators still work after refused calls', () => {
  const sum = tidy(() => {
    const out = op('aten::add', 'Tensor').tensor(F.ones([3]), F.full([3], 2));
    assert.equal(out.handle instanceof NativeTensorClass, true);
    return out.toArray();
  });
  assert.deepEqual(sum, [3, 3, 3]);
});
