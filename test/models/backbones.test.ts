// Backbones: output shapes, parameter counts against the published architectures, insightface
// state_dict naming, train/eval behaviour, other input sizes, the registry and custom backbones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  FeatureMLP,
  IResNet,
  IRESNET_LAYERS,
  Module,
  MobileFaceNet,
  backboneNames,
  createBackbone,
  isBackbone,
  loadSafetensors,
  manualSeed,
  nn,
  noGrad,
  ops as F,
  optim,
  registerBackbone,
  saveSafetensors,
  tidy,
  keep,
  validateBackbone,
  type Backbone,
  type Tensor,
} from '../../src/index.js';
import { insightfaceIResNetKeys, maxAbs, maxAbsDiff, randomizeForInference } from './fixtures/helpers.js';

// ---- parameter counts by hand, from the architecture descriptions ---------------------------------
const conv = (cin: number, cout: number, k: number | [number, number], groups = 1): number => {
  const [kh, kw] = typeof k === 'number' ? [k, k] : k;
  return cout * (cin / groups) * kh * kw;
};
const bn = (c: number): number => 2 * c; // weight + bias (running stats are buffers)

function iresnetParameterCount(layers: readonly number[], embedding: number, mapH = 7, mapW = 7): number {
  let total = conv(3, 64, 3) + bn(64) + 64;
  let cin = 64;
  [64, 128, 256, 512].forEach((width, stage) => {
    for (let b = 0; b < layers[stage]!; b++) {
      total += bn(cin) + conv(cin, width, 3) + bn(width) + width + conv(width, width, 3) + bn(width);
      if (b === 0) total += conv(cin, width, 1) + bn(width);
      cin = width;
    }
  });
  return total + bn(512) + 512 * mapH * mapW * embedding + embedding + bn(embedding);
}

function mobileFaceNetParameterCount(blocks: readonly number[], scale: number, embedding: number): number {
  const convBlock = (cin: number, cout: number, k: number, g = 1) => conv(cin, cout, k, g) + bn(cout) + cout;
  const linearBlock = (cin: number, cout: number, k: number, g = 1) => conv(cin, cout, k, g) + bn(cout);
  const depthWise = (cin: number, cout: number, g: number) => convBlock(cin, g, 1) + convBlock(g, g, 3, g) + linearBlock(g, cout, 1);
  const [c64, c128] = [64 * scale, 128 * scale];
  let total = convBlock(3, c64, 3);
  total += blocks[0] === 1 ? convBlock(c64, c64, 3, 64) : blocks[0]! * depthWise(c64, c64, 128);
  total += depthWise(c64, c64, 128) + blocks[1]! * depthWise(c64, c64, 128);
  total += depthWise(c64, c128, 256) + blocks[2]! * depthWise(c128, c128, 256);
  total += depthWise(c128, c128, 512) + blocks[3]! * depthWise(c128, c128, 256);
  total += convBlock(c128, 512, 1);
  return total + linearBlock(512, 512, 7, 512) + 512 * embedding + bn(embedding);
}

function withModel<M extends { dispose(): void }, T>(model: M, body: (model: M) => T): T {
  try {
    return body(model);
  } finally {
    model.dispose();
  }
}

function forwardShape(model: Backbone, batch: number): number[] {
  return noGrad(() => tidy(() => model.call(F.randn([batch, ...model.inputShape])).shape));
}

// ---- parameter counts ---------------------------------------------------------------------------

test('IR-50 with a 512-d head at 112x112 has 43.6M parameters, as published', () => {
  withModel(createBackbone('iresnet50'), (model) => {
    const count = model.numParameters();
    assert.equal(count, iresnetParameterCount(IRESNET_LAYERS.iresnet50, 512));
    assert.equal(count, 43_590_848);
    assert.equal(Math.round(count / 1e5) / 10, 43.6);
    // features.weight is frozen at 1 (insightface), so 512 fewer trainable parameters.
    assert.equal(model.numParameters({ trainableOnly: true }), count - 512);
  });
});

test('iresnet18/34/100 parameter counts match the architecture arithmetic (24.0M / 34.1M / 65.2M)', () => {
  const expected: Record<string, number> = { iresnet18: 24_025_600, iresnet34: 34_139_328, iresnet100: 65_156_160 };
  for (const name of ['iresnet18', 'iresnet34', 'iresnet100'] as const) {
    withModel(createBackbone(name), (model) => {
      assert.equal(model.numParameters(), iresnetParameterCount(IRESNET_LAYERS[name], 512), name);
      assert.equal(model.numParameters(), expected[name], name);
    });
  }
});

test('MobileFaceNet (arcface_torch get_mbf: blocks 1,4,6,2, scale 2, 512-d) has 2,059,520 parameters', () => {
  withModel(createBackbone('mobilefacenet'), (model) => {
    assert.equal(model.numParameters(), mobileFaceNetParameterCount([1, 4, 6, 2], 2, 512));
    assert.equal(model.numParameters(), 2_059_520);
  });
  // Cross-check against the MobileFaceNets paper ("less than 1 million parameters", 4.0 MB fp32 at
  // width 1 and a 128-d embedding): the same code at scale 1 / 128-d gives ~1.0M.
  withModel(new MobileFaceNet({ scale: 1, embeddingSize: 128 }), (model) => {
    assert.equal(model.numParameters(), mobileFaceNetParameterCount([1, 4, 6, 2], 1, 128));
    assert.ok(Math.abs(model.numParameters() - 1_000_000) < 10_000, `${model.numParameters()}`);
  });
  withModel(new MobileFaceNet({ blocks: [2, 8, 12, 4], scale: 4 }), (model) => {
    assert.equal(model.numParameters(), mobileFaceNetParameterCount([2, 8, 12, 4], 4, 512), 'mbf_large');
  });
});

test('embedding size changes only the fc and features parameters', () => {
  withModel(createBackbone('iresnet18', { embeddingSize: 128 }), (model) => {
    assert.equal(model.numParameters(), iresnetParameterCount(IRESNET_LAYERS.iresnet18, 128));
    assert.equal(model.embeddingSize, 128);
  });
});

// ---- state dict naming ----------------------------------------------------------------------------

test('iresnet state_dict keys are exactly insightface arcface_torch keys, in order, with its shapes', () => {
  withModel(createBackbone('iresnet18'), (model) => {
    const spec = model.stateDictSpec();
    assert.deepEqual(
      spec.map((s) => s.name),
      insightfaceIResNetKeys(IRESNET_LAYERS.iresnet18),
    );
    const shapes = new Map(spec.map((s) => [s.name, s.shape]));
    assert.deepEqual(shapes.get('conv1.weight'), [64, 3, 3, 3]);
    assert.deepEqual(shapes.get('layer1.0.conv1.weight'), [64, 64, 3, 3]);
    assert.deepEqual(shapes.get('layer2.0.downsample.0.weight'), [128, 64, 1, 1]);
    assert.deepEqual(shapes.get('layer4.1.prelu.weight'), [512]);
    assert.deepEqual(shapes.get('fc.weight'), [512, 512 * 7 * 7]);
    assert.deepEqual(shapes.get('features.running_var'), [512]);
    assert.equal(spec.find((s) => s.name === 'bn1.num_batches_tracked')?.dtype, 'int64');
  });
  withModel(createBackbone('iresnet100'), (model) => {
    const names = model.stateDictSpec().map((s) => s.name);
    assert.deepEqual(names, insightfaceIResNetKeys(IRESNET_LAYERS.iresnet100));
    assert.ok(names.includes('layer3.29.bn3.running_mean'));
  });
});

test('mobilefacenet state_dict keys follow insightface (layers ModuleList, conv_sep, GDC features)', () => {
  withModel(createBackbone('mobilefacenet'), (model) => {
    const shapes = new Map(model.stateDictSpec().map((s) => [s.name, s.shape]));
    const expectShape = (key: string, shape: number[]) => assert.deepEqual(shapes.get(key), shape, key);
    expectShape('layers.0.layers.0.weight', [128, 3, 3, 3]);
    expectShape('layers.0.layers.2.weight', [128]);
    expectShape('layers.1.layers.0.weight', [128, 2, 3, 3]); // groups=64 over 128 channels
    expectShape('layers.2.layers.0.layers.0.weight', [128, 128, 1, 1]);
    expectShape('layers.2.layers.1.layers.0.weight', [128, 1, 3, 3]);
    expectShape('layers.2.layers.2.layers.1.running_mean', [128]);
    expectShape('layers.3.layers.3.layers.2.layers.0.weight', [128, 128, 1, 1]);
    expectShape('layers.4.layers.0.layers.0.weight', [256, 128, 1, 1]);
    expectShape('layers.5.layers.5.layers.1.layers.0.weight', [256, 1, 3, 3]);
    expectShape('layers.6.layers.1.layers.0.weight', [512, 1, 3, 3]);
    expectShape('layers.6.layers.2.layers.0.weight', [256, 512, 1, 1]);
    expectShape('layers.7.layers.1.layers.2.layers.1.weight', [256]);
    expectShape('conv_sep.layers.0.weight', [512, 256, 1, 1]);
    expectShape('conv_sep.layers.2.weight', [512]);
    expectShape('features.layers.0.layers.0.weight', [512, 1, 7, 7]);
    expectShape('features.layers.2.weight', [512, 512]);
    expectShape('features.layers.3.running_var', [512]);
    assert.equal(shapes.has('features.layers.2.bias'), false, 'GDC linear has no bias');
    assert.equal(shapes.has('layers.8.layers.0.weight'), false);
  });
});

test('a checkpoint written as safetensors under insightface names loads strictly and reproduces the outputs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-models-'));
  try {
    manualSeed(11);
    const source = new IResNet({ layers: [1, 1, 1, 1], inputSize: 32, embeddingSize: 16 });
    const target = new IResNet({ layers: [1, 1, 1, 1], inputSize: 32, embeddingSize: 16 });
    randomizeForInference(source);
    const file = join(dir, 'backbone.safetensors');
    tidy(() => saveSafetensors(file, source.stateDict()));
    const loaded = loadSafetensors(file);
    const result = target.loadStateDict(loaded);
    assert.deepEqual(result.missingKeys, []);
    assert.deepEqual(result.unexpectedKeys, []);
    for (const t of Object.values(loaded)) t.dispose();
    source.eval();
    target.eval();
    const [a, b] = noGrad(() =>
      tidy(() => {
        const x = F.randn([3, 3, 32, 32]);
        return [source.call(x).dataSync(), target.call(x).dataSync()];
      }),
    );
    assert.equal(maxAbsDiff(a as Float32Array, b as Float32Array), 0);
    // The frozen features.weight stays frozen after loading.
    assert.equal(target.features.weight?.requiresGrad, false);
    source.dispose();
    target.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---- shapes -----------------------------------------------------------------------------------------

test('iresnet18, iresnet34 and mobilefacenet map [2, 3, 112, 112] to [2, 512] in train and eval mode', () => {
  manualSeed(1);
  for (const name of ['iresnet18', 'iresnet34', 'mobilefacenet'] as const) {
    withModel(createBackbone(name), (model) => {
      assert.deepEqual(model.inputShape, [3, 112, 112]);
      assert.deepEqual(forwardShape(model, 2), [2, 512], `${name} train`);
      model.eval();
      assert.deepEqual(forwardShape(model, 2), [2, 512], `${name} eval`);
    });
  }
});

test('iresnet50 forward at batch 1 (eval) gives [1, 512]; iresnet100 is checked by parameters only', () => {
  withModel(createBackbone('iresnet50', { embeddingSize: 256 }), (model) => {
    model.eval();
    assert.deepEqual(forwardShape(model, 1), [1, 256]);
  });
});

test('other input sizes: the fc input is 512 * ceil(H/16) * ceil(W/16); the GDC kernel is the final map', () => {
  withModel(new IResNet({ layers: [1, 1, 1, 1], inputSize: [40, 24], embeddingSize: 8 }), (model) => {
    assert.deepEqual(model.inputShape, [3, 40, 24]);
    assert.deepEqual(model.featureMapSize, [3, 2]);
    assert.equal(model.fc.inFeatures, 512 * 3 * 2);
    assert.deepEqual(forwardShape(model, 2), [2, 8]);
  });
  withModel(createBackbone('iresnet18', { inputSize: 128 }), (model) => {
    assert.equal(model.numParameters(), iresnetParameterCount(IRESNET_LAYERS.iresnet18, 512, 8, 8));
  });
  withModel(createBackbone('mobilefacenet', { inputSize: 64, embeddingSize: 32 }), (model) => {
    const gdc = model.stateDictSpec().find((s) => s.name === 'features.layers.0.layers.0.weight');
    assert.deepEqual(gdc?.shape, [512, 1, 4, 4]);
    assert.deepEqual(forwardShape(model, 2), [2, 32]);
  });
});

test('mobilefacenet-s1 keeps the stem at full resolution: a 32 px input reaches the GDC head at 4x4', () => {
  const small = createBackbone('mobilefacenet-s1', { inputSize: 32, embeddingSize: 16 }) as MobileFaceNet;
  const plain = createBackbone('mobilefacenet', { inputSize: 32, embeddingSize: 16 }) as MobileFaceNet;
  try {
    assert.equal(small.stemStride, 1);
    assert.deepEqual(small.featureMapSize, [4, 4]);
    assert.deepEqual(plain.featureMapSize, [2, 2]);
    const gdc = small.stateDictSpec().find((s) => s.name === 'features.layers.0.layers.0.weight');
    assert.deepEqual(gdc?.shape, [512, 1, 4, 4]);
    // Same layers and names as mobilefacenet; only the GDC kernel grows with the feature map.
    const names = (m: MobileFaceNet): string[] => m.stateDictSpec().map((s) => s.name);
    assert.deepEqual(names(small), names(plain));
    assert.equal(small.numParameters() - plain.numParameters(), 512 * (16 - 4));
    assert.deepEqual(forwardShape(small, 2), [2, 16]);
    withModel(new MobileFaceNet({ inputSize: [40, 24], stemStride: 1 }), (model) => assert.deepEqual(model.featureMapSize, [5, 3]));
  } finally {
    small.dispose();
    plain.dispose();
  }
  assert.throws(() => new MobileFaceNet({ stemStride: 3 as 1 }), /stemStride must be 1 or 2, got 3/);
  assert.throws(() => createBackbone('mobilefacenet-s1', { dropout: 0.1 }), /mobilefacenet-s1': dropout is not part of the architecture/);
});

test('wrong input shapes are rejected with the expected shape in the message', () => {
  withModel(new IResNet({ layers: [1, 1, 1, 1], inputSize: 32 }), (model) => {
    assert.throws(() => tidy(() => model.call(F.zeros([2, 3, 112, 112]))), /IResNet: expected input \[N, 3, 32, 32\], got \[2, 3, 112, 112\]/);
    assert.throws(() => tidy(() => model.call(F.zeros([2, 32, 32]))), /expected input \[N, 3, 32, 32\]/);
  });
  withModel(new FeatureMLP({ inputDim: 10, hiddenDims: [], embeddingSize: 4 }), (model) => {
    assert.throws(() => tidy(() => model.call(F.zeros([2, 11]))), /FeatureMLP: expected input \[N, 10\], got \[2, 11\]/);
  });
});

// ---- train / eval behaviour ---------------------------------------------------------------------------

test('features.weight is frozen at 1: no gradient, unchanged by an SGD step, while the rest trains', () => {
  manualSeed(2);
  withModel(new IResNet({ layers: [1, 1, 1, 1], inputSize: 32, embeddingSize: 16 }), (model) => {
    const featuresWeight = model.features.weight!;
    assert.equal(featuresWeight.requiresGrad, false);
    assert.deepEqual(featuresWeight.toArray(), new Array(16).fill(1));
    tidy(() => {
      const out = model.call(F.randn([4, 3, 32, 32]));
      F.sum(F.square(out)).backward();
    });
    assert.equal(featuresWeight.grad, null);
    const convGrad = model.conv1.weight.grad;
    assert.ok(convGrad !== null && F.sum(F.abs(convGrad)).item() > 0, 'conv1 receives a gradient');
    assert.ok(model.features.bias!.grad !== null, 'features.bias trains');
    // arcface_torch hands every backbone parameter to SGD (momentum 0.9, weight decay 5e-4).
    const sgd = new optim.SGD(model.parameters(), { lr: 0.1, momentum: 0.9, weightDecay: 5e-4 });
    const convBefore = model.conv1.weight.toArray();
    sgd.step();
    assert.deepEqual(featuresWeight.toArray(), new Array(16).fill(1), 'features.weight unchanged by the step');
    assert.notDeepEqual(model.conv1.weight.toArray(), convBefore, 'conv1 moved');
    model.zeroGrad();
  });
});

test('arcface_torch initialization: conv weights ~ N(0, 0.1), BN scale 1 / shift 0, zeroInitResidual zeroes bn2', () => {
  manualSeed(3);
  withModel(createBackbone('iresnet18') as IResNet, (model) => {
    const w = model.layer3.at(0).stateDict();
    const conv = w['conv1.weight']!;
    const std = Math.sqrt(F.variance(conv).item());
    assert.ok(Math.abs(std - 0.1) < 0.005, `conv std ${std}`);
    assert.deepEqual([...new Set(w['bn2.weight']!.toArray())], [1]);
    assert.deepEqual([...new Set(w['bn2.bias']!.toArray())], [0]);
    for (const t of Object.values(w)) t.dispose();
  });
  withModel(new IResNet({ layers: [1, 1, 1, 1], inputSize: 16, zeroInitResidual: true }), (model) => {
    const block = model.layer2.at(0) as unknown as { bn2: nn.BatchNorm2d; bn3: nn.BatchNorm2d };
    assert.deepEqual([...new Set(block.bn2.weight!.toArray())], [0]);
    assert.deepEqual([...new Set(block.bn3.weight!.toArray())], [1]);
  });
});

test('train mode updates BN running statistics and uses batch statistics; eval mode is deterministic and uses running ones', () => {
  manualSeed(4);
  withModel(new IResNet({ layers: [1, 1, 1, 1], inputSize: 32, embeddingSize: 16, dropout: 0.5 }), (model) => {
    const x = F.randn([4, 3, 32, 32]);
    const before = model.bn1.runningMean!.toArray();
    const trainA = noGrad(() => tidy(() => model.call(x).dataSync()));
    const trainB = noGrad(() => tidy(() => model.call(x).dataSync()));
    assert.equal(model.bn1.numBatchesTracked!.item(), 2);
    assert.notDeepEqual(model.bn1.runningMean!.toArray(), before, 'running mean moved');
    assert.ok(maxAbsDiff(trainA as Float32Array, trainB as Float32Array) > 1e-3, 'dropout 0.5 makes train-mode outputs differ');
    model.eval();
    const statsBefore = model.features.runningVar!.toArray();
    const evalA = noGrad(() => tidy(() => model.call(x).dataSync()));
    const evalB = noGrad(() => tidy(() => model.call(x).dataSync()));
    assert.equal(maxAbsDiff(evalA as Float32Array, evalB as Float32Array), 0, 'eval is deterministic');
    assert.deepEqual(model.features.runningVar!.toArray(), statsBefore, 'eval leaves running stats alone');
    assert.equal(model.bn1.numBatchesTracked!.item(), 2);
    // Eval output of one sample does not depend on the rest of the batch (running statistics).
    const single = noGrad(() => tidy(() => model.call(F.narrow(x, 0, 0, 1)).dataSync())) as Float32Array;
    const firstRow = (evalA as Float32Array).subarray(0, 16);
    assert.ok(maxAbsDiff(single, firstRow) <= 1e-5 * maxAbs(firstRow), `${maxAbsDiff(single, firstRow)} vs scale ${maxAbs(firstRow)}`);
    x.dispose();
  });
});

// ---- registry and custom backbones -------------------------------------------------------------------

test('createBackbone knows the built-ins, rejects unknown names and misplaced options', () => {
  assert.deepEqual(backboneNames().slice(0, 7), ['iresnet18', 'iresnet34', 'iresnet50', 'iresnet100', 'mobilefacenet', 'mobilefacenet-s1', 'feature-mlp']);
  assert.throws(() => createBackbone('resnet50'), /unknown backbone 'resnet50' \(available: iresnet18, iresnet34/);
  assert.throws(() => createBackbone('mobilefacenet', { dropout: 0.2 }), /mobilefacenet': dropout is not part of the architecture/);
  assert.throws(() => createBackbone('feature-mlp'), /inputDim .* is required/);
  assert.throws(() => createBackbone('iresnet18', { inputDim: 10 }), /feature-mlp' only/);
  assert.throws(() => createBackbone('iresnet18', { embeddingSize: 0 }), /embeddingSize must be a positive integer/);
  assert.throws(() => createBackbone('iresnet18', { inputSize: 0 }), /inputSize must be a positive integer/);
  assert.throws(() => createBackbone('iresnet18', { dropout: 1 }), /dropout must be in \[0, 1\)/);
  assert.throws(() => registerBackbone('iresnet50', () => createBackbone('iresnet18')), /built-in backbone/);
});

test('FeatureMLP maps [N, inputDim] to [N, D] with Linear-BN-PReLU hidden layers', () => {
  manualSeed(5);
  withModel(createBackbone('feature-mlp', { inputDim: 20, hiddenDims: [32, 24], embeddingSize: 8, inputSize: 112 }) as FeatureMLP, (model) => {
    assert.deepEqual(model.inputShape, [20]);
    assert.deepEqual(
      model.stateDictSpec().filter((s) => !s.name.includes('running') && !s.name.includes('num_batches')).map((s) => `${s.name}:${s.shape.join('x')}`),
      [
        'layers.0.weight:32x20', 'layers.0.bias:32', 'layers.1.weight:32', 'layers.1.bias:32', 'layers.2.weight:32',
        'layers.3.weight:24x32', 'layers.3.bias:24', 'layers.4.weight:24', 'layers.4.bias:24', 'layers.5.weight:24',
        'fc.weight:8x24', 'fc.bias:8', 'features.weight:8', 'features.bias:8',
      ],
    );
    assert.deepEqual(forwardShape(model, 3), [3, 8]);
    assert.equal(validateBackbone(model), model);
  });
  withModel(new FeatureMLP({ inputDim: 6, hiddenDims: [] }), (model) => {
    assert.equal(model.numParameters(), 6 * 512 + 512 + 2 * 512);
  });
  assert.throws(() => new FeatureMLP({ inputDim: 6, hiddenDims: [4, 0] }), /hiddenDims\[1\] must be a positive integer/);
});

class TinyEmbedder extends Module implements Backbone {
  readonly embeddingSize: number = 6;
  readonly inputShape: readonly number[] = [3, 8, 8];
  readonly body = this.registerModule('body', new nn.Sequential(new nn.Conv2d(3, 4, 3, { padding: 1 }), new nn.ReLU(), new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(4, 6)));
  forward(x: Tensor): Tensor {
    return this.body.call(x);
  }
}

class WrongWidth extends TinyEmbedder {
  override readonly embeddingSize = 7;
}

test('custom Module backbones: registerBackbone, isBackbone and validateBackbone', () => {
  registerBackbone('tiny-test-embedder', () => new TinyEmbedder());
  withModel(createBackbone('tiny-test-embedder'), (model) => {
    assert.ok(isBackbone(model));
    assert.equal(validateBackbone(model), model);
    assert.equal(model.training, true, 'validateBackbone restores training mode');
  });
  assert.ok(backboneNames().includes('tiny-test-embedder'));
  assert.equal(isBackbone(new nn.Linear(2, 2)), false);
  assert.equal(isBackbone({ embeddingSize: 4, inputShape: [4] }), false);
  assert.throws(() => validateBackbone(new nn.Linear(2, 2), 'model'), /model \(Linear\): 'embeddingSize' must be a positive integer/);
  withModel(new WrongWidth(), (model) => {
    assert.throws(() => validateBackbone(model), /returned shape \[2, 6\], expected \[2, 7\]/);
  });
});

test("backbones are channels-last by default; 'contiguous' gives the same outputs, gradients and state dict", () => {
  for (const name of ['iresnet18', 'mobilefacenet'] as const) {
    const results = (['channels_last', 'contiguous'] as const).map((memoryFormat) => {
      manualSeed(3);
      const backbone = createBackbone(name, { embeddingSize: 64, inputSize: 32, memoryFormat });
      backbone.train();
      const conv = backbone.parameters().find((p) => p.ndim === 4) as Tensor;
      const [, c, h, w] = conv.shape as [number, number, number, number];
      const strides = conv.strides;
      const initialState = Object.fromEntries(Object.entries(backbone.stateDict()).map(([k, v]) => [k, v.toArray()]));
      const images = F.randn([3, 3, 32, 32]);
      const out = tidy(() => {
        const embeddings = backbone.call(images);
        F.mean(F.mul(embeddings, embeddings)).backward();
        return keep(embeddings.detach());
      });
      const result = {
        strides,
        expectedChannelsLast: [h * w * c, 1, w * c, c],
        out: out.toArray(),
        grad: (conv.grad as Tensor).toArray(),
        state: initialState,
      };
      out.dispose();
      images.dispose();
      backbone.dispose();
      return result;
    });
    const [last, plain] = results as [(typeof results)[0], (typeof results)[0]];
    assert.deepEqual(last.strides, last.expectedChannelsLast, `${name}: conv weight is channels-last`);
    assert.ok(plain.strides[1] !== 1, `${name}: 'contiguous' keeps NCHW`);
    assert.deepEqual(Object.keys(last.state), Object.keys(plain.state));
    for (const key of Object.keys(plain.state)) assert.deepEqual(last.state[key], plain.state[key], `${name}: initial ${key}`);
    const close = (a: number[], b: number[], what: string): void => {
      const scale = Math.max(...b.map(Math.abs), 1e-6);
      const worst = Math.max(...a.map((v, i) => Math.abs(v - (b[i] as number))));
      // Different convolution algorithms round differently; train-mode BN over 3 images amplifies it.
      assert.ok(worst <= 1e-3 * scale, `${name}: ${what} differ by ${worst} (scale ${scale})`);
    };
    close(last.out, plain.out, 'embeddings');
    close(last.grad, plain.grad, 'first conv gradients');
  }
});

test('Module.toMemoryFormat re-lays out 4-d parameters in place (same tensors, same values)', () => {
  manualSeed(4);
  const conv = new nn.Conv2d(3, 8, 3);
  const before = conv.weight;
  const values = conv.weight.toArray();
  conv.toMemoryFormat('channels_last');
  assert.equal(conv.weight, before, 'the parameter object is kept');
  assert.equal(conv.weight.strides[1], 1);
  assert.deepEqual(conv.weight.toArray(), values);
  assert.equal(conv.weight.isLeaf, true);
  assert.equal(conv.weight.requiresGrad, true);
  conv.toMemoryFormat('contiguous');
  assert.ok(conv.weight.isContiguous());
  assert.deepEqual(conv.weight.toArray(), values);
  assert.throws(() => conv.toMemoryFormat('nhwc' as never), /unknown memory format 'nhwc'/);
  conv.dispose();
});
