// Bad samples under training: missing, truncated, zero-byte and non-image files, a .rec record at
// a bad offset, undecodable base64 lines and broken links in image folders are each reported with
// where they live and why, counted per epoch in the log and metrics.jsonl, and stop the run beyond
// badSamples / maxBadSampleFraction. Malformed label lines are errors at start, not bad samples.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Trainer, TooManyBadSamplesError, convertDataset, DataFormatError, type TrainConfig } from '../../src/index.js';
import {
  capturingFailure,
  capturingStderr,
  makeListDataset,
  plsc,
  readMetrics,
  scratch,
  tinyConfig,
  tinyPng,
  writeTinyYaml,
} from './data-fixtures.js';

async function train(config: TrainConfig): Promise<Awaited<ReturnType<Trainer['train']>>> {
  const trainer = await Trainer.create(config);
  try {
    return await trainer.train({ noCheckpoints: true });
  } finally {
    trainer.dispose();
  }
}

test('24 of 48 images missing: plsc train stops (exit 1) listing the missing files by list line, and trains on no copies', async () => {
  const { dir, cleanup } = scratch();
  try {
    const data = await makeListDataset(dir, 48, 4);
    for (let i = 0; i < 48; i += 2) rmSync(data.images[i]!);
    const run = await plsc(['train', '--config', writeTinyYaml(dir, data.list)]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /plsc train: training stopped: \d+ bad samples? in epoch 0, more than maxBadSampleFraction 0\.001 allows \(0 of the 48 samples read per epoch\):/);
    const listed = [...run.stderr.matchAll(/^ {2}file .*label\.txt line (\d+) \(.*images\/(\d+)\.png\): image file missing/gm)];
    assert.ok(listed.length >= 1, run.stderr);
    for (const [, line, image] of listed) {
      assert.equal(Number(line), Number(image) + 1, 'the list line of the image');
      assert.equal(Number(image) % 2, 0, 'only removed images are listed');
    }
    assert.match(run.stderr, /bad sample skipped: file .*label\.txt line \d+ /);
    assert.doesNotMatch(run.stdout, /plsc train: done/);
    assert.doesNotMatch(run.stderr, /step 1\/6/, 'no step ran on a batch holding copies of good rows');
  } finally {
    cleanup();
  }
});

test('truncated, zero-byte and non-image files under maxBadSampleFraction: each printed with file, line and reason; per-epoch counts in the log and metrics.jsonl', async () => {
  const { dir, cleanup } = scratch();
  try {
    const data = await makeListDataset(dir, 48, 4);
    truncateSync(data.images[5]!, 30);
    writeFileSync(data.images[17]!, '');
    writeFileSync(data.images[30]!, 'not an image at all\n');
    const config = tinyConfig(dir, { type: 'list', path: data.list }, { maxBadSampleFraction: 0.1, trainSteps: 12 });
    const { result, stderr } = await capturingStderr(() => train(config));
    assert.equal(result.stepsRun, 12);
    assert.equal(result.badSamples.skipped, 6, 'three bad files, two epochs');
    assert.match(stderr, /bad sample skipped: file .*label\.txt line 6 \(.*images\/5\.png\): .*(end of stream|premature|truncat)/i);
    assert.match(stderr, /bad sample skipped: file .*label\.txt line 18 \(.*images\/17\.png\): .*empty/i);
    assert.match(stderr, /bad sample skipped: file .*label\.txt line 31 \(.*images\/30\.png\): .*unsupported image format/i);
    assert.match(stderr, /epoch 0: 3 of 48 samples read were bad and skipped/);
    assert.match(stderr, /epoch 1: 3 of 48 samples read were bad and skipped/);
    const records = readMetrics(join(dir, 'output', 'metrics.jsonl')).filter((r) => r.type === 'bad_samples');
    assert.deepEqual(records.map((r) => [r.epoch, r.bad, r.samples, r.step]), [[0, 3, 48, 6], [1, 3, 48, 12]]);
    const where = records[0]!.first!.map((f) => f.where).sort();
    assert.equal(where.length, 3);
    assert.ok(where.every((w) => /label\.txt line (6|18|31) /.test(w)), where.join('\n'));
    assert.ok(result.reportPath !== null && existsSync(result.reportPath), 'the HTML report reads a metrics file with bad_samples records');
  } finally {
    cleanup();
  }
});

test('maxBadSampleFraction is a bound per epoch: 2 bad of 48 pass at 2/48 and stop at 1/48', async () => {
  const { dir, cleanup } = scratch();
  try {
    const data = await makeListDataset(dir, 48, 4);
    rmSync(data.images[3]!);
    rmSync(data.images[40]!);
    const dataset = { type: 'list', path: data.list } as const;
    const ok = await capturingStderr(() => train(tinyConfig(dir, dataset, { maxBadSampleFraction: 2 / 48 })));
    assert.equal(ok.result.stepsRun, 6);
    assert.equal(ok.result.badSamples.skipped, 2);
    const { error } = await capturingFailure(() => train(tinyConfig(dir, dataset, { maxBadSampleFraction: 1 / 48 })));
    assert.ok(error instanceof TooManyBadSamplesError, String(error));
    assert.equal(error.count, 2);
    assert.match(error.message, /training stopped: 2 bad samples in epoch 0, more than maxBadSampleFraction 0\.0208\d* allows \(1 of the 48 samples read per epoch\)/);
    assert.match(error.message, /label\.txt line 4 \(.*3\.png\): image file missing/);
    assert.match(error.message, /label\.txt line 41 \(.*40\.png\): image file missing/);
  } finally {
    cleanup();
  }
});

test("badSamples: fail stops at the first bad sample's batch, naming file, line and reason", async () => {
  const { dir, cleanup } = scratch();
  try {
    const data = await makeListDataset(dir, 48, 4);
    writeFileSync(data.images[9]!, 'garbage');
    const config = tinyConfig(dir, { type: 'list', path: data.list }, { badSamples: 'fail', maxBadSampleFraction: 0.5 });
    const { error, stderr } = await capturingFailure(() => train(config));
    assert.match(stderr, /^bad sample: file .*label\.txt line 10 /m);
    assert.doesNotMatch(stderr, /skipped/);
    assert.ok(error instanceof TooManyBadSamplesError, String(error));
    assert.match(error.message, /training stopped: 1 bad sample in epoch 0, badSamples is 'fail':\n {2}file .*label\.txt line 10 \(.*images\/9\.png\): .*unsupported image format/);
    assert.match(error.message, /set badSamples: skip/);
  } finally {
    cleanup();
  }
});

test('a .rec record at a bad offset is reported with its record key and byte offset', async () => {
  const { dir, cleanup } = scratch();
  try {
    const data = await makeListDataset(dir, 24, 4);
    const rec = join(dir, 'train.rec');
    await convertDataset({ from: 'list', to: 'rec', input: data.list, output: rec });
    // Point key 5 four bytes into its record: the reader finds no magic there.
    const idx = join(dir, 'train.idx');
    const lines = readFileSync(idx, 'utf8').trim().split('\n').map((l) => l.split('\t').map(Number));
    const entry = lines.find(([key]) => key === 5)!;
    entry[1] = entry[1]! + 4;
    writeFileSync(idx, `${lines.map((l) => l.join('\t')).join('\n')}\n`);
    const config = tinyConfig(dir, { type: 'rec', path: rec }, { maxBadSampleFraction: 0.1, trainSteps: 3 });
    const { result, stderr } = await capturingStderr(() => train(config));
    assert.equal(result.badSamples.skipped, 1);
    assert.match(stderr, new RegExp(`bad sample skipped: record 5 of .*train\\.rec: record 5: at byte offset ${entry[1]}: bad magic`));
    assert.match(stderr, /epoch 0: 1 of 24 samples read were bad and skipped/);
  } finally {
    cleanup();
  }
});

test('base64 shard lines that do not decode, or decode to no image, are reported with part file and line', async () => {
  const { dir, cleanup } = scratch();
  try {
    const lines: string[] = [];
    for (let i = 0; i < 16; i++) lines.push(`${(await tinyPng(i % 4, i)).toString('base64')}\t${i % 4}`);
    lines[2] = `@@not*base64@@\t2`;
    lines[11] = `${Buffer.from('plain text, not an image').toString('base64')}\t3`;
    writeFileSync(join(dir, 'part-00000'), `${lines.join('\n')}\n`);
    writeFileSync(join(dir, 'file_list.txt'), 'part-00000\n');
    const config = tinyConfig(dir, { type: 'base64', path: join(dir, 'file_list.txt') }, { maxBadSampleFraction: 0.125, trainSteps: 2 });
    const { result, stderr } = await capturingStderr(() => train(config));
    assert.equal(result.badSamples.skipped, 2);
    assert.match(stderr, /bad sample skipped: file .*part-00000 line 3: image field is not valid base64/);
    assert.match(stderr, /bad sample skipped: file .*part-00000 line 12: .*unsupported image format/);
  } finally {
    cleanup();
  }
});

test('image folders: a broken link named like an image is a reported bad sample, not silently dropped', async () => {
  const { dir, cleanup } = scratch();
  try {
    // The folder of classes sits beside the run's output directories (which are created before the data is read).
    const root = join(dir, 'classes');
    for (let c = 0; c < 4; c++) {
      mkdirSync(join(root, `class${c}`), { recursive: true });
      for (let i = 0; i < 4; i++) writeFileSync(join(root, `class${c}`, `${i}.png`), await tinyPng(c, i));
    }
    symlinkSync(join(root, 'nowhere.png'), join(root, 'class2', 'linked.png'));
    const config = tinyConfig(dir, { type: 'folder', path: root }, { maxBadSampleFraction: 0.1, trainSteps: 2 });
    const { result, stderr } = await capturingStderr(() => train(config));
    assert.equal(result.badSamples.skipped, 1);
    assert.match(stderr, /bad sample skipped: file .*class2\/linked\.png: cannot read: ENOENT/);
  } finally {
    cleanup();
  }
});

test('malformed label lines (3 columns, negative or non-integer labels) are errors at start naming file and line', async () => {
  const { dir, cleanup } = scratch();
  try {
    const data = await makeListDataset(dir, 16, 4);
    const original = readFileSync(data.list, 'utf8').split('\n');
    const cases: Array<[string, RegExp]> = [
      ['images/6.png 2 1', /label\.txt line 7: expected 2 fields "<image path> <label>", got 3: "images\/6\.png 2 1" \(a path with spaces needs a tab before the label\)/],
      ['images/6.png\t2\t1', /label\.txt line 7: expected 2 tab-separated fields/],
      ['images/6.png -2', /label\.txt line 7: label "-2" is not a non-negative integer/],
      ['images/6.png two', /label\.txt line 7: label "two" is not a non-negative integer/],
    ];
    for (const [line, message] of cases) {
      writeFileSync(data.list, original.map((l, i) => (i === 6 ? line : l)).join('\n'));
      await assert.rejects(Trainer.create(tinyConfig(dir, { type: 'list', path: data.list })), (error: unknown) => {
        assert.ok(error instanceof DataFormatError, String(error));
        assert.equal(error.line, 7);
        assert.match(error.message, message);
        return true;
      });
    }
  } finally {
    cleanup();
  }
});
