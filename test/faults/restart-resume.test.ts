// Which checkpoint a restarted group resumes from (the newest one that verifies, skipping damaged
// ones), and what a resume on another worker count does to the global batch and the lr.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { ProcessGroup, readMeta } from '../../src/index.js';
import { newestVerifiedCheckpoint, restartCountOf, resumeAfterRestart } from '../../src/train/restart-resume.js';
import { describeWorldSizeChange, worldSizeChange } from '../../src/train/world-size-change.js';
import { flipExponentBit, scratch, tinyConfig, trainTiny } from './fixtures/tiny-run.js';

test('a restart resumes from the newest checkpoint whose digests verify; a first start keeps the configured resume', async () => {
  const dir = scratch();
  try {
    const config = tinyConfig(dir, { trainSteps: 3, checkpointPeriod: 1, maxLastCheckpointNum: 10 });
    await trainTiny(config);
    const ckpt = config.checkpointDir;
    assert.equal(newestVerifiedCheckpoint(ckpt).checkpoint?.step, 3);
    flipExponentBit(join(ckpt, 'step-00000003', 'backbone.safetensors'));
    const choice = newestVerifiedCheckpoint(ckpt);
    assert.equal(choice.checkpoint?.step, 2);
    assert.equal(choice.skipped.length, 1);
    assert.match(choice.skipped[0]?.problem ?? '', /^backbone\.safetensors: .*sha256/);

    const lines: string[] = [];
    const group = ProcessGroup.local();
    const restarted = { TORCHELASTIC_RESTART_COUNT: '2', TORCHELASTIC_MAX_RESTARTS: '3' };
    assert.equal(resumeAfterRestart(ckpt, null, group, restarted, (l) => lines.push(l)), join(ckpt, 'step-00000002'));
    assert.match(lines[0] ?? '', /^plsc train: restart 2 of 3: skipping checkpoint \S+step-00000003: backbone\.safetensors: /);
    assert.match(lines[1] ?? '', /^plsc train: restart 2 of 3: resuming from \S+step-00000002 \(step 2; every file matches its recorded sha256\)$/);
    assert.equal(resumeAfterRestart(ckpt, 'latest', group, {}, (l) => lines.push(l)), 'latest', 'a first start keeps the configured resume');
    assert.equal(lines.length, 2, 'a first start prints nothing');

    const empty = join(dir, 'none');
    lines.length = 0;
    assert.equal(resumeAfterRestart(empty, null, group, restarted, (l) => lines.push(l)), null);
    assert.match(lines[0] ?? '', /^plsc train: restart 2 of 3: no verified checkpoint in \S+none; starting fresh from step 0$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('TORCHELASTIC_RESTART_COUNT is read strictly', () => {
  assert.equal(restartCountOf({}), 0);
  assert.equal(restartCountOf({ TORCHELASTIC_RESTART_COUNT: '4' }), 4);
  assert.throws(() => restartCountOf({ TORCHELASTIC_RESTART_COUNT: 'x' }), /TORCHELASTIC_RESTART_COUNT="x": expected a non-negative integer/);
});

test('resuming on fewer workers: per-worker batch fixed, global batch and base lr follow the worker count', async () => {
  const dir = scratch();
  try {
    const config = tinyConfig(dir, { trainSteps: 1, lossType: 'dist_arcface', lr: 0.2, trainBatchSize: 8 });
    const meta = { ...readMeta(await trainTiny(config)), workers: 2 };
    const change = worldSizeChange(config, meta, 1, 48);
    assert.deepEqual(change, {
      fromWorkers: 2,
      toWorkers: 1,
      perWorkerBatch: 8,
      fromGlobalBatch: 16,
      toGlobalBatch: 8,
      fromLr: (0.2 * 16) / 512,
      toLr: (0.2 * 8) / 512,
      fromStepsPerEpoch: 3,
      toStepsPerEpoch: 6,
      shardsResplit: true,
    });
    assert.equal(
      describeWorldSizeChange(change as NonNullable<typeof change>),
      'plsc train: world size 2 -> 1 since the checkpoint: per-worker batch stays 8, so the global batch goes 16 -> 8 and the base lr (linear in the global batch) 0.00625 -> 0.003125; steps per epoch 3 -> 6; the FC class shards are re-split 2 -> 1 ways',
    );
    assert.equal(worldSizeChange(config, meta, 2, 48), null, 'same worker count: no change');
    assert.equal(worldSizeChange(config, { ...meta, workers: undefined, lossType: 'arcface' }, 1, 48), null, 'unknown worker count of an old replicated-head checkpoint');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
