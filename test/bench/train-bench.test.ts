// `plsc bench train`: the JSON report has every field, as numbers (PyTorch's as null when absent).
// Sizes are tiny; nothing here asserts speed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { benchTrain } from '../../bench/train.js';

async function runJson(argv: string[]): Promise<Record<string, unknown>> {
  const lines: string[] = [];
  const original = console.log;
  console.log = (...parts: unknown[]) => void lines.push(parts.map(String).join(' '));
  let code: number;
  try {
    code = await benchTrain(argv);
  } finally {
    console.log = original;
  }
  assert.equal(code, 0);
  assert.equal(lines.length, 1, `expected one JSON line, got ${JSON.stringify(lines)}`);
  return JSON.parse(lines[0] as string) as Record<string, unknown>;
}

function assertPositiveNumber(report: Record<string, unknown>, key: string): void {
  const value = report[key];
  assert.equal(typeof value, 'number', `${key} should be a number, got ${JSON.stringify(value)}`);
  assert.ok(Number.isFinite(value) && (value as number) > 0, `${key} should be finite and > 0, got ${value}`);
}

function checkReport(report: Record<string, unknown>, expected: { model: string; nproc: number; batch: number; torchMalloc: string; rounds: number }): void {
  assert.equal(report.model, expected.model);
  assert.equal(report.nproc, expected.nproc);
  assert.equal(report.batch, expected.batch);
  for (const key of ['img_per_s', 'step_ms', 'backbone_step_ms', 'backbone_img_per_s', 'threads_per_worker', 'target_ratio']) assertPositiveNumber(report, key);
  const phases = report.phases as Record<string, unknown>;
  assert.deepEqual(Object.keys(phases).sort(), ['backward', 'comm', 'data', 'forward', 'head', 'optimizer']);
  for (const [name, value] of Object.entries(phases)) {
    assert.equal(typeof value, 'number', `phases.${name}`);
    assert.ok(Number.isFinite(value) && (value as number) >= 0, `phases.${name} = ${value}`);
  }
  assert.ok((phases.forward as number) > 0 && (phases.backward as number) > 0 && (phases.optimizer as number) > 0);
  const perRank = report.backbone_step_ms_per_rank as number[];
  assert.equal(perRank.length, expected.nproc);
  assert.ok(perRank.every((ms) => Number.isFinite(ms) && ms > 0));
  assert.equal(typeof report.final_loss, 'number');
  assert.ok(Number.isFinite(report.final_loss));
  if (report.torch_img_per_s === null) {
    assert.equal(report.torch_version, null);
    assert.equal(report.torch_backbone_step_ms, null);
    assert.equal(report.torch_malloc, null);
    assert.equal(report.backbone_step_ratio, null);
    assert.deepEqual((report.rounds as { torch_ms: number | null }[]).map((r) => r.torch_ms), [null]);
  } else {
    for (const key of ['torch_img_per_s', 'torch_backbone_step_ms', 'backbone_step_ratio']) assertPositiveNumber(report, key);
    assert.equal(typeof report.torch_version, 'string');
    assert.equal(report.torch_malloc, expected.torchMalloc);
    // plsc and PyTorch alternate; the ratio is the median of the rounds' ratios.
    const rounds = report.rounds as { ours_ms: number; torch_ms: number }[];
    assert.equal(rounds.length, expected.rounds);
    assert.ok(rounds.every((r) => r.ours_ms > 0 && r.torch_ms > 0));
    const ratios = rounds.map((r) => r.ours_ms / r.torch_ms).sort((a, b) => a - b);
    const mid = Math.floor(ratios.length / 2);
    const median = ratios.length % 2 === 1 ? (ratios[mid] as number) : ((ratios[mid - 1] as number) + (ratios[mid] as number)) / 2;
    assert.ok(Math.abs((report.backbone_step_ratio as number) - median) < 1e-9);
  }
}

test('bench train --json, one worker: throughput, phases, backbone step ours and PyTorch', async () => {
  const report = await runJson(['--model', 'iresnet18', '--image-size', '32', '--batch', '4', '--steps', '2', '--json', '--classes', '100', '--rounds', '2']);
  checkReport(report, { model: 'iresnet18', nproc: 1, batch: 4, torchMalloc: 'cached', rounds: 2 });
  assert.equal(report.image_size, 32);
  assert.equal(report.classes, 100);
});

test('bench train --json --nproc 2 runs launched workers and reports rank 0', async () => {
  const report = await runJson(['--model', 'mobilefacenet', '--nproc', '2', '--image-size', '32', '--batch', '4', '--steps', '1', '--classes', '64', '--torch-malloc', 'default', '--json', '--rounds', '2']);
  checkReport(report, { model: 'mobilefacenet', nproc: 2, batch: 4, torchMalloc: 'default', rounds: 2 });
  assert.ok((report.phases as Record<string, number>).comm > 0, 'two workers all-reduce the backbone gradients');
});

test('bench train --model mobilefacenet-s1: the small-input backbone, ours and the PyTorch peer', async () => {
  const report = await runJson(['--model', 'mobilefacenet-s1', '--image-size', '32', '--batch', '4', '--steps', '1', '--json', '--classes', '64', '--rounds', '1']);
  checkReport(report, { model: 'mobilefacenet-s1', nproc: 1, batch: 4, torchMalloc: 'cached', rounds: 1 });
  assert.equal(report.image_size, 32);
});

test('bench train rejects unknown options and bad values, naming them', async () => {
  await assert.rejects(benchTrain(['--modle', 'iresnet18']), /unknown option --modle/);
  await assert.rejects(benchTrain(['--model', 'resnet9000']), /--model must be one of iresnet18, mobilefacenet/);
  await assert.rejects(benchTrain(['--batch', '0']), /--batch must be a positive integer, got "0"/);
  await assert.rejects(benchTrain(['--steps']), /--steps needs a value/);
  await assert.rejects(benchTrain(['--torch-malloc', 'jemalloc']), /--torch-malloc must be cached or default/);
});
