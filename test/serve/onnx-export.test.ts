import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/onnx/ort-telemetry.js';
import ort from 'onnxruntime-node';
import { OnnxGraphBuilder, onnxAttr } from '../../src/onnx/builder.js';
import { decodeModelProto, OnnxAttributeType, OnnxDataType } from '../../src/onnx/proto.js';
import {
  emitAdd,
  emitAvgPool2d,
  emitBatchNorm,
  emitConv2d,
  emitDropout,
  emitFlatten,
  emitGlobalAvgPool,
  emitL2Normalize,
  emitLinear,
  emitMaxPool2d,
  emitPRelu,
  emitRelu,
  emitReshape,
} from '../../src/onnx/layers.js';
import { float32ToHalf, halfBitsToFloat, halfToFloat32, floatToHalfBits } from '../../src/centers/float16.js';
import * as ref from './fixtures/reference-ops.js';

async function runModel(bytes: Uint8Array, feeds: Record<string, ref.RefTensor>): Promise<Record<string, ref.RefTensor>> {
  const session = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'disabled' });
  try {
    const inputs: Record<string, ort.Tensor> = {};
    for (const [name, tensor] of Object.entries(feeds)) inputs[name] = new ort.Tensor('float32', tensor.data, tensor.shape);
    const results = await session.run(inputs);
    const out: Record<string, ref.RefTensor> = {};
    for (const [name, value] of Object.entries(results)) {
      const tensor = value as ort.Tensor;
      out[name] = { data: tensor.data as Float32Array, shape: tensor.dims.map(Number) };
    }
    return out;
  } finally {
    await session.release();
  }
}

function bnParams(channels: number, random: () => number) {
  return {
    runningMean: ref.randomArray(channels, random, 0.5),
    runningVar: ref.randomArray(channels, random, 0.4, 1),
    weight: ref.randomArray(channels, random, 0.3, 1),
    bias: ref.randomArray(channels, random, 0.2),
    eps: 1e-5,
  };
}

test('conv -> bn -> prelu -> flatten -> gemm -> bn1d matches the reference at several batch sizes and opsets', async () => {
  const random = ref.rng(7);
  const [c, h, w, oc, emb] = [3, 9, 7, 6, 10];
  const convWeight = ref.randomArray(oc * c * 3 * 3, random, 0.4);
  const convBias = ref.randomArray(oc, random, 0.1);
  const bn2d = bnParams(oc, random);
  const slope = ref.randomArray(oc, random, 0.25, 0.25);
  const oh = Math.floor((h + 2 - 3) / 2) + 1;
  const ow = Math.floor((w + 2 - 3) / 2) + 1;
  const fcIn = oc * oh * ow;
  const fcWeight = ref.randomArray(emb * fcIn, random, 0.2);
  const fcBias = ref.randomArray(emb, random, 0.1);
  const bn1d = bnParams(emb, random);

  const g = new OnnxGraphBuilder('tiny');
  let x = g.input('input', 'float32', ['N', c, h, w]);
  x = emitConv2d(g, x, { name: 'conv1', weight: convWeight, weightShape: [oc, c, 3, 3], bias: convBias, stride: 2, padding: 1 });
  x = emitBatchNorm(g, x, { name: 'bn1', ...bn2d });
  x = emitPRelu(g, x, { name: 'prelu', slope });
  x = emitFlatten(g, x);
  x = emitDropout(g, x);
  x = emitLinear(g, x, { name: 'fc', weight: fcWeight, weightShape: [emb, fcIn], bias: fcBias });
  x = emitBatchNorm(g, x, { name: 'features', ...bn1d });
  g.output(x, 'float32', ['N', emb]);

  for (const opset of [13, 17, 21]) {
    const bytes = g.toBytes({ opset });
    for (const batch of [1, 3]) {
      const input: ref.RefTensor = { data: ref.randomArray(batch * c * h * w, random), shape: [batch, c, h, w] };
      let expected = ref.conv2d(input, convWeight, [oc, c, 3, 3], convBias, [2, 2], [1, 1], [1, 1], 1);
      expected = ref.batchNorm(expected, bn2d.runningMean, bn2d.runningVar, bn2d.weight, bn2d.bias, 1e-5);
      expected = ref.prelu(expected, slope);
      expected = ref.flatten(expected);
      expected = ref.linear(expected, fcWeight, emb, fcBias);
      expected = ref.batchNorm(expected, bn1d.runningMean, bn1d.runningVar, bn1d.weight, bn1d.bias, 1e-5);
      const actual = (await runModel(bytes, { input }))[x]!;
      assert.deepEqual(actual.shape, [batch, emb]);
      const diff = ref.maxAbsDiff(actual.data, expected.data);
      assert.ok(diff < 1e-4, `opset ${opset} batch ${batch}: max |diff| ${diff}`);
    }
  }
});

test('grouped/dilated conv, residual add, pools, relu, matmul linear, reshape and l2-normalize match the reference', async () => {
  const random = ref.rng(11);
  const [n, c, h, w] = [2, 4, 10, 10];
  const input: ref.RefTensor = { data: ref.randomArray(n * c * h * w, random), shape: [n, c, h, w] };
  const depthwise = ref.randomArray(c * 1 * 3 * 3, random, 0.5);
  const dilated = ref.randomArray(c * c * 3 * 3, random, 0.3);
  const slopeShared = new Float32Array([0.1]);

  const g = new OnnxGraphBuilder();
  const x0 = g.input('input', 'float32', ['N', c, h, w]);
  const dw = emitConv2d(g, x0, { name: 'dw', weight: depthwise, weightShape: [c, 1, 3, 3], padding: 1, groups: c });
  const dil = emitConv2d(g, dw, { name: 'dil', weight: dilated, weightShape: [c, c, 3, 3], padding: 2, dilation: 2 });
  const residual = emitAdd(g, dil, x0);
  const act = emitPRelu(g, residual, { slope: slopeShared });
  const rel = emitRelu(g, act);
  const maxp = emitMaxPool2d(g, rel, { kernelSize: 3, stride: 2, padding: 1 });
  const avgIncl = emitAvgPool2d(g, maxp, { kernelSize: 3, stride: 1, padding: 1 });
  const avgExcl = emitAvgPool2d(g, maxp, { kernelSize: 3, stride: 1, padding: 1, countIncludePad: false });
  const gap = emitGlobalAvgPool(g, avgIncl);
  const flat = emitReshape(g, gap, [0, -1]);
  const fcWeight = ref.randomArray(5 * c, random, 0.5);
  const fcBias = ref.randomArray(5, random, 0.1);
  const fc = emitLinear(g, flat, { weight: fcWeight, weightShape: [5, c], bias: fcBias, mode: 'matmul' });
  const normalized = emitL2Normalize(g, fc);
  g.output(avgExcl, 'float32', ['N', c, 5, 5]);
  g.output(normalized, 'float32', ['N', 5]);

  const result = await runModel(g.toBytes(), { input });
  let e = ref.conv2d(input, depthwise, [c, 1, 3, 3], undefined, [1, 1], [1, 1], [1, 1], c);
  e = ref.conv2d(e, dilated, [c, c, 3, 3], undefined, [1, 1], [2, 2], [2, 2], 1);
  e = ref.relu(ref.prelu(ref.add(e, input), slopeShared));
  const pooled = ref.pool2d(e, 'max', 3, 2, 1, false);
  const expectedExcl = ref.pool2d(pooled, 'avg', 3, 1, 1, false);
  const expectedIncl = ref.pool2d(pooled, 'avg', 3, 1, 1, true);
  const expectedNorm = ref.l2Normalize(ref.linear(ref.flatten(ref.globalAvgPool(expectedIncl)), fcWeight, 5, fcBias));
  assert.deepEqual(result[avgExcl]!.shape, [n, c, 5, 5]);
  assert.ok(ref.maxAbsDiff(result[avgExcl]!.data, expectedExcl.data) < 1e-4);
  assert.ok(ref.maxAbsDiff(result[normalized]!.data, expectedNorm.data) < 1e-4);
});

test('fp16 weights are stored as float16 initializers and cast back to float32', async () => {
  const random = ref.rng(3);
  const weight = ref.randomArray(4 * 2 * 1 * 1, random);
  const half = float32ToHalf(weight);
  const g = new OnnxGraphBuilder();
  const x = g.input('x', 'float32', ['N', 2, 3, 3]);
  const y = emitConv2d(g, x, { weight: { float16: half }, weightShape: [4, 2, 1, 1] });
  g.output(y, 'float32', ['N', 4, 3, 3]);
  const bytes = g.toBytes();
  const model = decodeModelProto(bytes);
  assert.equal(model.graph.initializer[0]!.dataType, OnnxDataType.FLOAT16);
  const input: ref.RefTensor = { data: ref.randomArray(18, random), shape: [1, 2, 3, 3] };
  const expected = ref.conv2d(input, halfToFloat32(half), [4, 2, 1, 1], undefined, [1, 1], [0, 0], [1, 1], 1);
  const actual = (await runModel(bytes, { x: input }))[y]!;
  assert.ok(ref.maxAbsDiff(actual.data, expected.data) < 1e-5);
});

test('the serialized model decodes back to the same graph structure', () => {
  const g = new OnnxGraphBuilder('roundtrip');
  const x = g.input('images', 'float32', ['N', 3, 4, 4]);
  const y = emitConv2d(g, x, { name: 'c', weight: new Float32Array(2 * 3 * 3 * 3).fill(0.5), weightShape: [2, 3, 3, 3], stride: [2, 1], padding: [1, 0] });
  g.output(y, 'float32', ['N', 2, 2, 2]);
  const model = decodeModelProto(g.toBytes({ opset: 17, metadata: { embedding_dim: '2' } }));
  assert.equal(model.irVersion, 8);
  assert.deepEqual(model.opsetImport.map((o) => [o.domain, o.version]), [['', 17]]);
  assert.equal(model.graph.name, 'roundtrip');
  assert.deepEqual(model.graph.input[0]!.type.tensorType.shape.dim.map((d) => d.dimParam || d.dimValue), ['N', 3, 4, 4]);
  const conv = model.graph.node[0]!;
  assert.equal(conv.opType, 'Conv');
  const attrs = Object.fromEntries(conv.attribute.map((a) => [a.name, a]));
  assert.equal(attrs.strides!.type, OnnxAttributeType.INTS);
  assert.deepEqual(attrs.strides!.ints, [2, 1]);
  assert.deepEqual(attrs.pads!.ints, [1, 0, 1, 0]);
  assert.equal(attrs.group!.i, 1);
  assert.deepEqual(model.graph.initializer[0]!.dims, [2, 3, 3, 3]);
  assert.equal(model.graph.initializer[0]!.rawData!.length, 2 * 3 * 3 * 3 * 4);
  assert.deepEqual(model.metadataProps, [{ key: 'embedding_dim', value: '2' }]);
});

test('attribute types: integral numbers are INT, others FLOAT, and onnxAttr forces a type', () => {
  const g = new OnnxGraphBuilder();
  const x = g.input('x', 'float32', [2, 2]);
  g.node('Gemm', [x, x], ['y'], { alpha: 0.5, beta: onnxAttr.float(1), transB: 1, list: [1, 2], flist: [0.5, 1], names: ['a', 'b'] });
  g.output('y', 'float32', [2, 2]);
  const attrs = Object.fromEntries(decodeModelProto(g.toBytes()).graph.node[0]!.attribute.map((a) => [a.name, a]));
  assert.equal(attrs.alpha!.type, OnnxAttributeType.FLOAT);
  assert.equal(attrs.beta!.type, OnnxAttributeType.FLOAT);
  assert.equal(attrs.beta!.f, 1);
  assert.equal(attrs.transB!.type, OnnxAttributeType.INT);
  assert.equal(attrs.list!.type, OnnxAttributeType.INTS);
  assert.equal(attrs.flist!.type, OnnxAttributeType.FLOATS);
  assert.equal(attrs.names!.type, OnnxAttributeType.STRINGS);
});

test('builder rejects malformed graphs with messages naming the value', () => {
  const g = new OnnxGraphBuilder();
  g.input('x', 'float32', ['N', 4]);
  assert.throws(() => g.input('x', 'float32', [1]), /'x' already exists/);
  assert.throws(() => g.node('Relu', ['missing'], ['y']), /input 0 'missing' is not defined/);
  assert.throws(() => g.initializer('w', new Float32Array(5), [2, 2]), /'w'.*hold 4 elements but the data has 5/);
  assert.throws(() => g.input('z', 'float32', [-1]), /dimension 0 must be a non-negative integer/);
  assert.throws(() => g.output('nope', 'float32', [1]), /'nope': no value/);
  assert.throws(() => g.toBytes(), /no outputs/);
  g.node('Relu', ['x'], ['y']);
  g.output('y', 'float32', ['N', 4]);
  assert.throws(() => g.toBytes({ opset: 9 }), /opset 9 is not supported/);
  assert.throws(() => emitConv2d(g, 'x', { weight: new Float32Array(3), weightShape: [1, 1, 2, 2] }), /conv.weight \[1, 1, 2, 2\]: expected 4 values, got 3/);
  assert.equal(g.freshName('y'), 'y_1');
  assert.equal(g.freshName('y'), 'y_2');
});

test('float16 conversion rounds to nearest even and handles specials', () => {
  assert.equal(floatToHalfBits(1), 0x3c00);
  assert.equal(floatToHalfBits(-2), 0xc000);
  assert.equal(floatToHalfBits(65504), 0x7bff);
  assert.equal(floatToHalfBits(70000), 0x7c00);
  assert.equal(floatToHalfBits(2 ** -24), 0x0001);
  assert.equal(floatToHalfBits(1 + 2 ** -11), 0x3c00); // halfway, rounds to even
  assert.equal(floatToHalfBits(1 + 3 * 2 ** -11), 0x3c02);
  assert.ok(Number.isNaN(halfBitsToFloat(floatToHalfBits(NaN))));
  assert.equal(halfBitsToFloat(0x3555), 0.333251953125);
  const values = ref.randomArray(1000, ref.rng(1), 100);
  const back = halfToFloat32(float32ToHalf(values));
  for (let i = 0; i < values.length; i++) assert.ok(Math.abs(back[i]! - values[i]!) <= Math.abs(values[i]!) * 2 ** -11 + 1e-7);
});
