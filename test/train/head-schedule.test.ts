// The sharded head's row-sparse SGD follows the same learning-rate schedule as the backbone's SGD.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Trainer, resolveConfig } from '../../src/index.js';

const tinyBackbone = `${fileURLToPath(new URL('./fixtures/tiny-backbone.js', import.meta.url))}#createTinyBackbone`;

test('dist_* training: every step the head optimizer groups get the backbone SGD rate from the schedule', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-head-schedule-'));
  try {
    for (const lossType of ['dist_arcface', 'dist_softmax']) {
      const config = resolveConfig({
        dataset: { type: 'synthetic', numClasses: 20, imagesPerClass: 4, seed: 1 },
        model: tinyBackbone,
        imageSize: 16,
        embSize: 16,
        trainBatchSize: 8,
        trainSteps: 6,
        lr: 0.8,
        lrScheduler: 'poly',
        lossType,
        scale: 16,
        withTest: false,
        logPeriod: 100,
        checkpointDir: join(dir, `${lossType}-checkpoints`),
        modelSaveDir: join(dir, `${lossType}-output`),
      });
      const trainer = await Trainer.create(config);
      try {
        const headOptimizer = trainer.head.optimizer;
        assert.ok(headOptimizer !== null, `${lossType}: a sharded head has its row-sparse SGD`);
        assert.equal(headOptimizer.paramGroups.length, lossType === 'dist_softmax' ? 2 : 1, `${lossType}: weight (and bias) groups`);
        for (let steps = 1; steps <= 3; steps++) {
          await trainer.train({ quiet: true, noCheckpoints: true, maxStepsThisRun: 1 });
          const lastStepLr = trainer.lrAt(steps - 1);
          assert.ok(lastStepLr < trainer.lrAt(0) || steps === 1, 'the polynomial schedule decays');
          assert.deepEqual(trainer.optimizer.paramGroups.map((g) => g.lr), [lastStepLr]);
          assert.deepEqual(headOptimizer.paramGroups.map((g) => g.lr), headOptimizer.paramGroups.map(() => lastStepLr), `${lossType} step ${steps}`);
          assert.deepEqual(headOptimizer.paramGroups.map((g) => [g.momentum, g.weightDecay]), headOptimizer.paramGroups.map((_, i) => [config.momentum, i === 0 ? config.weightDecay : 0]));
        }
      } finally {
        trainer.dispose();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
