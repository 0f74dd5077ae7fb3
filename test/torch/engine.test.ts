// The tensor engine: creation, dtypes, data access, scopes, autograd entry points, errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  ops as F,
  tidy,
  keep,
  dispose,
  noGrad,
  enableGrad,
  isGradEnabled,
  manualSeed,
  profileOps,
  backward,
  getNumThreads,
  backendInfo,
  Tensor,
} from '../../src/index.js';
import { callOp, op } from '../../src/torch/dispatch.js';

test('creation ops give the requested shapes and dtypes', () => {
  tidy(() => {
    assert.deepEqual(F.zeros([2, 3]).shape, [2, 3]);
    assert.equal(F.zeros([2]).dtype, 'float32');
    assert.deepEqual(F.ones([2], { dtype: 'int64' }).toArray(), [1, 1]);
    assert.deepEqual(F.full([3], 2.5).toArray(), [2.5, 2.5, 2.5]);
    assert.deepEqual(F.arange(1, 7, 2).toArray(), [1, 3, 5]);
    assert.equal(F.arange(4).dtype, 'int64');
    const r = F.randint(3, 5, [100]);
    assert.ok(r.toArray().every((v) => v === 3 || v === 4));
    assert.deepEqual(F.sort(F.randperm(6))[0].toArray(), [0, 1, 2, 3, 4, 5]);
    for (const dtype of ['float32', 'float16', 'bfloat16', 'int64', 'uint8', 'bool', 'float64'] as const) {
      assert.equal(F.zeros([1], { dtype }).dtype, dtype);
    }
    assert.deepEqual(F.tensor([[1, 2], [3, 4]]).shape, [2, 2]);
    assert.throws(() => F.tensor([[1, 2], [3]]), /ragged/);
  });
});

test('dtype conversions and reading data back', () => {
  tidy(() => {
    const t = F.tensor([1.5, -2.25, 3]);
    assert.ok(t.dataSync() instanceof Float32Array);
    assert.deepEqual(t.half().toArray(), [1.5, -2.25, 3]);
    assert.deepEqual(t.to('bfloat16').toArray(), [1.5, -2.25, 3]);
    const asLong = t.long();
    assert.ok(asLong.dataSync() instanceof BigInt64Array);
    assert.deepEqual(asLong.toArray(), [1, -2, 3]);
    assert.deepEqual(F.tensor([0, 2], { dtype: 'uint8' }).toArray(), [0, 2]);
    assert.equal(F.tensor([7]).item(), 7);
    assert.equal(F.sum(F.tensor([1, 2, 3], { dtype: 'int64' })).item(), 6);
  });
});

test('fromTypedArray shares memory with the array (zero-copy)', () => {
  tidy(() => {
    const data = new Float32Array([1, 2, 3, 4]);
    const t = F.fromTypedArray(data, [2, 2]);
    data[0] = 10;
    assert.equal(t.select(0, 0).select(0, 0).item(), 10);
    t.mul_(2);
    assert.equal(data[3], 8);
    const bytes = new Uint8Array([1, 2, 3, 4, 5, 6]);
    const u = F.fromTypedArray(bytes, [2, 3]);
    assert.equal(u.dtype, 'uint8');
    assert.deepEqual(u.float().sum(1).toArray(), [6, 15]);
    assert.throws(() => F.fromTypedArray(new Float32Array(3), [2, 2]), /cannot hold shape/);
  });
});

test('tidy disposes everything created inside except the result and kept tensors', () => {
  let inner: Tensor | undefined;
  let kept: Tensor | undefined;
  const result = tidy(() => {
    inner = F.ones([3]);
    kept = keep(F.zeros([2]));
    const nested = tidy(() => {
      const a = F.ones([3]);
      return { value: a.add(1), list: [a.mul(2)] };
    });
    return nested.value.add(inner);
  });
  assert.equal(inner?.isDisposed, true);
  assert.equal(kept?.isDisposed, false);
  assert.equal(result.isDisposed, false);
  assert.deepEqual(result.toArray(), [3, 3, 3]);
  dispose([result, kept]);
  assert.equal(result.isDisposed, true);
  assert.throws(() => result.shape, /disposed/);
});

test('a tensor an inner tidy returns but did not create stays with its owner (no scope, or an outer scope)', () => {
  const parameter = F.ones([2]);
  let outerCreated: Tensor | undefined;
  let innerCreated: Tensor | undefined;
  tidy(() => {
    outerCreated = F.zeros([2]);
    tidy(() => {
      const middle = tidy(() => {
        // The parameter (no scope owns it) and the outer scope's tensor pass through two scopes.
        assert.equal(tidy(() => parameter), parameter);
        assert.equal(tidy(() => outerCreated), outerCreated);
        innerCreated = tidy(() => F.ones([2]).add(1));
        return innerCreated;
      });
      assert.equal(middle.isDisposed, false, 'a created survivor moves to the enclosing scope');
    });
    assert.equal(innerCreated?.isDisposed, true, 'and dies with it');
    assert.equal(outerCreated?.isDisposed, false, "an outer scope's tensor lives until that scope ends");
  });
  assert.equal(outerCreated?.isDisposed, true);
  assert.equal(parameter.isDisposed, false, 'a tensor no scope owns is never disposed by one');
  assert.deepEqual(parameter.toArray(), [1, 1]);
  parameter.dispose();
});

test('tidy disposes on exceptions too and rejects async functions', () => {
  let created: Tensor | undefined;
  assert.throws(() =>
    tidy(() => {
      created = F.ones([2]);
      throw new Error('boom');
    }),
  /boom/);
  assert.equal(created?.isDisposed, true);
  assert.throws(() => tidy(() => Promise.resolve(1) as unknown as number), /synchronous/);
});

test('autograd: backward with and without an explicit gradient, grads accumulate, detach', () => {
  tidy(() => {
    const x = F.tensor([1, 2, 3]).requiresGrad_();
    const y = x.mul(x).sum();
    y.backward();
    assert.deepEqual(x.grad?.toArray(), [2, 4, 6]);
    x.mul(3).backward(F.tensor([1, 1, 2]));
    assert.deepEqual(x.grad?.toArray(), [5, 7, 12]);
    x.grad = null;
    assert.equal(x.grad, null);
    const d = x.mul(2).detach();
    assert.equal(d.requiresGrad, false);
    assert.equal(x.isLeaf, true);
    assert.match(x.mul(2).gradFn ?? '', /^MulBackward/);
    const a = F.tensor([1.0]).requiresGrad_();
    const b = F.tensor([2.0]).requiresGrad_();
    backward([a.mul(3), b.mul(4)]);
    assert.deepEqual([a.grad?.item(), b.grad?.item()], [3, 4]);
  });
});

test('noGrad and enableGrad scopes', () => {
  tidy(() => {
    const x = F.ones([2]).requiresGrad_();
    const y = noGrad(() => x.mul(2));
    assert.equal(y.requiresGrad, false);
    assert.equal(isGradEnabled(), true);
    noGrad(() => {
      assert.equal(isGradEnabled(), false);
      assert.equal(enableGrad(() => x.mul(2)).requiresGrad, true);
    });
    assert.equal(isGradEnabled(), true);
  });
});

test('tensor hooks see and can replace gradients', () => {
  tidy(() => {
    const x = F.ones([3]).requiresGrad_();
    const seen: number[][] = [];
    x.registerHook((g) => {
      seen.push(g.toArray());
      return g.mul(10);
    });
    x.mul(2).sum().backward();
    assert.deepEqual(seen, [[2, 2, 2]]);
    assert.deepEqual(x.grad?.toArray(), [20, 20, 20]);
  });
});

test('manualSeed makes random ops reproducible', () => {
  tidy(() => {
    manualSeed(123);
    const a = F.randn([5]).toArray();
    manualSeed(123);
    const b = F.randn([5]).toArray();
    assert.deepEqual(a, b);
  });
});

test('in-place ops modify and return the same tensor', () => {
  tidy(() => {
    const t = F.zeros([3]);
    const same = t.add_(2).mul_(3).sub_(1);
    assert.equal(same, t);
    assert.deepEqual(t.toArray(), [5, 5, 5]);
    F.addcmul_(t, F.ones([3]), F.full([3], 2), 0.5);
    assert.deepEqual(t.toArray(), [6, 6, 6]);
    F.indexAdd_(t, 0, F.tensor([0, 0], { dtype: 'int64' }), F.tensor([1, 2]));
    assert.deepEqual(t.toArray(), [9, 6, 6]);
  });
});

test('indexing and sorting ops', () => {
  tidy(() => {
    const [values, indices] = F.topk(F.tensor([3, 9, 1, 7]), 2);
    assert.deepEqual(values.toArray(), [9, 7]);
    assert.deepEqual(indices.toArray(), [1, 3]);
    const u = F.unique(F.tensor([5, 1, 5, 3], { dtype: 'int64' }));
    assert.deepEqual(u.values.toArray(), [1, 3, 5]);
    assert.deepEqual(u.inverse.toArray(), [2, 0, 2, 1]);
    assert.deepEqual(u.counts.toArray(), [1, 1, 2]);
    assert.deepEqual(F.searchsorted(F.tensor([1, 3, 5]), F.tensor([0, 3, 6])).toArray(), [0, 1, 3]);
    const s = F.scatter(F.zeros([2, 3]), 1, F.tensor([[2], [0]], { dtype: 'int64' }), 1);
    assert.deepEqual(s.toArray(), [0, 0, 1, 1, 0, 0]);
    assert.deepEqual(F.index(F.tensor([10, 20, 30]), [F.tensor([2, 0], { dtype: 'int64' })]).toArray(), [30, 10]);
  });
});

test('any registered operator is callable by schema name', () => {
  tidy(() => {
    const out = callOp('aten::hardtanh', '', [F.tensor([-3, 0.5, 3])]) as Tensor;
    assert.deepEqual(out.toArray(), [-1, 0.5, 1]);
    assert.match(op('aten::add', 'Tensor').schema(), /aten::add\.Tensor\(Tensor self, Tensor other, \*, Scalar alpha=1\)/);
  });
});

test('profileOps counts the aten calls of a region, including in-place and failing ones', () => {
  tidy(() => {
    const a = F.ones([64, 64]);
    const { result, ops, totalMs } = profileOps(() => {
      const b = F.mm(a, a);
      F.mm(b, a);
      F.mul_(b, 2);
      assert.throws(() => callOp('aten::mm', '', [a, F.ones([3, 3])]));
      return b;
    });
    assert.deepEqual(result.shape, [64, 64]);
    assert.equal(F.amax(result, [0, 1]).item(), 128);
    const byName = new Map(ops.map((entry) => [entry.op, entry]));
    assert.equal(byName.get('aten::mm')?.calls, 2, JSON.stringify(ops));
    assert.equal(byName.get('aten::mul_.Scalar')?.calls, 1, JSON.stringify(ops));
    assert.ok(ops.every((entry) => entry.totalMs >= 0 && entry.totalMs <= totalMs));
    for (let i = 1; i < ops.length; i++) assert.ok((ops[i - 1] as { totalMs: number }).totalMs >= (ops[i] as { totalMs: number }).totalMs);
    // Outside a region nothing is recorded, and regions do not nest.
    F.mm(a, a);
    assert.equal(profileOps(() => F.add(a, 1)).ops.length, 1);
    assert.throws(() => profileOps(() => profileOps(() => 0)), /already open/);
  });
});

test('bad input raises JS errors naming the op, never crashes', () => {
  tidy(() => {
    assert.throws(() => callOp('aten::no_such_op', '', []), /unknown operator 'aten::no_such_op'/);
    assert.throws(() => F.mm(F.ones([2, 3]), F.ones([2, 3])), /aten::mm: mat1 and mat2 shapes cannot be multiplied \(2x3 and 2x3\)/);
    assert.throws(() => callOp('aten::add', 'Tensor', [F.ones([2]), 'nope']), /aten::add\.Tensor: argument 'other' \(Tensor\): expected a tensor/);
    assert.throws(() => callOp('aten::sum', '', []), /argument 'self'.*missing required argument/);
    assert.throws(() => F.add(F.ones([2]), F.ones([3])), /aten::add\.Tensor: The size of tensor a \(2\) must match/);
    assert.throws(() => F.zeros([2], { dtype: 'complex' as 'float32' }), /unknown dtype 'complex'/);
    assert.throws(() => F.conv2d(F.ones([1, 3, 4, 4]), F.ones([2, 4, 3, 3])), /aten::conv2d/);
    const t = F.ones([2]);
    t.dispose();
    assert.throws(() => F.add(t, 1), /disposed/);
  });
});

test('threads are set for libtorch and the BLAS pool', () => {
  assert.ok(getNumThreads() >= 1);
  const info = backendInfo();
  assert.match(info.torchVersion, /^\d+\.\d+/);
  assert.equal(typeof info.blasThreadControl, 'string');
});

test('thread pools wait passively unless the user chose otherwise (set before libgomp/OpenBLAS load)', () => {
  const probe = [
    "const native = await import(process.argv[1]);",
    "console.log(JSON.stringify({ omp: process.env.OMP_WAIT_POLICY, blas: process.env.OPENBLAS_THREAD_TIMEOUT, spin: process.env.GOMP_SPINCOUNT ?? null, injected: native.injectedThreadEnv }));",
  ].join('\n');
  const nativeModule = new URL('../../src/torch/native.js', import.meta.url).href;
  type Seen = { omp: string; blas: string; spin: string | null; injected: string[] };
  const run = (extra: Record<string, string>): Seen => {
    const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
    for (const name of ['OMP_WAIT_POLICY', 'OPENBLAS_THREAD_TIMEOUT', 'GOMP_SPINCOUNT']) if (!(name in extra)) delete env[name];
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', probe, nativeModule], { env, encoding: 'utf8' });
    return JSON.parse(out.trim().split('\n').pop() as string) as Seen;
  };
  assert.deepEqual(run({}), { omp: 'PASSIVE', blas: '4', spin: '10000', injected: ['OMP_WAIT_POLICY', 'OPENBLAS_THREAD_TIMEOUT', 'GOMP_SPINCOUNT'] });
  // A user's wait policy keeps libgomp's spin count for it (GOMP_SPINCOUNT would override it).
  assert.deepEqual(run({ OMP_WAIT_POLICY: 'ACTIVE' }), { omp: 'ACTIVE', blas: '4', spin: null, injected: ['OPENBLAS_THREAD_TIMEOUT'] });
  assert.deepEqual(run({ GOMP_SPINCOUNT: '0' }), { omp: 'PASSIVE', blas: '4', spin: '0', injected: ['OMP_WAIT_POLICY', 'OPENBLAS_THREAD_TIMEOUT'] });
});
