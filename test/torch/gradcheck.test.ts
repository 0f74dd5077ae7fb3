// Finite-difference gradient checks for every op the models and losses use.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ops as F, gradcheck, manualSeed, customFunction, tidy, type Tensor } from '../../src/index.js';

const f64 = (shape: number[], scale = 1): Tensor => F.mul(F.randn(shape, { dtype: 'float64' }), scale).requiresGrad_(true);
const positive = (shape: number[]): Tensor => F.add(F.rand(shape, { dtype: 'float64' }), 0.5).requiresGrad_(true);

function check(name: string, fn: (...inputs: Tensor[]) => Tensor, makeInputs: () => Tensor[]): void {
  test(`gradcheck ${name}`, () => {
    manualSeed(7);
    tidy(() => {
      const result = gradcheck(fn, makeInputs());
      assert.ok(result.ok, `${name}: max error ${result.maxAbsError}, first mismatch ${JSON.stringify(result.mismatches[0])}`);
    });
  });
}

check('add/sub/mul/div', (a, b) => F.div(F.mul(F.sub(F.add(a, b), 0.3), a), F.add(F.abs(b), 1)), () => [f64([3, 4]), f64([3, 4])]);
check('exp/log/sqrt', (a) => F.add(F.exp(a), F.add(F.log(a), F.sqrt(a))), () => [positive([5])]);
check('acos/cos/sin', (a) => F.add(F.acos(F.mul(F.tanh(a), 0.9)), F.mul(F.cos(a), F.sin(a))), () => [f64([6])]);
check('clamp', (a) => F.clamp(a, -0.5, 0.5), () => [F.tensor([-1.2, -0.3, 0.1, 0.45, 0.9], { dtype: 'float64' }).requiresGrad_(true)]);
check('sum/mean over dims', (a) => F.add(F.sum(a, 1, true), F.mean(a, [0, 1], true)), () => [f64([3, 4])]);
check('mm/addmm/matmul', (a, b, c) => F.add(F.addmm(c, a, b), F.matmul(a, b)), () => [f64([3, 4]), f64([4, 2]), f64([3, 2])]);
check('linear with bias', (x, w, b) => F.linear(x, w, b), () => [f64([3, 4]), f64([5, 4]), f64([5])]);
check('conv2d stride/pad/groups', (x, w, b) => F.conv2d(x, w, b, { stride: 2, padding: 1, groups: 2 }), () => [f64([2, 4, 5, 5]), f64([4, 2, 3, 3]), f64([4])]);
check('batchNorm training', (x, w, b) => F.batchNorm(x, null, null, w, b, { training: true, eps: 1e-5 }), () => [f64([4, 3, 2, 2]), f64([3]), f64([3])]);
check('prelu', (x, w) => F.prelu(x, w), () => [f64([2, 3, 2, 2]), f64([3], 0.3)]);
check('prelu: one slope, [N, C] input, channels-last input', (x, w, y, v) => F.add(F.sum(F.prelu(x, w)), F.sum(F.prelu(F.contiguous(y, 'channels_last'), v))), () => [
  f64([4, 3], 0.3),
  f64([1], 0.3),
  f64([2, 3, 2, 2]),
  f64([3], 0.3),
]);
check('relu/leakyRelu', (x) => F.add(F.relu(x), F.leakyRelu(x, 0.1)), () => [F.tensor([-1, -0.2, 0.3, 1.4], { dtype: 'float64' }).requiresGrad_(true)]);
check('maxPool2d', (x) => F.maxPool2d(x, 2), () => [f64([1, 2, 4, 4])]);
check('avgPool2d/adaptiveAvgPool2d', (x) => F.add(F.avgPool2d(x, 2), F.adaptiveAvgPool2d(x, 2)), () => [f64([1, 2, 4, 4])]);
check('normalize', (x) => F.normalize(x, 2, 1), () => [f64([3, 5])]);
check('logsumexp/logSoftmax', (x) => F.add(F.logSoftmax(x, 1), F.logsumexp(x, 1, true)), () => [f64([3, 5])]);
check('crossEntropy', (x) => F.crossEntropy(x, F.tensor([0, 4, 2], { dtype: 'int64' })), () => [f64([3, 5])]);
check('indexSelect/gather', (x) => F.add(F.indexSelect(x, 0, F.tensor([2, 0], { dtype: 'int64' })), F.gather(x, 1, F.tensor([[1, 0, 3, 3], [2, 2, 0, 1]], { dtype: 'int64' }))), () => [f64([3, 4])]);
check('scatter (src)', (x, s) => F.scatter(x, 1, F.tensor([[0], [2], [1]], { dtype: 'int64' }), s), () => [f64([3, 4]), f64([3, 1])]);
check('reshape/flatten/cat/narrow/transpose', (a, b) => F.narrow(F.cat([F.flatten(a), F.reshape(F.transpose(b, 0, 1), [-1])]), 0, 2, 7), () => [f64([2, 3]), f64([2, 2])]);
check('customFunction (TS backward)', (a) => {
  const [out] = customFunction('Cube', [a], () => [F.mul(F.mul(a, a), a)], ([g]) => [g === null ? null : F.mul(g, F.mul(F.mul(a, a), 3))]);
  return out as Tensor;
}, () => [f64([4])]);

test('gradcheck detects a wrong backward', () => {
  tidy(() => {
    const a = f64([3]);
    const wrong = (x: Tensor): Tensor => {
      const [out] = customFunction('Wrong', [x], () => [F.mul(x, x)], ([g]) => [g === null ? null : F.mul(g, x)]);
      return out as Tensor;
    };
    assert.equal(gradcheck(wrong, [a]).ok, false);
  });
});
