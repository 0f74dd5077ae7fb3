// Resuming checks that the checkpoint fits the run: the dataset (size and label order, recorded in
// meta.json) and imageSize, saying what differs instead of skipping an epoch or failing on a conv
// shape.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Trainer, readMeta, type TrainConfig } from '../../src/index.js';
import { capturingStderr, makeListDataset, scratch, tinyConfig } from './data-fixtures.js';

async function run(config: TrainConfig): Promise<number> {
  const trainer = await Trainer.create(config);
  try {
    return (await trainer.train({ quiet: true })).finalStep;
  } finally {
    trainer.dispose();
  }
}

test('resume: another dataset size, another label order or another imageSize is refused, saying what differs', async () => {
  const { dir, cleanup } = scratch();
  try {
    const data = await makeListDataset(join(dir, 'full'), 48, 4);
    const dataset = { type: 'list', path: data.list } as const;
    await capturingStderr(() => run(tinyConfig(dir, dataset, { checkpointPeriod: 1 })));
    const checkpoint = join(dir, 'checkpoints', 'step-00000005');
    const meta = readMeta(checkpoint);
    assert.deepEqual(meta.dataOrder, { epoch: 0, position: 40 });
    assert.equal(meta.data?.samples, 48);
    assert.equal(meta.data?.imageSize, 8);
    assert.match(meta.data?.labelOrderFingerprint ?? '', /^[0-9a-f]{16}$/);

    // The same data resumes (and finishes the epoch).
    assert.equal(await run(tinyConfig(dir, dataset, { resume: checkpoint, trainSteps: 6 })), 6);

    const smaller = await makeListDataset(join(dir, 'smaller'), 24, 4);
    await assert.rejects(
      Trainer.create(tinyConfig(dir, { type: 'list', path: smaller.list }, { resume: checkpoint })),
      /resume: checkpoint .*step-00000005 was trained on a dataset of 48 samples, this dataset has 24, so its data order \(epoch 0, position 40\) does not apply: resume on the dataset it was trained on, or start a fresh run \(resume: null\)/,
    );

    const lines = readFileSync(data.list, 'utf8').trim().split('\n');
    const reordered = join(dir, 'full', 'reordered.txt');
    writeFileSync(reordered, `${[...lines.slice(1), lines[0]].join('\n')}\n`);
    await assert.rejects(
      Trainer.create(tinyConfig(dir, { type: 'list', path: reordered }, { resume: checkpoint })),
      /was trained on a dataset of 48 samples in another order \(label-order fingerprint [0-9a-f]{16}, this dataset [0-9a-f]{16}\)/,
    );

    await assert.rejects(
      Trainer.create(tinyConfig(dir, dataset, { resume: checkpoint, imageSize: 16 })),
      /resume: checkpoint .*step-00000005 was trained with imageSize 8, this config has imageSize 16: the backbone's weights fit only its own input size; set imageSize: 8/,
    );

    // A checkpoint of an older version (no data record) is still checked against the dataset's end.
    const metaPath = join(checkpoint, 'meta.json');
    const old = JSON.parse(readFileSync(metaPath, 'utf8')) as Record<string, unknown>;
    delete old.data;
    writeFileSync(metaPath, JSON.stringify(old));
    await assert.rejects(
      Trainer.create(tinyConfig(dir, { type: 'list', path: smaller.list }, { resume: checkpoint })),
      /resume: checkpoint .*step-00000005 stopped at position 40 of epoch 0, past the end of this dataset of 24 samples/,
    );
    await assert.rejects(Trainer.create(tinyConfig(dir, dataset, { resume: checkpoint, imageSize: 16 })), /was trained with imageSize 8, this config has imageSize 16/);
  } finally {
    cleanup();
  }
});
