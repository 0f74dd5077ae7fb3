// The sharded head over real processes (plsc launch, gloo): exact against the dense reference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSafetensors, tidy, ops as F, CombinedMarginLoss, type Tensor } from '../../src/index.js';
import { launch } from '../../src/distributed/launcher.js';
import { denseReference, maxRelativeError } from './reference.js';

const worker = fileURLToPath(new URL('./fixtures/head-worker.js', import.meta.url));
const D = 8;
const C = 23;

async function runWorkers(worldSize: number, env: Record<string, string>): Promise<Record<string, Tensor>[]> {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-head-'));
  const output: string[] = [];
  const result = await launch({
    nprocPerNode: worldSize,
    command: worker,
    env: { ...env, HEAD_TEST_OUT: dir, PLSC_NUM_THREADS: '1' },
    onOutput: (line) => output.push(`[rank ${line.rank}] ${line.text}`),
  });
  assert.equal(result.exitCode, 0, `workers failed:\n${output.join('\n')}`);
  const ranks = Array.from({ length: worldSize }, (_, r) => loadSafetensors(join(dir, `rank-${r}.safetensors`)));
  rmSync(dir, { recursive: true, force: true });
  return ranks;
}

const marginOf = (name: string): CombinedMarginLoss =>
  name === 'cosface' ? CombinedMarginLoss.cosface() : name === 'softmax' ? CombinedMarginLoss.softmax() : CombinedMarginLoss.arcface();

for (const worldSize of [1, 2, 3, 4]) {
  for (const marginName of worldSize === 3 ? ['arcface', 'cosface', 'softmax'] : ['arcface']) {
    test(`world size ${worldSize} (${marginName}): loss, weight and embedding gradients equal the dense reference`, async () => {
      const ranks = await runWorkers(worldSize, { HEAD_TEST_MARGIN: marginName });
      tidy(() => {
        const first = ranks[0] as Record<string, Tensor>;
        const B = (first.globalX as Tensor).shape[0] as number;
        const labels = (first.labels as Tensor).toArray();
        const ref = denseReference(
          (first.globalX as Tensor).dataSync() as Float32Array,
          (first.globalW as Tensor).dataSync() as Float32Array,
          labels,
          { batch: B, dim: D, classes: C },
          marginOf(marginName),
          marginName === 'softmax' ? ((first.globalBias as Tensor).dataSync() as Float32Array) : null,
        );
        for (const r of ranks) {
          const loss = (r.loss as Tensor).item();
          assert.ok(Math.abs(loss - ref.loss) <= 1e-5 * Math.abs(ref.loss), `loss ${loss} vs ${ref.loss}`);
        }
        const weightGrad = F.cat(ranks.map((r) => r.weightGrad as Tensor)).dataSync() as Float32Array;
        assert.ok(maxRelativeError(weightGrad, ref.weightGrad) < 1e-5, `weight grad error ${maxRelativeError(weightGrad, ref.weightGrad)}`);
        const embeddingGrad = F.cat(ranks.map((r) => r.embeddingGrad as Tensor)).dataSync() as Float32Array;
        assert.ok(maxRelativeError(embeddingGrad, ref.embeddingGrad) < 1e-5, `embedding grad error ${maxRelativeError(embeddingGrad, ref.embeddingGrad)}`);
        if (ref.biasGrad) {
          const biasGrad = F.cat(ranks.map((r) => r.biasGrad as Tensor)).dataSync() as Float32Array;
          assert.ok(maxRelativeError(biasGrad, ref.biasGrad) < 1e-5);
        }
      });
    });
  }
}

test('world size 3 with class chunks equals the dense reference', async () => {
  const ranks = await runWorkers(3, { HEAD_TEST_CHUNK: '3' });
  tidy(() => {
    const first = ranks[0] as Record<string, Tensor>;
    const B = (first.globalX as Tensor).shape[0] as number;
    const ref = denseReference((first.globalX as Tensor).dataSync() as Float32Array, (first.globalW as Tensor).dataSync() as Float32Array, (first.labels as Tensor).toArray(), { batch: B, dim: D, classes: C }, CombinedMarginLoss.arcface());
    assert.ok(Math.abs((first.loss as Tensor).item() - ref.loss) <= 1e-5 * ref.loss);
    assert.ok(maxRelativeError(F.cat(ranks.map((r) => r.weightGrad as Tensor)).dataSync() as Float32Array, ref.weightGrad) < 1e-5);
    assert.ok(maxRelativeError(F.cat(ranks.map((r) => r.embeddingGrad as Tensor)).dataSync() as Float32Array, ref.embeddingGrad) < 1e-5);
  });
});

test('world size 2 with sampling equals the dense reference restricted to the sampled classes', async () => {
  const ranks = await runWorkers(2, { HEAD_TEST_SAMPLE_RATE: '0.5' });
  tidy(() => {
    const first = ranks[0] as Record<string, Tensor>;
    const B = (first.globalX as Tensor).shape[0] as number;
    const labels = (first.labels as Tensor).toArray();
    const fullGrad = F.cat(ranks.map((r) => r.weightGrad as Tensor));
    const sampled = F.nonzero(F.ne(F.sum(F.abs(fullGrad), 1), 0)).toArray();
    for (const label of labels) assert.ok(sampled.includes(label), `positive class ${label} was sampled`);
    // ceil(0.5 * 12) + ceil(0.5 * 11) centres, or more when a shard has more positives than that
    assert.ok(sampled.length >= 12 && sampled.length < C, `sampled ${sampled.length}`);
    const restricted = F.indexSelect(first.globalW as Tensor, 0, F.tensor(sampled, { dtype: 'int64' }));
    const ref = denseReference((first.globalX as Tensor).dataSync() as Float32Array, restricted.dataSync() as Float32Array, labels.map((l) => sampled.indexOf(l)), { batch: B, dim: D, classes: sampled.length }, CombinedMarginLoss.arcface());
    assert.ok(Math.abs((first.loss as Tensor).item() - ref.loss) <= 1e-5 * ref.loss);
    const ours = F.indexSelect(fullGrad, 0, F.tensor(sampled, { dtype: 'int64' })).dataSync() as Float32Array;
    assert.ok(maxRelativeError(ours, ref.weightGrad) < 1e-5);
    assert.ok(maxRelativeError(F.cat(ranks.map((r) => r.embeddingGrad as Tensor)).dataSync() as Float32Array, ref.embeddingGrad) < 1e-5);
  });
});

test('a tiny training run (synthetic clusters, 1000 classes, 2 workers) reaches training accuracy > 0.9', async () => {
  const { readFileSync } = await import('node:fs');
  const dir = mkdtempSync(join(tmpdir(), 'plsc-clusters-'));
  const out = join(dir, 'accuracy.json');
  const output: string[] = [];
  const result = await launch({
    nprocPerNode: 2,
    command: fileURLToPath(new URL('./fixtures/train-clusters-worker.js', import.meta.url)),
    env: { CLUSTER_OUT: out, PLSC_NUM_THREADS: '1' },
    onOutput: (line) => output.push(line.text),
  });
  assert.equal(result.exitCode, 0, output.join('\n'));
  const accuracies = JSON.parse(readFileSync(out, 'utf8')) as number[];
  rmSync(dir, { recursive: true, force: true });
  const last = accuracies.slice(-10);
  const mean = last.reduce((a, b) => a + b, 0) / last.length;
  assert.ok(accuracies[0] !== undefined && accuracies[0] < 0.2, `starts near chance (${accuracies[0]})`);
  assert.ok(mean > 0.9, `training accuracy over the last 10 steps ${mean.toFixed(3)}`);
});
