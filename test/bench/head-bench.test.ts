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
    const value = report[key];
    assert.ok(value !== null && Number.isFinite(value) && value > 0, `${key} = ${value}`);
  }
  assert.ok(Number.isFinite(report.bytes_per_class));
  assert.equal(report.weight_and_momentum_bytes_per_class, 2 * 16 * 4);
  assert.equal(report.storage, 'float32');
  assert.equal(report.tile_rows, 1000);
  assert.equal(report.chunk_size, null);
  assert.equal(report.torch_step_ms, null);
  assert.equal(report.ours_over_torch, null);
  assert.ok(report.profile !== null);
  const ops = new Map(report.profile.ops.map((entry) => [entry.op, entry]));
  // Three tiles of 1000 classes: the logits and dW GEMMs (mm.out into tile buffers) and one dX addmm_ each;
  // the passes between them are the fused native kernels, not aten operators.
  assert.equal(ops.get('aten::mm.out')?.calls, 6, JSON.stringify(report.profile.ops.slice(0, 8)));
  assert.equal(ops.get('aten::addmm_')?.calls, 3);
  assert.ok(report.profile.ops.every((entry) => entry.totalMs <= report.profile!.step_ms));
});

test('bench head: bad sizes are refused by name', async () => {
  await assert.rejects(benchHead(['--classes', '0']), /--classes must be a positive number, got 0/);
  await assert.rejects(benchHead(['--storage', 'int8']), /--storage takes float32, bfloat16, float16, got int8/);
});

test('bench head --storage bfloat16: reports the storage and 2 bytes per stored value', async () => {
  const { result: code, stdout, stderr } = await captured(() =>
    benchHead(['--classes', '3000', '--emb', '16', '--batch', '8', '--sample-rate', '0.5', '--storage', 'bfloat16', '--warmup', '0', '--repeats', '1', '--json']),
  );
  assert.equal(code, 0, stderr);
  const report = JSON.parse(stdout) as HeadBenchResult;
  assert.equal(report.storage, 'bfloat16');
  assert.equal(report.weight_and_momentum_bytes_per_class, 2 * 16 * 2);
  assert.equal(report.gemm_single_call_ms, null);
  assert.ok(Number.isFinite(report.step_ms) && report.step_ms > 0);
  assert.ok(Number.isFinite(report.gemm_ms) && report.gemm_ms > 0);
});
