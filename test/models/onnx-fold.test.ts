// ONNX export of the BN-folded inference form (the default): fewer nodes, the same outputs as the
// libtorch eval forward and as the unfolded export, value names from the module paths.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/onnx/ort-telemetry.js';
import ort from 'onnxruntime-node';
import { createBackbone, exportOnnx, manualSeed, noGrad, ops as F, tidy, type Backbone } from '../../src/index.js';
import { decodeModelProto } from '../../src/onnx/proto.js';
import { maxAbs, maxAbsDiff, randomizeForInference } from './fixtures/helpers.js';

const TOLERANCE = 1e-4;

async function runOnnx(bytes: Uint8Array, input: Float32Array, shape: number[]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    const result = await session.run({ input: new ort.Tensor('float32', input, shape) });
    return (result['embedding'] as ort.Tensor).data as Float32Array;
  } finally {
    await session.release();
  }
}

function opCounts(bytes: Uint8Array): Map<string, number> {
  const counts = new Map<string, number>();
  for (const node of decodeModelProto(bytes).graph?.node ?? []) counts.set(node.opType ?? '', (counts.get(node.opType ?? '') ?? 0) + 1);
  return counts;
}

function total(counts: Map<string, number>): number {
  return [...counts.values()].reduce((a, b) => a + b, 0);
}

const cases: { name: string; build: () => Backbone; foldedBatchNorms: number }[] = [
  { name: 'iresnet18 at 32x32', build: () => createBackbone('iresnet18', { inputSize: 32, embeddingSize: 16 }), foldedBatchNorms: 8 },
  { name: 'mobilefacenet at 32x32', build: () => createBackbone('mobilefacenet', { inputSize: 32, embeddingSize: 16 }), foldedBatchNorms: 0 },
  { name: 'mobilefacenet-s1 at 32x32', build: () => createBackbone('mobilefacenet-s1', { inputSize: 32, embeddingSize: 16 }), foldedBatchNorms: 0 },
  { name: 'feature-mlp', build: () => createBackbone('feature-mlp', { inputDim: 12, hiddenDims: [16, 10], embeddingSize: 6 }), foldedBatchNorms: 0 },
];

for (const { name, build, foldedBatchNorms } of cases) {
  test(`${name}: the folded export has fewer nodes and matches libtorch and the unfolded export`, async () => {
    manualSeed(41);
    const model = build();
    const x = F.randn([3, ...model.inputShape]);
    try {
      randomizeForInference(model);
      model.eval();
      const folded = exportOnnx(model);
      const unfolded = exportOnnx(model, { foldBatchNorm: false });
      const foldedOps = opCounts(folded);
      const unfoldedOps = opCounts(unfolded);
      assert.equal(foldedOps.get('BatchNormalization') ?? 0, foldedBatchNorms);
      assert.ok((unfoldedOps.get('BatchNormalization') ?? 0) > foldedBatchNorms);
      assert.ok(total(foldedOps) < total(unfoldedOps), `${total(foldedOps)} nodes folded, ${total(unfoldedOps)} unfolded`);
      assert.equal(foldedOps.get('Conv') ?? 0, unfoldedOps.get('Conv') ?? 0, 'every convolution is still there');
      const input = x.dataSync() as Float32Array;
      const expected = noGrad(() => tidy(() => model.call(x).dataSync())) as Float32Array;
      assert.ok(maxAbs(expected) > 0.5);
      const fromFolded = await runOnnx(folded, input, x.shape);
      const fromUnfolded = await runOnnx(unfolded, input, x.shape);
      assert.ok(maxAbsDiff(fromFolded, expected) <= TOLERANCE * Math.max(1, maxAbs(expected)), `folded: ${maxAbsDiff(fromFolded, expected)}`);
      assert.ok(maxAbsDiff(fromUnfolded, expected) <= TOLERANCE * Math.max(1, maxAbs(expected)));
    } finally {
      x.dispose();
      model.dispose();
    }
  });
}

test('folded export: initializers named by module path, metadata names the source backbone', () => {
  const model = createBackbone('iresnet18', { inputSize: 16, embeddingSize: 8 });
  try {
    const proto = decodeModelProto(exportOnnx(model));
    const initializers = new Set((proto.graph?.initializer ?? []).map((t) => t.name));
    for (const name of ['conv1.bias', 'layer1.0.conv1.bias', 'layer1.0.downsample.0.bias', 'layer1.0.bn1.running_mean', 'fc.weight', 'fc.bias']) {
      assert.ok(initializers.has(name), `${name} among ${[...initializers].slice(0, 12).join(' ')}...`);
    }
    assert.equal(initializers.has('layer1.0.downsample.1.running_mean'), false);
    const meta = Object.fromEntries((proto.metadataProps ?? []).map((p) => [p.key, p.value]));
    assert.equal(meta['plsc.backbone'], 'IResNet');
    // fc folds bn2 and features: one Gemm and no BatchNormalization after the last stage.
    const ops = (proto.graph?.node ?? []).map((n) => n.opType);
    assert.equal(ops.filter((op) => op === 'Gemm').length, 1);
    assert.equal(model.parameters().every((p) => !p.isDisposed), true, 'export leaves the model intact');
  } finally {
    model.dispose();
  }
});
