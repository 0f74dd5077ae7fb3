// plsc plan: its bytes per class agree with what `plsc bench head` measures; the parts add up and
// follow the settings; bad input is named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { MEASURED_ACTIVATIONS, measureActivationBytesPerSample, planHead, planMemory, type MemoryPlan } from '../../src/index.js';
import { planCommand } from '../../src/train/plan-cli.js';
import { captured } from '../helpers/capture-console.js';

const plsc = fileURLToPath(new URL('../../../bin/plsc.js', import.meta.url));
const tinyBackbone = `${fileURLToPath(new URL('./fixtures/tiny-backbone.js', import.meta.url))}#createTinyBackbone`;

function runJson<T>(args: string[]): T {
  const run = spawnSync(process.execPath, [plsc, ...args], { encoding: 'utf8', env: { ...process.env, PLSC_NUM_THREADS: '1' } });
  assert.equal(run.status, 0, `plsc ${args.join(' ')}: ${run.stderr}`);
  return JSON.parse(run.stdout.trim().split('\n').at(-1) as string) as T;
}

test('plan bytes_per_class is within 15% of what plsc bench head measures (200k classes)', () => {
  for (const sampleRate of ['1', '0.3']) {
    const settings = ['--classes', '200000', '--emb', '128', '--batch', '64', '--sample-rate', sampleRate];
    const measured = runJson<{ bytes_per_class: number }>(['bench', 'head', ...settings, '--warmup', '0', '--repeats', '1', '--json']);
    const plan = runJson<MemoryPlan>(['plan', ...settings, '--model', tinyBackbone, '--image-size', '16', '--activation-bytes', '0', '--json']);
    const ratio = plan.bytes_per_class / measured.bytes_per_class;
    assert.ok(Math.abs(ratio - 1) <= 0.15, `sample rate ${sampleRate}: plan ${plan.bytes_per_class.toFixed(0)} vs bench head ${measured.bytes_per_class.toFixed(0)} bytes per class (ratio ${ratio.toFixed(3)})`);
  }
});

test('plan parts add up and follow storage, workers, sample rate and batch', async () => {
  const base = { classes: 100000, emb: 64, batch: 32, sampleRate: 1, model: tinyBackbone, imageSize: 16 };
  const plan = await planMemory({ ...base, activationBytesPerSample: 1000 });
  assert.equal(plan.per_worker_bytes, Object.values(plan.parts).reduce((a, b) => a + b, 0));
  assert.equal(plan.parts.class_weights, 100000 * 64 * 4);
  assert.equal(plan.parts.class_momentum, 100000 * 64 * 4);
  assert.equal(plan.parts.logits, 100000 * 32 * 4);
  assert.equal(plan.parts.gradient_buckets, 0);
  assert.equal(plan.parts.backbone_gradients, plan.parts.backbone_parameters);
  assert.equal(plan.parts.backbone_parameters, plan.backbone_parameter_count * 4);
  assert.ok(plan.backbone_parameter_count > 0);
  assert.equal(plan.parts.activations, 1000 * 32);
  assert.equal(plan.machine_bytes, plan.per_worker_bytes);
  assert.equal(plan.fits, plan.machine_bytes <= plan.total_memory_bytes);

  const half = planHead({ ...base, storage: 'bfloat16' });
  assert.equal(half.parts.class_weights, plan.parts.class_weights / 2);
  assert.equal(half.parts.class_momentum, plan.parts.class_momentum / 2);
  const sharded = planHead({ ...base, workers: 4 });
  assert.equal(sharded.rows, 25000);
  // Each worker keeps logits for its classes against the global batch (4 x 32).
  assert.equal(sharded.parts.logits, 25000 * 128 * 4);
  const sampled = planHead({ ...base, sampleRate: 0.1 });
  assert.equal(sampled.active, 10000);
  assert.equal(sampled.parts.logits, 10000 * 32 * 4);
  assert.ok(sampled.bytesPerClass < planHead(base).bytesPerClass);
  const sevenClasses = planHead({ ...base, classes: 7, workers: 2 });
  assert.equal(sevenClasses.rows, 4, 'the largest shard is planned');
});

test('plan uses the recorded activation measurements of built-in backbones, scaled by the pixel count', async () => {
  const recorded = MEASURED_ACTIVATIONS.find((m) => m.model === 'mobilefacenet');
  assert.ok(recorded !== undefined, 'src/train/measured-activations.ts records mobilefacenet');
  const plan = await planMemory({ classes: 1000, emb: 128, batch: 4, sampleRate: 1, model: 'mobilefacenet', imageSize: recorded.imageSize / 2 });
  assert.match(plan.activation_source, /measured-activations\.ts.*scaled by the pixel count/);
  assert.equal(plan.activation_bytes_per_sample, Math.round(recorded.bytesPerSample / 4));
  // A model not in the table is measured now (in a child process). At least the float32 input
  // itself is held per sample, and every layer's output on top.
  const measured = measureActivationBytesPerSample({ model: tinyBackbone, imageSize: 64, embeddingSize: 32, batches: [4, 36] });
  assert.ok(measured.bytesPerSample > 3 * 64 * 64 * 4, `tiny backbone at 64x64: ${measured.bytesPerSample} bytes per sample`);
  assert.deepEqual(measured.batches, [4, 36]);
  const planned = await planMemory({ classes: 1000, emb: 32, batch: 4, sampleRate: 1, model: tinyBackbone, imageSize: 16 });
  assert.match(planned.activation_source, /measured now at 16x16/);
  assert.equal(planned.parts.activations, planned.activation_bytes_per_sample * 4);
});

test('plan CLI: human and JSON output, fits, and errors naming the flag', async () => {
  const huge = await captured(() => planCommand(['--classes', '1000000000', '--emb', '512', '--batch', '64', '--sample-rate', '0.1', '--model', tinyBackbone, '--image-size', '16', '--activation-bytes', '0', '--json']));
  assert.equal(huge.result, 0, huge.stderr);
  const plan = JSON.parse(huge.stdout) as MemoryPlan;
  assert.equal(plan.fits, false);
  assert.ok(plan.per_worker_bytes > 1e9 * 512 * 8);
  const text = await captured(() => planCommand(['--classes', '1000', '--emb', '32', '--batch', '8', '--sample-rate', '1', '--workers', '2', '--nproc-per-node', '1', '--model', tinyBackbone, '--image-size', '16', '--activation-bytes', '5e6']));
  assert.equal(text.result, 0, text.stderr);
  assert.match(text.stdout, /500 classes per worker/);
  assert.match(text.stdout, /this machine \(1\).*fits/);
  assert.match(text.stdout, /gradient buckets .*data parallel/);
  assert.match(text.stdout, /activations +38\.1 MiB +4\.8 MiB per sample, given/);
  for (const [args, message] of [
    [['--emb', '32', '--batch', '8', '--sample-rate', '1'], /--classes is required/],
    [['--classes', '10', '--emb', '32', '--batch', '8', '--sample-rate', '1.5'], /--sample-rate must be in \(0, 1\], got '1.5'/],
    [['--classes', '10', '--emb', '32', '--batch', '8', '--sample-rate', '1', '--storage', 'int8'], /--storage must be one of float32, bfloat16, float16, got 'int8'/],
    [['--classes', '3', '--emb', '32', '--batch', '8', '--sample-rate', '1', '--workers', '4'], /--classes \(3\) must be at least --workers \(4\)/],
    [['--classes', '10', '--emb', '32', '--batch', '8', '--sample-rate', '1', '--workers', '2', '--nproc-per-node', '3'], /--nproc-per-node \(3\) cannot exceed --workers \(2\)/],
  ] as const) {
    const run = await captured(() => planCommand([...args]));
    assert.equal(run.result, 2, `${args.join(' ')}: ${run.stderr}`);
    assert.match(run.stderr, message);
  }
});
