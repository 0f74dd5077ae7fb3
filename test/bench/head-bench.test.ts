// `plsc bench head`: the JSON report has every field the issue names, and --profile lists the step's
// operators. Sizes are tiny; nothing here asserts speed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { benchHead, type HeadBenchResult } from '../../bench/head.js';
import { captured } from '../helpers/capture-console.js';

test('bench head --json --profile: step, GEMMs, memory per class and the operator table', async () => {
  const { result: code, stdout, stderr } = await captured(() =>
    benchHead(['--classes', '3000', '--emb', '16', '--batch', '8', '--tile-rows', '1000', '--warmup', '0', '--repeats', '1', '--json', '--profile']),
  );
  assert.equal(code, 0, stderr);
  const report = JSON.parse(stdout) as HeadBenchResult;
  for (const key of ['step_ms', 'gemm_ms', 'step_over_gemm', 'gemm_single_call_ms', 'peak_rss_bytes'] as const) {
    assert.ok(Number.isFinite(report[key]) && report[key] > 0, `${key} = ${report[key]}`);
  }
  assert.ok(Number.isFinite(report.bytes_per_class));
  assert.equal(report.weight_and_momentum_bytes_per_class, 2 * 16 * 4);
  assert.equal(report.tile_rows, 1000);
  assert.equal(report.chunk_size, null);
  assert.equal(report.torch_step_ms, null);
  assert.equal(report.ours_over_torch, null);
  assert.ok(report.profile !== null);
  const ops = new Map(report.profile.ops.map((entry) => [entry.op, entry]));
  // Three tiles of 1000 classes: one logits GEMM (mm.out), one dX addmm_ and one dW mm each.
  assert.equal(ops.get('aten::mm.out')?.calls, 3, JSON.stringify(report.profile.ops.slice(0, 8)));
  assert.equal(ops.get('aten::addmm_')?.calls, 3);
  assert.ok(report.profile.ops.every((entry) => entry.totalMs <= report.profile!.step_ms));
});

test('bench head: bad sizes are refused by name', async () => {
  await assert.rejects(benchHead(['--classes', '0']), /--classes must be a positive number, got 0/);
});
