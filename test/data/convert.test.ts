import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Base64ShardSource } from '../../src/data/base64-shards.js';
import { convertDataset, writeRecordIODataset } from '../../src/data/convert.js';
import { ListFileSource } from '../../src/data/list-file.js';
import { DataLoader } from '../../src/data/loader.js';
import { RecordIOSource } from '../../src/data/recordio.js';
import type { SampleSource } from '../../src/data/source.js';
import { SyntheticFaces } from '../../src/data/synthetic.js';
import { collect, makeTempDir, solidImage } from './helpers.js';

/** (label, image bytes) pairs of a source, sorted, for order-independent comparison. */
async function contents(source: SampleSource): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < source.length; i++) {
    const payload = await source.read(i);
    assert.equal(payload.kind, 'encoded');
    if (payload.kind === 'encoded') out.push(`${source.label(i)}:${Buffer.from(payload.bytes).toString('hex')}`);
  }
  return out.sort();
}

async function makeList(dir: string): Promise<string> {
  await mkdir(join(dir, 'train_data', 'images'), { recursive: true });
  const labels = [2, 0, 1, 0, 2, 2, 1];
  const lines: string[] = [];
  for (let i = 0; i < labels.length; i++) {
    const name = `images/${String(i).padStart(8, '0')}.${i % 2 ? 'png' : 'jpg'}`;
    await writeFile(join(dir, 'train_data', name), await solidImage([i * 30, 255 - i * 30, labels[i]! * 80], 10 + i, i % 2 ? 'png' : 'jpeg'));
    lines.push(`${name} ${labels[i]}`);
  }
  const listPath = join(dir, 'train_data', 'label.txt');
  await writeFile(listPath, lines.join('\n') + '\n');
  return listPath;
}

test('convert: list -> rec -> list round trip keeps every (image bytes, label) pair', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const listPath = await makeList(dir);
    const progress: Array<[number, number]> = [];
    const toRec = await convertDataset({
      from: 'list',
      to: 'rec',
      input: listPath,
      output: join(dir, 'out', 'train.rec'),
      onProgress: (p) => progress.push([p.done, p.total]),
    });
    assert.equal(toRec.written, 7);
    assert.equal(toRec.numClasses, 3);
    assert.deepEqual(toRec.skipped, []);
    assert.deepEqual(progress.at(-1), [7, 7]);
    assert.ok(toRec.outputs[1]!.endsWith('train.idx'));

    const rec = await RecordIOSource.open(join(dir, 'out', 'train.rec'));
    assert.deepEqual(rec.headerRange, [8, 11]); // insightface layout: images 1..7, identities 8..10
    assert.equal(rec.labelOrigin, 'identity-records');
    assert.deepEqual(Array.from({ length: 7 }, (_, i) => rec.label(i)), [0, 0, 1, 1, 2, 2, 2]); // grouped by class
    await rec.close();

    const back = await convertDataset({ from: 'rec', to: 'list', input: join(dir, 'out', 'train.rec'), output: join(dir, 'extracted') });
    assert.equal(back.outputs[0], join(dir, 'extracted', 'label.txt'));
    const original = await ListFileSource.open(listPath);
    const roundTrip = await ListFileSource.open(join(dir, 'extracted', 'label.txt'));
    assert.deepEqual(await contents(roundTrip), await contents(original));
    const text = await readFile(join(dir, 'extracted', 'label.txt'), 'utf8');
    assert.match(text.split('\n')[0]!, /^images\/00000000\.png\t0$/);
    assert.match(text, /images\/\d{8}\.png\t/);
  } finally {
    await cleanup();
  }
});

test('convert: folder -> list references files in place; folder -> rec and base64 -> rec', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    for (const [cls, n] of [['alice', 2], ['bob', 3]] as const) {
      await mkdir(join(dir, 'faces', cls), { recursive: true });
      for (let i = 0; i < n; i++) await writeFile(join(dir, 'faces', cls, `${i}.png`), await solidImage([i * 50, cls.length * 20, 9], 8, 'png'));
    }
    const list = await convertDataset({ from: 'folder', to: 'list', input: join(dir, 'faces'), output: join(dir, 'lists', 'faces.txt') });
    assert.equal(list.written, 5);
    const text = await readFile(join(dir, 'lists', 'faces.txt'), 'utf8');
    assert.equal(text.split('\n')[0], '../faces/alice/0.png\t0');
    const fromList = await ListFileSource.open(join(dir, 'lists', 'faces.txt'));
    assert.equal(fromList.numClasses, 2);

    const rec = await convertDataset({ from: 'folder', to: 'rec', input: join(dir, 'faces'), output: join(dir, 'faces.rec') });
    assert.equal(rec.written, 5);
    const recSource = await RecordIOSource.open(join(dir, 'faces.rec'));
    assert.deepEqual(await contents(recSource), await contents(fromList));
    await recSource.close();

    await writeFile(join(dir, 'part-0'), `${(await solidImage([1, 2, 3], 8, 'png')).toString('base64')}\t1\n${(await solidImage([4, 5, 6], 8, 'jpeg')).toString('base64')}\t0\n`);
    await writeFile(join(dir, 'files.txt'), 'part-0\n');
    await convertDataset({ from: 'base64', to: 'rec', input: join(dir, 'files.txt'), output: join(dir, 'b64.rec'), insightfaceHeader: false });
    const b64Rec = await RecordIOSource.open(join(dir, 'b64.rec'));
    assert.equal(b64Rec.headerRange, undefined);
    assert.deepEqual([b64Rec.key(0), b64Rec.key(1)], [0, 1]);
    const b64 = await Base64ShardSource.open(join(dir, 'files.txt'));
    assert.deepEqual(await contents(b64Rec), await contents(b64));
    await b64Rec.close();
    await b64.close();

    await assert.rejects(convertDataset({ from: 'rec', to: 'rec', input: 'x', output: 'y' }), /nothing to convert/);
  } finally {
    await cleanup();
  }
});

test('convert: unreadable samples stop the conversion, or are skipped and reported', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const listPath = await makeList(dir);
    await writeFile(listPath, (await readFile(listPath, 'utf8')) + 'images/missing.jpg 1\nimages/00000000.jpg 0\n');
    await assert.rejects(
      convertDataset({ from: 'list', to: 'rec', input: listPath, output: join(dir, 'a.rec') }),
      /label\.txt line 8 \(.*missing\.jpg\)\): image file missing/,
    );
    await assert.rejects(readFile(join(dir, 'a.rec')), /ENOENT/); // no partial output left behind
    await writeFile(join(dir, 'train_data', 'images', 'broken.jpg'), 'not a jpeg');
    await writeFile(listPath, (await readFile(listPath, 'utf8')) + 'images/broken.jpg 2\n');
    const result = await convertDataset({ from: 'list', to: 'rec', input: listPath, output: join(dir, 'b.rec'), onBadSample: 'skip', verify: true });
    assert.equal(result.written, 8);
    assert.deepEqual(result.skipped.map((s) => s.where.match(/line (\d+)/)![1]), ['8', '10']);
    const rec = await RecordIOSource.open(join(dir, 'b.rec'));
    assert.equal(rec.length, 8);
    assert.equal(rec.labelOrigin, 'identity-records');
    await rec.close();
  } finally {
    await cleanup();
  }
});

test('writeRecordIODataset: synthetic raw images are encoded and train through the loader', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const faces = new SyntheticFaces({ numClasses: 3, imagesPerClass: 4, size: 32, seed: 9 });
    const result = await writeRecordIODataset(faces, join(dir, 'synthetic.rec'), { rawEncoding: 'png' });
    assert.equal(result.written, 12);
    const rec = await RecordIOSource.open(join(dir, 'synthetic.rec'));
    assert.equal(rec.numClasses, 3);
    const batches = await collect(new DataLoader(rec, { batchSize: 12, imageSize: 32, shuffle: false }));
    // PNG is lossless, so decoding the records returns exactly the generated pixels (grouped by class = source order here).
    for (let i = 0; i < 12; i++) {
      assert.deepEqual(batches[0]!.images.subarray(i * 3 * 32 * 32, (i + 1) * 3 * 32 * 32), faces.render(i));
      assert.equal(batches[0]!.labels[i], faces.label(i));
    }
    await rec.close();
  } finally {
    await cleanup();
  }
});
