// Training steps free every temporary they create. Two measurements:
// - live tensors: the test counts Tensor handles created (Tensor.fromHandle) and not yet disposed.
//   Holding them also keeps the GC finalizer backstop from hiding a forgotten dispose(). Over full
//   steps (forward through nn layers, backward, clipGradNorm, step, zeroGrad) the count must not move.
// - resident memory after a forced GC, over optimizer steps on gradients refreshed in place, catches
//   what stays reachable (state that accumulates) and allocation churn, with a generous bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ops as F, tidy, noGrad, manualSeed, nn, optim, Tensor } from '../../src/index.js';

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;
const MiB = 1024 * 1024;

type AnyOptimizer = optim.Optimizer<optim.Hyperparameters>;

/** Runs fn while recording every tensor handle created; returns a function counting those still alive. */
function countingLiveTensors<T>(fn: (liveCount: () => number) => T): T {
  const live = new Set<Tensor>();
  const originalFromHandle = Tensor.fromHandle;
  const originalDispose = Tensor.prototype.dispose;
  Tensor.fromHandle = (handle) => {
    const t = originalFromHandle.call(Tensor, handle);
    live.add(t);
    return t;
  };
  Tensor.prototype.dispose = function dispose(this: Tensor): void {
    live.delete(this);
    originalDispose.call(this);
  };
  try {
    return fn(() => {
      for (const t of live) if (t.isDisposed) live.delete(t);
      return live.size;
    });
  } finally {
    Tensor.fromHandle = originalFromHandle;
    Tensor.prototype.dispose = originalDispose;
  }
}

function makeModel(): nn.Sequential {
  // ~4 MiB of parameters: a leaked temporary per parameter per step would add ~4 MiB a step.
  return new nn.Sequential(new nn.Linear(256, 1024), new nn.ReLU(), new nn.Linear(1024, 768), new nn.ReLU(), new nn.Linear(768, 10));
}

function makeOptimizer(kind: 'SGD' | 'AdamW', model: nn.Sequential): AnyOptimizer {
  return kind === 'SGD'
    ? new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 1e-4, nesterov: true })
    : new optim.AdamW(model.parameters(), { lr: 1e-3, amsgrad: true });
}

for (const kind of ['SGD', 'AdamW'] as const) {
  test(`${kind}: the number of live tensors stays constant over 200 training steps`, () => {
    countingLiveTensors((liveCount) => {
      manualSeed(5);
      const model = makeModel();
      const optimizer = makeOptimizer(kind, model);
      const x = F.randn([32, 256]);
      const y = F.randint(0, 10, [32]);
      const step = (): void => {
        tidy(() => F.crossEntropy(model.call(x), y).backward());
        // Deliberately outside tidy(): these must clean up after themselves.
        optim.clipGradNorm(model.parameters(), 5);
        optimizer.step();
        optimizer.zeroGrad();
      };
      for (let i = 0; i < 3; i++) step();
      const before = liveCount();
      for (let i = 0; i < 200; i++) {
        step();
        if (i % 50 === 49) tidy(() => void optimizer.stateDict());
      }
      assert.equal(liveCount(), before, 'tensors alive after 200 more steps');
      optimizer.dispose();
      model.dispose();
      x.dispose();
      y.dispose();
    });
  });

  test(`${kind}: resident memory stays flat over 200 optimizer steps`, () => {
    manualSeed(6);
    const model = makeModel();
    const optimizer = makeOptimizer(kind, model);
    const params = model.parameters();
    const gradients = params.map((p) => F.zerosLike(p));
    params.forEach((p, i) => (p.grad = gradients[i] as Tensor));
    // New gradient values each step, written in place (as backward accumulating into zeroed grads).
    const refresh = (step: number): void => {
      optimizer.zeroGrad(false);
      for (const p of params) {
        const g = p.grad as Tensor;
        noGrad(() => g.add_(p, step % 2 === 0 ? 0.01 : -0.01));
        g.dispose();
      }
    };
    const step = (i: number): void => {
      refresh(i);
      optim.clipGradNorm(params, 5);
      optimizer.step();
    };
    for (let i = 0; i < 20; i++) step(i);
    tidy(() => void optimizer.stateDict());
    collectGarbage();
    const rss0 = process.memoryUsage().rss;
    for (let i = 0; i < 200; i++) {
      step(i);
      if (i % 50 === 49) tidy(() => void optimizer.stateDict());
    }
    collectGarbage();
    const growth = process.memoryUsage().rss - rss0;
    assert.ok(growth < 64 * MiB, `resident memory grew by ${(growth / MiB).toFixed(1)} MiB over 200 steps`);
    for (const g of gradients) g.dispose();
    optimizer.dispose();
    model.dispose();
  });
}
