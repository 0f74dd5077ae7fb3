// Config strictness: empty configs, misspelt keys at any depth (with a suggestion), labels beyond
// classNum named by file and line, and the bad-sample settings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Entry, Trainer, loadConfigFile, resolveConfig } from '../../src/index.js';
import { closestName } from '../../src/config/suggest.js';
import { makeListDataset, plsc, scratch, tinyConfig, writeTinyYaml } from './data-fixtures.js';

test('an empty or comment-only config file is an error naming the file (plsc train exits 2)', async () => {
  const { dir, cleanup } = scratch();
  try {
    const path = join(dir, 'train.yaml');
    for (const text of ['', '\n\n', '# classNum: 10\n# lossType: dist_arcface\n']) {
      writeFileSync(path, text);
      assert.throws(() => loadConfigFile(path), /train\.yaml: the config file holds no settings \(it is empty or only comments\)/);
      assert.throws(() => loadConfigFile(path, ['classNum=5']), /holds no settings/);
    }
    const run = await plsc(['train', '--config', path]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /plsc train: .*train\.yaml: the config file holds no settings/);
  } finally {
    cleanup();
  }
});

test('misspelt keys at any depth are errors with a did-you-mean, in the file and in --set', () => {
  const { dir, cleanup } = scratch();
  try {
    const path = join(dir, 'train.yaml');
    writeFileSync(path, 'dataset:\n  type: synthetic\n  numClasses: 10\n  imagesPerClass: 4\ntrainSteps: 5\n');
    assert.throws(
      () => loadConfigFile(path, ['dataset.numClass=5']),
      /train\.yaml: dataset\.numClass: unknown setting of a synthetic dataset; did you mean numClasses\? \(known: type, numClasses, imagesPerClass, seed, noise\)/,
    );
    assert.throws(() => loadConfigFile(path, ['trainStep=3']), /train\.yaml: trainStep: unknown setting; did you mean trainSteps\?/);
    assert.throws(() => loadConfigFile(path, ['badSample=fail']), /badSample: unknown setting; did you mean badSamples\?/);
    assert.throws(() => loadConfigFile(path, ['trainSteps.max=3']), /trainSteps\.max: trainSteps is 5, not a group of settings/);
    assert.throws(() => loadConfigFile(path, ['__proto__.polluted=1']), /__proto__\.polluted: is not a setting name/);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    writeFileSync(path, 'dataset: { type: list, paht: /data/label.txt }\n');
    assert.throws(() => loadConfigFile(path), /train\.yaml: dataset\.paht: unknown setting of a list dataset; did you mean path\?/);
    writeFileSync(path, 'dataset: /data/train\nclassNum: 10\n');
    assert.throws(() => loadConfigFile(path, ['dataset.type=rec']), /dataset\.type: dataset is "\/data\/train", not a group of settings/);
    // Names nothing is close to get the list without a guess.
    assert.throws(() => resolveConfig({ zzzzzzzz: 1 }), (error: Error) => /zzzzzzzz: unknown setting \(known: classNum, /.test(error.message));
    // The Entry API validates the same way.
    assert.throws(() => new Entry().setDataset({ type: 'synthetic', numClasses: 4, imagesPerClass: 2, sed: 1 } as never), /dataset\.sed: unknown setting of a synthetic dataset; did you mean seed\?/);
  } finally {
    cleanup();
  }
});

test('closestName suggests likely typos only', () => {
  const known = ['classNum', 'trainSteps', 'numClasses', 'imageSize', 'lr'];
  assert.equal(closestName('numClass', known), 'numClasses');
  assert.equal(closestName('imagesize', known), 'imageSize');
  assert.equal(closestName('trianSteps', known), 'trainSteps');
  assert.equal(closestName('LR', known), 'lr');
  assert.equal(closestName('momentum', known), undefined);
  assert.equal(closestName('paht', ['type', 'path']), 'path');
  assert.equal(closestName('x', []), undefined);
});

test('badSamples and maxBadSampleFraction: defaults, validation at the setter and in files', () => {
  const config = resolveConfig({});
  assert.equal(config.badSamples, 'skip');
  assert.equal(config.maxBadSampleFraction, 0.001);
  const entry = new Entry();
  assert.throws(() => entry.setBadSamples('ignore' as never), /badSamples: must be one of fail, skip, got "ignore"/);
  assert.throws(() => entry.setMaxBadSampleFraction(1.5), /maxBadSampleFraction: must be a fraction in \[0, 1\], got 1\.5/);
  assert.throws(() => entry.setMaxBadSampleFraction(-0.1), /maxBadSampleFraction: must be a fraction/);
  const set = entry.setBadSamples('fail').setMaxBadSampleFraction(0.01).config();
  assert.equal(set.badSamples, 'fail');
  assert.equal(set.maxBadSampleFraction, 0.01);
});

test('a label beyond classNum is an error naming the list file and line of the first offending label', async () => {
  const { dir, cleanup } = scratch();
  try {
    const data = await makeListDataset(dir, 16, 4);
    const lines = readFileSync(data.list, 'utf8').split('\n');
    lines[6] = 'images/6.png 4';
    lines[11] = 'images/11.png 9';
    writeFileSync(data.list, lines.join('\n'));
    await assert.rejects(
      Trainer.create(tinyConfig(dir, { type: 'list', path: data.list })),
      /classNum is 4 but file .*label\.txt line 7 \(.*images\/6\.png\) has label 4 \(labels must lie in 0\.\.3; the dataset's largest label is 9\): raise classNum or fix the label/,
    );
    const run = await plsc(['train', '--config', writeTinyYaml(dir, data.list)]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /plsc train: classNum is 4 but file .*label\.txt line 7 /);
  } finally {
    cleanup();
  }
});
