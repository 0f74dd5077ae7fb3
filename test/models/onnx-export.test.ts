// ONNX export: graphs written from our modules run in onnxruntime-node and match the libtorch
// eval-mode forward to 1e-4 (with randomized BN statistics, PReLU slopes and weights).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/onnx/ort-telemetry.js';
import ort from 'onnxruntime-node';
import {
  FeatureMLP,
  IResNet,
  Module,
  MobileFaceNet,
  createBackbone,
  emitRelu,
  exportOnnx,
  manualSeed,
  nn,
  noGrad,
  onnxPath,
  ops as F,
  registerOnnxEmitter,
  tidy,
  type Backbone,
  type OnnxExportContext,
  type OnnxValue,
  type Tensor,
} from '../../src/index.js';
import { maxAbs, maxAbsDiff, randomizeForInference } from './fixtures/helpers.js';
import { decodeModelProto } from '../../src/onnx/proto.js';

const TOLERANCE = 1e-4;

async function runOnnx(bytes: Uint8Array, input: Float32Array, shape: number[]): Promise<{ data: Float32Array; dims: number[] }> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    assert.deepEqual(session.inputNames, ['input']);
    assert.deepEqual(session.outputNames, ['embedding']);
    const result = await session.run({ input: new ort.Tensor('float32', input, shape) });
    const output = result['embedding'] as ort.Tensor;
    return { data: output.data as Float32Array, dims: output.dims.map(Number) };
  } finally {
    await session.release();
  }
}

function torchForward(model: Backbone, x: Tensor): Float32Array {
  return noGrad(() => tidy(() => model.call(x).dataSync())) as Float32Array;
}

/** Exports `model`, runs it on `batch` random inputs in both runtimes, returns the worst difference. */
async function parity(model: Backbone, batch: number, bytes = exportOnnx(model)): Promise<{ diff: number; scale: number }> {
  const shape = [batch, ...model.inputShape];
  const x = F.randn(shape);
  try {
    const expected = torchForward(model, x);
    const actual = await runOnnx(bytes, x.dataSync() as Float32Array, shape);
    assert.deepEqual(actual.dims, [batch, model.embeddingSize]);
    return { diff: maxAbsDiff(actual.data, expected), scale: maxAbs(expected) };
  } finally {
    x.dispose();
  }
}

test('iresnet18 at 112x112: onnxruntime output matches the libtorch eval forward to 1e-4 (batch 2)', async () => {
  manualSeed(21);
  const model = createBackbone('iresnet18');
  try {
    randomizeForInference(model);
    model.train(); // export writes the inference form whatever the mode; compare with eval
    const bytes = exportOnnx(model);
    model.eval();
    const { diff, scale } = await parity(model, 2, bytes);
    assert.ok(scale > 0.5, `outputs are non-trivial (max |y| = ${scale})`);
    assert.ok(diff <= TOLERANCE, `max |onnx - torch| = ${diff}`);
  } finally {
    model.dispose();
  }
});

test('mobilefacenet at 112x112: onnxruntime output matches the libtorch eval forward to 1e-4 (batch 2)', async () => {
  manualSeed(22);
  const model = createBackbone('mobilefacenet');
  try {
    randomizeForInference(model);
    model.eval();
    const { diff, scale } = await parity(model, 2);
    assert.ok(scale > 0.5, `outputs are non-trivial (max |y| = ${scale})`);
    assert.ok(diff <= TOLERANCE, `max |onnx - torch| = ${diff}`);
  } finally {
    model.dispose();
  }
});

test('mobilefacenet-s1 at 32x32: onnxruntime output matches the libtorch eval forward to 1e-4 (batch 2)', async () => {
  manualSeed(25);
  const model = createBackbone('mobilefacenet-s1', { inputSize: 32, embeddingSize: 64 });
  try {
    randomizeForInference(model);
    model.eval();
    const { diff, scale } = await parity(model, 2);
    assert.ok(scale > 0.5, `outputs are non-trivial (max |y| = ${scale})`);
    assert.ok(diff <= TOLERANCE, `max |onnx - torch| = ${diff}`);
  } finally {
    model.dispose();
  }
});

test('the parity check is sensitive: a changed running statistic after export breaks it', async () => {
  manualSeed(23);
  const model = new IResNet({ layers: [1, 1, 1, 1], inputSize: 32, embeddingSize: 16 });
  try {
    randomizeForInference(model);
    model.eval();
    const bytes = exportOnnx(model);
    assert.ok((await parity(model, 3, bytes)).diff <= TOLERANCE);
    const block = model.layer2.at(0) as unknown as { bn2: nn.BatchNorm2d };
    noGrad(() => block.bn2.runningVar!.mul_(4));
    assert.ok((await parity(model, 3, bytes)).diff > 1e-2, 'a stale export no longer matches');
  } finally {
    model.dispose();
  }
});

test('dynamic batch runs at several batch sizes; a fixed batch is written into the input shape', async () => {
  manualSeed(24);
  const model = new MobileFaceNet({ inputSize: 48, embeddingSize: 24, blocks: [2, 1, 1, 1], scale: 1 });
  try {
    randomizeForInference(model);
    model.eval();
    const bytes = exportOnnx(model, { dynamicBatch: true });
    for (const batch of [1, 3]) assert.ok((await parity(model, batch, bytes)).diff <= TOLERANCE, `batch ${batch}`);
    const proto = decodeModelProto(bytes);
    const inputDims = proto.graph?.input?.[0]?.type?.tensorType?.shape?.dim ?? [];
    assert.deepEqual(inputDims.map((d) => (d.dimParam ? d.dimParam : d.dimValue)), ['N', 3, 48, 48]);
    const outputDims = proto.graph?.output?.[0]?.type?.tensorType?.shape?.dim ?? [];
    assert.deepEqual(outputDims.map((d) => (d.dimParam ? d.dimParam : d.dimValue)), ['N', 24]);

    const fixed = exportOnnx(model, { dynamicBatch: false, batchSize: 2 });
    const fixedDims = decodeModelProto(fixed).graph?.input?.[0]?.type?.tensorType?.shape?.dim ?? [];
    assert.deepEqual(fixedDims.map((d) => (d.dimParam ? d.dimParam : d.dimValue)), [2, 3, 48, 48]);
    assert.ok((await parity(model, 2, fixed)).diff <= TOLERANCE);
  } finally {
    model.dispose();
  }
});

test('inference form: no Dropout nodes, BatchNormalization with running stats, metadata and opset recorded', () => {
  const model = new IResNet({ layers: [1, 1, 1, 1], inputSize: 16, embeddingSize: 8, dropout: 0.4 });
  try {
    const proto = decodeModelProto(exportOnnx(model, { opset: 13, foldBatchNorm: false }));
    const ops = (proto.graph?.node ?? []).map((n) => n.opType);
    assert.equal(ops.includes('Dropout'), false);
    // stem bn1, 4 blocks x (bn1, bn2, bn3, downsample BN), bn2, features
    assert.equal(ops.filter((op) => op === 'BatchNormalization').length, 1 + 4 * 4 + 1 + 1);
    assert.equal(ops.filter((op) => op === 'Add').length, 4);
    assert.equal(ops.filter((op) => op === 'PRelu').length, 5);
    assert.equal(proto.opsetImport?.[0]?.version, 13);
    const meta = Object.fromEntries((proto.metadataProps ?? []).map((p) => [p.key, p.value]));
    assert.equal(meta['plsc.backbone'], 'IResNet');
    assert.equal(meta['plsc.embedding_size'], '8');
    assert.equal(meta['plsc.input_shape'], '[3,16,16]');
    const initializers = new Set((proto.graph?.initializer ?? []).map((t) => t.name));
    assert.ok(initializers.has('layer1.0.downsample.1.running_mean'), 'value names follow the module paths');
  } finally {
    model.dispose();
  }
});

test('FeatureMLP exports (PReLU on [N, C], Gemm) and matches; l2Normalize gives unit rows', async () => {
  manualSeed(25);
  const model = new FeatureMLP({ inputDim: 12, hiddenDims: [16, 10], embeddingSize: 6, dropout: 0.3 });
  try {
    randomizeForInference(model);
    model.eval();
    assert.ok((await parity(model, 4)).diff <= TOLERANCE);
    const x = F.randn([3, 12]);
    const normalized = await runOnnx(exportOnnx(model, { l2Normalize: true }), x.dataSync() as Float32Array, [3, 12]);
    const expected = noGrad(() => tidy(() => F.normalize(model.call(x), 2, 1).dataSync())) as Float32Array;
    assert.ok(maxAbsDiff(normalized.data, expected) <= 1e-5);
    x.dispose();
  } finally {
    model.dispose();
  }
});

test('generic nn layers in a custom backbone export (Sequential, Conv2d with bias, ReLU, pooling, Flatten, Identity)', async () => {
  manualSeed(26);
  class PoolNet extends Module implements Backbone {
    readonly embeddingSize = 5;
    readonly inputShape = [3, 20, 20];
    readonly body = this.registerModule(
      'body',
      new nn.Sequential(
        new nn.Conv2d(3, 6, 3, { padding: 1, stride: 2 }),
        new nn.BatchNorm2d(6),
        new nn.ReLU(),
        new nn.MaxPool2d(2),
        new nn.Conv2d(6, 8, 3, { padding: 1, groups: 2 }),
        new nn.PReLU(1),
        new nn.AvgPool2d(3, { stride: 1, padding: 1 }),
        new nn.AdaptiveAvgPool2d(1),
        new nn.Flatten(),
        new nn.Identity(),
        new nn.Linear(8, 5),
        new nn.BatchNorm1d(5, { affine: false }),
      ),
    );
    forward(x: Tensor): Tensor {
      return this.body.call(x);
    }
    emitOnnx(context: OnnxExportContext, input: OnnxValue, path: string): OnnxValue {
      return context.emit(this.body, input, onnxPath(path, 'body'));
    }
  }
  const model = new PoolNet();
  try {
    randomizeForInference(model);
    model.eval();
    assert.ok((await parity(model, 2)).diff <= TOLERANCE);
  } finally {
    model.dispose();
  }
});

class Swish extends Module {
  forward(x: Tensor): Tensor {
    return F.mul(x, F.sigmoid(x));
  }
}

class ClampedHead extends Module implements Backbone {
  readonly embeddingSize = 4;
  readonly inputShape = [7];
  readonly fc = this.registerModule('fc', new nn.Linear(7, 4));
  readonly act = this.registerModule('act', new nn.ReLU());
  forward(x: Tensor): Tensor {
    return tidy(() => this.act.call(this.fc.call(x)));
  }
  /** Exports itself: fc then ReLU. */
  emitOnnx(context: OnnxExportContext, input: OnnxValue, path: string): OnnxValue {
    const hidden = context.emit(this.fc, input, onnxPath(path, 'fc'));
    return { name: emitRelu(context.graph, hidden.name, 'act'), rank: hidden.rank };
  }
}

test('modules without an emitter are named in the error; registerOnnxEmitter and emitOnnx extend the exporter', async () => {
  class SwishNet extends Module implements Backbone {
    readonly embeddingSize = 3;
    readonly inputShape = [4];
    readonly net = this.registerModule('net', new nn.Sequential(new nn.Linear(4, 3), new Swish()));
    forward(x: Tensor): Tensor {
      return this.net.call(x);
    }
  }
  const model = new SwishNet();
  const self = new ClampedHead();
  try {
    assert.throws(() => exportOnnx(model), /no emitter for SwishNet at '<root>'/);
    registerOnnxEmitter(SwishNet, (ctx, m, input, path) => ctx.emit(m.net, input, onnxPath(path, 'net')));
    assert.throws(() => exportOnnx(model), /no emitter for Swish at 'net\.1'; register one with registerOnnxEmitter\(Swish/);
    registerOnnxEmitter(Swish, (ctx, _m, input, path) => {
      const gate = ctx.graph.freshName(`${path}.sigmoid`);
      ctx.graph.node('Sigmoid', [input.name], [gate]);
      const out = ctx.graph.freshName(`${path}.out`);
      ctx.graph.node('Mul', [input.name, gate], [out]);
      return { name: out, rank: input.rank };
    });
    assert.ok((await parity(model, 3)).diff <= TOLERANCE);
    assert.ok((await parity(self, 3)).diff <= TOLERANCE);
  } finally {
    model.dispose();
    self.dispose();
  }
});

test('export refuses what it cannot write faithfully', () => {
  class BatchStatsNet extends Module implements Backbone {
    readonly embeddingSize = 3;
    readonly inputShape = [3];
    readonly bn = this.registerModule('bn', new nn.BatchNorm1d(3, { trackRunningStats: false }));
    forward(x: Tensor): Tensor {
      return this.bn.call(x);
    }
    emitOnnx(context: OnnxExportContext, input: OnnxValue, path: string): OnnxValue {
      return context.emit(this.bn, input, onnxPath(path, 'bn'));
    }
  }
  const model = new BatchStatsNet();
  try {
    assert.throws(() => exportOnnx(model), /BatchNorm1d at 'bn' has trackRunningStats=false/);
    assert.throws(() => exportOnnx(model, { opset: 9 }), /opset 9 is not supported/);
    assert.throws(() => exportOnnx(model, { dynamicBatch: false, batchSize: 0 }), /batchSize must be a positive integer/);
  } finally {
    model.dispose();
  }
});
