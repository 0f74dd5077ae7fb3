// Situations in which no training step could run are errors at start: a trainBatchSize larger than
// the samples a worker gets (it used to loop forever at full CPU), and empty datasets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Trainer, checkStepsPerEpoch, type SampleSource } from '../../src/index.js';
import { makeListDataset, plsc, scratch, tinyConfig, writeTinyYaml } from './data-fixtures.js';

test('trainBatchSize larger than the dataset: plsc train exits 1 at once with the limit, instead of spinning', async () => {
  const { dir, cleanup } = scratch();
  try {
    const data = await makeListDataset(dir, 48, 4);
    const run = await plsc(['train', '--config', writeTinyYaml(dir, data.list), '--set', 'trainBatchSize=64'], 60_000);
    assert.equal(run.code, 1, `exit ${run.code} (null: killed after 60 s, i.e. it hung)\n${run.stderr}`);
    assert.match(
      run.stderr,
      /plsc train: trainBatchSize 64 is larger than the 48 samples each worker reads per epoch \(48 samples of dataset .*label\.txt over 1 worker\), so no step could run: set trainBatchSize to at most 48 or add data/,
    );
  } finally {
    cleanup();
  }
});

test("trainBatchSize larger than a worker's share of several workers names the share and suggests fewer workers", () => {
  const source: SampleSource = { length: 48, numClasses: 4, label: (i) => i % 4, read: () => Promise.reject(new Error('unused')), describe: (i) => `sample ${i}` };
  const spec = { type: 'list', path: '/data/label.txt' } as const;
  assert.throws(
    () => checkStepsPerEpoch(source, spec, 20, 3),
    /trainBatchSize 20 is larger than the 16 samples each worker reads per epoch \(48 samples of dataset \/data\/label\.txt over 3 workers\), so no step could run: set trainBatchSize to at most 16, use fewer workers or add data/,
  );
  // 49 samples over 3 workers: the sampler pads each share to 17.
  assert.doesNotThrow(() => checkStepsPerEpoch({ ...source, length: 49 }, spec, 17, 3));
  assert.doesNotThrow(() => checkStepsPerEpoch(source, spec, 16, 3));
  assert.throws(() => checkStepsPerEpoch({ ...source, length: 0 }, spec, 1, 1), /dataset \/data\/label\.txt holds no samples/);
});

test('empty datasets are errors at start naming the file or folder', async () => {
  const { dir, cleanup } = scratch();
  try {
    const list = join(dir, 'label.txt');
    writeFileSync(list, '# only a comment\n\n');
    await assert.rejects(Trainer.create(tinyConfig(dir, { type: 'list', path: list })), /label\.txt: list file has no samples/);
    const folder = join(dir, 'folder');
    mkdirSync(join(folder, 'a'), { recursive: true });
    mkdirSync(join(folder, 'b'));
    writeFileSync(join(folder, 'a', 'notes.txt'), 'no images here');
    await assert.rejects(Trainer.create(tinyConfig(dir, { type: 'folder', path: folder })), /folder: no images with extensions .*\.jpg.* in the class folders/);
    mkdirSync(join(dir, 'empty'));
    await assert.rejects(Trainer.create(tinyConfig(dir, { type: 'auto', path: join(dir, 'empty') })), /empty holds none of train\.rec, label\.txt, file_list\.txt or class folders/);
  } finally {
    cleanup();
  }
});
