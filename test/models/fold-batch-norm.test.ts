// foldBatchNorm: the inference form of every built-in backbone equals its eval-mode forward (float32,
// relative 1e-5) with fewer operators, and the trained model is left exactly as it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  FeatureMLP,
  FoldedBackbone,
  FoldedConv2d,
  IResNet,
  InferenceBatchNorm,
  Module,
  MobileFaceNet,
  canFoldBatchNorm,
  createBackbone,
  foldBatchNorm,
  manualSeed,
  nn,
  noGrad,
  ops as F,
  profileOps,
  tidy,
  withFoldedBatchNorm,
  type Backbone,
  type BatchNormFoldable,
  type BatchNormFolder,
  type Tensor,
} from '../../src/index.js';
import { maxAbs, maxAbsDiff, randomizeForInference } from './fixtures/helpers.js';

const RELATIVE_TOLERANCE = 1e-5;

function forward(model: Backbone, x: Tensor): Float32Array {
  return noGrad(() => tidy(() => model.call(x).dataSync() as Float32Array));
}

/** Running statistics from a few training-mode forwards, then random BN affines, conv weights and slopes. */
function trainedLike(model: Backbone): void {
  noGrad(() => {
    for (let i = 0; i < 3; i++) tidy(() => void model.call(F.mul(F.randn([4, ...model.inputShape]), 1 + i)));
  });
  randomizeForInference(model);
  noGrad(() => {
    // randomizeForInference leaves the running statistics as they were drawn; also move some away
    // from what the forwards left, so both sources of statistics are exercised.
    for (const module of model.modules()) if (module instanceof nn.BatchNorm1d) module.runningMean?.normal_(0, 0.3);
  });
  model.eval();
}

function batchNormCalls(model: Backbone, x: Tensor): { batchNorms: number; ops: number } {
  const { ops } = profileOps(() => noGrad(() => tidy(() => void model.call(x))));
  return {
    batchNorms: ops.filter((o) => o.op.includes('batch_norm')).reduce((s, o) => s + o.calls, 0),
    ops: ops.reduce((s, o) => s + o.calls, 0),
  };
}

/** Folds `model`, checks parity on a random batch, returns the operator counts before and after. */
function checkParity(model: Backbone, batch = 3): { before: { batchNorms: number; ops: number }; after: { batchNorms: number; ops: number } } {
  const x = F.randn([batch, ...model.inputShape]);
  const folded = foldBatchNorm(model);
  try {
    const expected = forward(model, x);
    const actual = forward(folded, x);
    const scale = maxAbs(expected);
    assert.ok(scale > 0.1, `outputs are non-trivial (max |y| = ${scale})`);
    const relative = maxAbsDiff(actual, expected) / scale;
    assert.ok(relative <= RELATIVE_TOLERANCE, `${model.typeName}: max |folded - eval| / max |eval| = ${relative}`);
    return { before: batchNormCalls(model, x), after: batchNormCalls(folded, x) };
  } finally {
    folded.dispose();
    x.dispose();
  }
}

const cases: { name: string; build: () => Backbone; keptBatchNorms: number }[] = [
  // IR blocks keep their leading BN (before a zero-padded 3x3 conv): one per block.
  { name: 'iresnet18 (32x32, channels_last weights)', build: () => createBackbone('iresnet18', { inputSize: 32, embeddingSize: 16 }), keptBatchNorms: 8 },
  { name: 'IResNet [1,1,1,1] (24x20, contiguous weights, dropout 0.4)', build: () => new IResNet({ layers: [1, 1, 1, 1], inputSize: [24, 20], embeddingSize: 8, dropout: 0.4 }), keptBatchNorms: 4 },
  { name: 'mobilefacenet (32x32)', build: () => createBackbone('mobilefacenet', { inputSize: 32, embeddingSize: 16 }), keptBatchNorms: 0 },
  { name: 'mobilefacenet-s1 (32x32)', build: () => createBackbone('mobilefacenet-s1', { inputSize: 32, embeddingSize: 16 }), keptBatchNorms: 0 },
  { name: 'MobileFaceNet blocks [2,1,1,1] scale 1 (residual stem stage)', build: () => new MobileFaceNet({ blocks: [2, 1, 1, 1], scale: 1, inputSize: 24, embeddingSize: 8 }), keptBatchNorms: 0 },
  { name: 'feature-mlp [16, 10]', build: () => createBackbone('feature-mlp', { inputDim: 12, hiddenDims: [16, 10], embeddingSize: 6, dropout: 0.3 }), keptBatchNorms: 0 },
  { name: 'FeatureMLP without hidden layers', build: () => new FeatureMLP({ inputDim: 9, hiddenDims: [], embeddingSize: 5 }), keptBatchNorms: 0 },
];

for (const { name, build, keptBatchNorms } of cases) {
  test(`${name}: the folded form matches the eval forward to 1e-5 relative, with only the non-foldable BNs left`, () => {
    manualSeed(31);
    const model = build();
    try {
      trainedLike(model);
      assert.equal(canFoldBatchNorm(model), true);
      const { before, after } = checkParity(model);
      const bnModules = model.modules().filter((m) => m instanceof nn.BatchNorm1d || m instanceof nn.BatchNorm2d).length;
      assert.equal(before.batchNorms, bnModules);
      assert.equal(after.batchNorms, keptBatchNorms);
      assert.ok(after.ops < before.ops, `${after.ops} operators after folding, ${before.ops} before`);
    } finally {
      model.dispose();
    }
  });
}

test('the trained model is not modified: state dict bit for bit, requiresGrad, mode; the folded form only frees its own tensors', () => {
  manualSeed(32);
  const model = createBackbone('iresnet18', { inputSize: 16, embeddingSize: 8 });
  const x = F.randn([2, 3, 16, 16]);
  try {
    trainedLike(model);
    const snapshot = tidy(() => Object.fromEntries(Object.entries(model.stateDict()).map(([k, t]) => [k, Buffer.from(t.bytes())])));
    const grads = model.parameters().map((p) => p.requiresGrad);
    const strides = model.parameters().map((p) => p.strides.join(','));
    const expected = forward(model, x);
    const folded = foldBatchNorm(model);
    forward(folded, x);
    folded.dispose();
    assert.equal(model.training, false);
    tidy(() => {
      for (const [key, tensor] of Object.entries(model.stateDict())) assert.ok(Buffer.from(tensor.bytes()).equals(snapshot[key]!), `${key} changed`);
    });
    assert.deepEqual(model.parameters().map((p) => p.requiresGrad), grads);
    assert.deepEqual(model.parameters().map((p) => p.strides.join(',')), strides);
    assert.deepEqual(forward(model, x), expected, 'the original still runs, with the same output');
  } finally {
    x.dispose();
    model.dispose();
  }
});

test('folded layers keep the module names, the weight layout and dtype; folding is a snapshot of the statistics', () => {
  manualSeed(33);
  const model = createBackbone('iresnet18', { inputSize: 16, embeddingSize: 8 }) as IResNet;
  const x = F.randn([2, 3, 16, 16]);
  const folded = foldBatchNorm(model);
  try {
    const names = new Set(folded.namedParameters().map(([n]) => n));
    for (const name of ['conv1.weight', 'conv1.bias', 'layer1.0.conv1.bias', 'layer1.0.conv2.bias', 'layer1.0.downsample.0.bias', 'layer1.0.bn1.weight', 'fc.weight', 'fc.bias']) {
      assert.ok(names.has(name), `${name} in ${[...names].join(' ')}`);
    }
    assert.equal(names.has('bn1.weight') || names.has('features.weight') || names.has('layer1.0.bn2.weight'), false, 'folded BNs are gone');
    const original = new Map(model.namedParameters());
    for (const [name, tensor] of folded.namedParameters()) {
      if (!name.endsWith('.weight') || tensor.ndim !== 4) continue;
      const source = original.get(name)!;
      assert.deepEqual(tensor.strides, source.strides, `${name} keeps the layout`);
      assert.equal(tensor.dtype, source.dtype);
    }
    assert.ok(folded.modules().some((m) => m instanceof FoldedConv2d) && folded.modules().some((m) => m instanceof InferenceBatchNorm));
    assert.equal(folded.sourceTypeName, 'IResNet');
    assert.deepEqual([folded.embeddingSize, ...folded.inputShape], [8, 3, 16, 16]);
    model.eval();
    const before = forward(folded, x);
    // A folded BN's statistics are copied into the conv: changing them afterwards needs a new fold.
    noGrad(() => model.bn1.runningVar!.mul_(4));
    assert.deepEqual(forward(folded, x), before);
    const refolded = foldBatchNorm(model);
    assert.ok(maxAbsDiff(forward(refolded, x), before) > 1e-3, 'a new fold sees the new statistics');
    refolded.dispose();
    assert.throws(() => folded.call(F.zeros([1, 3, 8, 8])), /IResNet \(folded\): expected input \[N, 3, 16, 16\], got \[1, 3, 8, 8\]/);
  } finally {
    folded.dispose();
    x.dispose();
    model.dispose();
  }
});

/**
 * A custom backbone that opts into folding: BN -> unpadded grouped conv -> BN (folded both ways),
 * conv -> BN, BN -> padded conv (the BN stays), Dropout, linear -> BN1d and BN1d -> linear -> BN1d
 * on the flattened features, and a BN1d on a linear's 3-d output that must not fold.
 */
class FoldableNet extends Module implements Backbone, BatchNormFoldable {
  readonly embeddingSize = 5;
  readonly inputShape = [4, 6, 6];
  readonly body = this.registerModule(
    'body',
    new nn.Sequential(
      new nn.BatchNorm2d(4),
      new nn.Conv2d(4, 8, 3, { groups: 2 }),
      new nn.BatchNorm2d(8),
      new nn.PReLU(8),
      new nn.Conv2d(8, 6, 1, { bias: true }),
      new nn.BatchNorm2d(6),
      new nn.BatchNorm2d(6),
      new nn.Conv2d(6, 6, 3, { padding: 1, bias: false }),
      new nn.Dropout(0.5),
      new nn.Flatten(),
      new nn.Linear(6 * 4 * 4, 12),
      new nn.BatchNorm1d(12),
      new nn.PReLU(),
      new nn.BatchNorm1d(12),
      new nn.Linear(12, 5, { bias: false }),
      new nn.BatchNorm1d(5),
    ),
  );
  forward(x: Tensor): Tensor {
    return this.body.call(x);
  }
  inferenceSteps(folder: BatchNormFolder): [string, nn.TensorModule | null][] {
    return [['body', folder.fold(this.body)]];
  }
}

test('a custom backbone with inferenceSteps: every exact fold applies in a Sequential; BN before a padded conv stays', () => {
  manualSeed(34);
  const model = new FoldableNet();
  try {
    trainedLike(model);
    const { before, after } = checkParity(model, 4);
    assert.equal(before.batchNorms, 7);
    assert.equal(after.batchNorms, 1);
  } finally {
    model.dispose();
  }
});

test('linear -> BN1d folds only where the linear sees [N, F]; a module without a rule is shared, never freed', () => {
  manualSeed(35);
  class Unknown extends Module {
    readonly inner = this.registerModule('inner', new nn.Sequential(new nn.Conv2d(2, 2, 1), new nn.BatchNorm2d(2)));
    forward(x: Tensor): Tensor {
      return this.inner.call(x);
    }
  }
  class SequenceNet extends Module implements Backbone {
    readonly embeddingSize = 3;
    readonly inputShape = [2, 4, 3];
    readonly unknown = this.registerModule('unknown', new Unknown());
    // [N, 2, 4, 3] -> flatten(2) -> [N, 2, 12] -> Linear(12, 3) -> [N, 2, 3]: the BN1d(2) normalizes dim 1, not the linear's output.
    readonly body = this.registerModule('body', new nn.Sequential(new nn.Flatten(2), new nn.Linear(12, 3), new nn.BatchNorm1d(2)));
    forward(x: Tensor): Tensor {
      return tidy(() => F.mean(this.body.call(this.unknown.call(x)), 1));
    }
  }
  const model = new SequenceNet();
  try {
    trainedLike(model);
    const folded = foldBatchNorm(new SharedPieces(model));
    try {
      const x = F.randn([3, 2, 4, 3]);
      const expected = forward(model, x);
      assert.ok(maxAbsDiff(forward(folded, x), expected) <= 1e-6 * Math.max(1, maxAbs(expected)));
      assert.equal(batchNormCalls(folded, x).batchNorms, 2, 'neither the unknown module\'s BN nor the 3-d BN1d folds');
      x.dispose();
    } finally {
      folded.dispose();
    }
    assert.equal(model.unknown.inner.at(0).parameters()[0]!.isDisposed, false);
  } finally {
    model.dispose();
  }
});

/** Folds SequenceNet's two pieces as steps, with the mean over dim 1 done by a shared module. */
class SharedPieces extends Module implements Backbone, BatchNormFoldable {
  readonly embeddingSize: number;
  readonly inputShape: readonly number[];
  constructor(readonly source: Backbone & { unknown: Module; body: nn.Sequential }) {
    super();
    this.embeddingSize = source.embeddingSize;
    this.inputShape = source.inputShape;
  }
  forward(x: Tensor): Tensor {
    return this.source.call(x);
  }
  inferenceSteps(folder: BatchNormFolder): [string, nn.TensorModule | null][] {
    return [
      ['unknown', folder.fold(this.source.unknown)],
      ['body', folder.fold(this.source.body)],
      ['mean', new MeanOverChannels()],
    ];
  }
}

class MeanOverChannels extends Module {
  forward(x: Tensor): Tensor {
    return F.mean(x, 1);
  }
}

test('a backbone without a fold rule is wrapped unchanged; withFoldedBatchNorm disposes the folded form', async () => {
  manualSeed(36);
  class Plain extends Module implements Backbone {
    readonly embeddingSize = 4;
    readonly inputShape = [6];
    readonly fc = this.registerModule('fc', new nn.Linear(6, 4));
    readonly bn = this.registerModule('bn', new nn.BatchNorm1d(4));
    forward(x: Tensor): Tensor {
      return this.bn.call(this.fc.call(x));
    }
  }
  const model = new Plain();
  const x = F.randn([3, 6]);
  try {
    trainedLike(model);
    assert.equal(canFoldBatchNorm(model), false);
    let seen: Backbone | null = null;
    const output = await withFoldedBatchNorm(model, (folded) => {
      seen = folded;
      assert.ok(folded instanceof FoldedBackbone);
      return forward(folded, x);
    });
    assert.deepEqual(output, forward(model, x));
    assert.ok(seen !== null);
    assert.equal(model.fc.weight.isDisposed, false, 'the original survives the folded form');
    await assert.rejects(
      withFoldedBatchNorm(model, () => Promise.reject(new Error('inside'))),
      /inside/,
    );
    assert.equal(model.bn.runningMean!.isDisposed, false);
  } finally {
    x.dispose();
    model.dispose();
  }
});
