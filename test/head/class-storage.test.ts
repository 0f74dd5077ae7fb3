// 16-bit class storage inside the head step: float32 math on widened rows, writes within the
// storage's rounding, and stochastic rounding that repeats exactly on resume.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ops as F, tidy, manualSeed, noGrad, PartialFC, type Tensor } from '../../src/index.js';
import type { ClassStorage } from '../../src/torch/fused.js';

function runHead(head: PartialFC, x: Tensor, labels: number[]): { loss: number; xGrad: Float32Array } {
  const xLeaf = x.detach().requiresGrad_();
  const { loss } = head.forward(xLeaf, F.tensor(labels, { dtype: 'int64' }));
  loss.backward();
  return { loss: loss.item(), xGrad: xLeaf.grad?.dataSync() as Float32Array };
}

// The momentum of the centres, kept by the head's row-sparse SGD.
function momentumOf(head: PartialFC): Tensor {
  assert.ok(head.optimizer !== null, 'a fused head has its optimizer');
  return head.optimizer.momentumBuffer(head.weight);
}

function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs((a[i] as number) - (b[i] as number)));
  return worst;
}

const B = 6, D = 8, C = 40;
const LABELS = [0, 7, 7, 15, 39, 3];
const SGD = { lr: 0.2, momentum: 0.9, weightDecay: 0.01 };

function heads(storage: ClassStorage, extra: { sampleRate?: number; chunkSize?: number } = {}): { narrow: PartialFC; wide: PartialFC } {
  const common = { embeddingSize: D, numClasses: C, seed: 5, update: 'fused' as const, updateBlockRows: 16, fusedSgd: SGD, ...extra };
  const narrow = new PartialFC({ ...common, classStorage: storage });
  const wide = new PartialFC(common);
  noGrad(() => wide.weight.copy_(narrow.weight)); // the same (representable) centres in float32
  return { narrow, wide };
}

test('16-bit storage: the weight and momentum keep their dtype and shape; dense update is refused', () => {
  tidy(() => {
    for (const storage of ['bfloat16', 'float16'] as const) {
      const head = new PartialFC({ embeddingSize: D, numClasses: C, update: 'fused', classStorage: storage, fusedSgd: SGD });
      assert.equal(head.weight.dtype, storage);
      assert.deepEqual(head.weight.shape, [C, D]);
      assert.equal(momentumOf(head).dtype, storage);
      const std = Math.sqrt(F.mean(F.square(F.to(head.weight, 'float32'))).item());
      assert.ok(std > 0.007 && std < 0.013, `initial std ${std}`);
    }
    assert.throws(() => new PartialFC({ embeddingSize: D, numClasses: C, classStorage: 'bfloat16' }), /classStorage 'bfloat16' needs update 'fused'/);
    assert.throws(() => new PartialFC({ embeddingSize: D, numClasses: C, update: 'fused', fusedSgd: SGD, classStorage: 'int8' as ClassStorage }), /classStorage must be one of float32, bfloat16, float16/);
  });
});

test('16-bit storage: loss and dL/dX equal a float32 head on the same centres; updates land within one rounding', () => {
  for (const storage of ['bfloat16', 'float16'] as const) {
    for (const extra of [{}, { sampleRate: 0.5 }, { chunkSize: 10 }]) {
      tidy(() => {
        manualSeed(21);
        const { narrow, wide } = heads(storage, extra);
        const x = F.randn([B, D]);
        for (let step = 0; step < 3; step++) {
          // Both start the step from the same centres and momentum: the float32 head is the exact reference.
          noGrad(() => {
            wide.weight.copy_(narrow.weight);
            momentumOf(wide).copy_(momentumOf(narrow));
          });
          const a = runHead(narrow, x, LABELS);
          const b = runHead(wide, x, LABELS);
          const what = `${storage} ${JSON.stringify(extra)} step ${step}`;
          assert.ok(Math.abs(a.loss - b.loss) <= 1e-6 * Math.abs(b.loss), `${what}: loss ${a.loss} vs ${b.loss}`);
          assert.ok(maxAbsDifference(a.xGrad, b.xGrad) < 1e-6, `${what}: dL/dX`);
          const stored = F.to(narrow.weight, 'float32').toArray();
          const exact = wide.weight.toArray();
          const relativeStep = storage === 'bfloat16' ? 2 ** -7 : 2 ** -11;
          for (let i = 0; i < exact.length; i++) {
            const bound = Math.abs(exact[i] as number) * relativeStep * 1.0001 + 1e-7;
            assert.ok(Math.abs((stored[i] as number) - (exact[i] as number)) <= bound, `${what}: weight[${i}] ${stored[i]} vs ${exact[i]}`);
          }
        }
      });
    }
  }
});

test('bfloat16 storage: stochastic rounding repeats exactly when a run resumes from its state', () => {
  tidy(() => {
    manualSeed(22);
    const x = F.randn([B, D]);
    // Each run starts from the same centres.
    const make = (): PartialFC => (manualSeed(23), new PartialFC({ embeddingSize: D, numClasses: C, seed: 9, update: 'fused', classStorage: 'bfloat16', sampleRate: 0.5, fusedSgd: SGD }));
    const straight = make();
    for (let step = 0; step < 3; step++) runHead(straight, x, LABELS);

    const first = make();
    for (let step = 0; step < 2; step++) runHead(first, x, LABELS);
    const state = first.stateDict();
    const resumed = make();
    resumed.loadStateDict(state);
    resumed.samplerStep = first.samplerStep;
    runHead(resumed, x, LABELS);
    assert.deepEqual(F.to(resumed.weight, 'float32').toArray(), F.to(straight.weight, 'float32').toArray(), 'weight bits');
    assert.deepEqual(
      F.to(momentumOf(resumed), 'float32').toArray(),
      F.to(momentumOf(straight), 'float32').toArray(),
      'momentum bits',
    );
    // The rounding bits come from the seed: another seed, same centres and data, other bits.
    const bySeed = [9, 10].map((seed) => new PartialFC({ embeddingSize: D, numClasses: C, seed, update: 'fused', classStorage: 'bfloat16', fusedSgd: SGD }));
    noGrad(() => (bySeed[1] as PartialFC).weight.copy_((bySeed[0] as PartialFC).weight));
    for (const head of bySeed) runHead(head, x, LABELS);
    assert.notDeepEqual(F.to((bySeed[0] as PartialFC).weight, 'float32').toArray(), F.to((bySeed[1] as PartialFC).weight, 'float32').toArray());
  });
});
