// `plsc bench eval`: the folded and unfolded forms are both measured, on the same input, with the
// operator counts and their parity. Nothing here asserts speed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { measureEvalEmbedding } from '../../bench/eval-embed.js';
import { benchCommand } from '../../bench/cli.js';
import { captured } from '../helpers/capture-console.js';
import { scopeDepth } from '../../src/index.js';

test('measureEvalEmbedding: both forms timed in every round, fewer operators and no BN folded, outputs agree', () => {
  const result = measureEvalEmbedding({ model: 'mobilefacenet', imageSize: 16, batch: 2, iterations: 1, rounds: 3 });
  assert.equal(result.rounds.length, 3);
  for (const round of result.rounds) assert.ok(round.unfolded_ms > 0 && round.folded_ms > 0 && round.unfolded_cpu_ms > 0 && round.folded_cpu_ms > 0, JSON.stringify(round));
  assert.ok(result.unfolded_img_per_s > 0 && result.folded_img_per_s > 0 && result.speedup > 0 && result.cpu_speedup > 0);
  assert.equal(result.folded_batch_norms, 0);
  assert.ok(result.unfolded_batch_norms > 0);
  assert.equal(result.unfolded_ops - result.folded_ops, result.unfolded_batch_norms, 'folding removes exactly the BN operators of mobilefacenet');
  assert.ok(result.max_relative_difference < 1e-5, String(result.max_relative_difference));
  assert.ok(result.unfolded_batch_norm_share > 0 && result.unfolded_batch_norm_share < 1, String(result.unfolded_batch_norm_share));
  assert.equal(scopeDepth(), 0);
});

test('plsc bench eval --json prints one object per model; bad flags exit 2', async () => {
  const ok = await captured(() => benchCommand(['eval', '--model', 'iresnet18', '--image-size', '16', '--batch', '2', '--rounds', '1', '--iterations', '1', '--json']));
  assert.equal(ok.result, 0, ok.stderr);
  const lines = ok.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  assert.equal(lines.length, 1);
  assert.equal(lines[0]!.model, 'iresnet18');
  assert.equal(lines[0]!.folded_batch_norms, 8, 'the IR blocks keep their leading BN');
  const bad = await captured(() => benchCommand(['eval', '--batch', '0']));
  assert.equal(bad.result, 2);
  assert.match(bad.stderr, /batch/);
});
