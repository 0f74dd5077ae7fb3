import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { dataCommand, type DataCommandIO } from '../../src/data/cli.js';
import { ListFileSource } from '../../src/data/list-file.js';
import { RecordIOSource } from '../../src/data/recordio.js';
import { drawVerificationPairs } from '../../src/data/verification-pairs.js';
import { readVerificationBin } from '../../src/data/bin-file.js';
import { makeTempDir, solidImage } from './helpers.js';

function captureIO(): DataCommandIO & { out: () => string; err: () => string } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return {
    stdout: { write: (chunk: string) => stdout.push(chunk) },
    stderr: { write: (chunk: string) => stderr.push(chunk), isTTY: false },
    out: () => stdout.join(''),
    err: () => stderr.join(''),
  };
}

const CLASS_COLORS: Array<[number, number, number]> = [
  [220, 40, 40],
  [40, 200, 60],
  [40, 60, 220],
  [230, 220, 40],
];

/** A list of solid-colour images, one colour per class; returns the list path and the labels. */
async function makeColourList(dir: string, labels: number[], size = 12): Promise<string> {
  await mkdir(join(dir, 'images'), { recursive: true });
  const lines: string[] = [];
  for (let i = 0; i < labels.length; i++) {
    const name = `images/${i}.${i % 2 ? 'png' : 'jpg'}`;
    await writeFile(join(dir, name), await solidImage(CLASS_COLORS[labels[i]!]!, size + i, i % 2 ? 'png' : 'jpeg'));
    lines.push(`${name} ${labels[i]}`);
  }
  const listPath = join(dir, 'label.txt');
  await writeFile(listPath, lines.join('\n') + '\n');
  return listPath;
}

test('plsc data convert: list -> rec -> list through the command function', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const listPath = await makeColourList(join(dir, 'src'), [1, 0, 2, 1, 0]);
    const io = captureIO();
    const recPath = join(dir, 'out', 'train.rec');
    assert.equal(await dataCommand(['convert', '--from', 'list', '--to', 'rec', listPath, recPath], io), 0, io.err());
    assert.match(io.out(), /^wrote 5 samples \(3 classes\): .*train\.rec, .*train\.idx\n$/);
    assert.match(io.err(), /converting 5\/5 \(100%\)\n$/);
    const rec = await RecordIOSource.open(recPath);
    assert.equal(rec.length, 5);
    assert.deepEqual(Array.from({ length: 5 }, (_, i) => rec.label(i)), [0, 0, 1, 1, 2]);
    await rec.close();

    const plain = captureIO();
    const plainRec = join(dir, 'plain', 'train.rec');
    assert.equal(await dataCommand(['convert', '--from', 'list', '--to', 'rec', '--plain-keys', listPath, plainRec], plain), 0, plain.err());
    const plainSource = await RecordIOSource.open(plainRec);
    assert.deepEqual(Array.from({ length: 5 }, (_, i) => plainSource.label(i)), [1, 0, 2, 1, 0], 'plain keys keep the input order');
    await plainSource.close();

    const back = captureIO();
    assert.equal(await dataCommand(['convert', '--from=rec', '--to=list', recPath, join(dir, 'extracted')], back), 0, back.err());
    const list = await ListFileSource.open(join(dir, 'extracted', 'label.txt'));
    assert.equal(list.length, 5);
    assert.equal(list.numClasses, 3);
  } finally {
    await cleanup();
  }
});

test('plsc data convert: a missing image fails naming it; --skip-bad leaves it out and reports it', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const listPath = await makeColourList(dir, [0, 1, 0, 1]);
    await rm(join(dir, 'images', '2.jpg'));
    const failing = captureIO();
    assert.equal(await dataCommand(['convert', '--from', 'list', '--to', 'rec', listPath, join(dir, 'a.rec')], failing), 1);
    assert.match(failing.err(), /plsc data convert: .*line 3.*image file missing: .*2\.jpg/);

    const skipping = captureIO();
    assert.equal(await dataCommand(['convert', '--from', 'list', '--to', 'rec', '--skip-bad', listPath, join(dir, 'b.rec')], skipping), 0, skipping.err());
    assert.match(skipping.out(), /^wrote 3 samples/);
    assert.match(skipping.err(), /skipped 1 unreadable sample:\n {2}sample 2 \(.*line 3.*\): image file missing/);
    const rec = await RecordIOSource.open(join(dir, 'b.rec'));
    assert.equal(rec.length, 3);
    await rec.close();
  } finally {
    await cleanup();
  }
});

test('plsc data: usage errors exit 2 with a message; --help exits 0', async () => {
  const cases: Array<[string[], RegExp]> = [
    [[], /usage: plsc data <subcommand>/],
    [['frobnicate'], /unknown subcommand 'frobnicate'/],
    [['convert', '--to', 'rec', 'a', 'b'], /--from is required \(list, folder, rec, base64\)/],
    [['convert', '--from', 'csv', '--to', 'rec', 'a', 'b'], /--from must be one of list, folder, rec, base64, got 'csv'/],
    [['convert', '--from', 'list', '--to', 'folder', 'a', 'b'], /--to must be one of list, rec/],
    [['convert', '--from', 'list', '--to', 'rec', 'a'], /expected IN and OUT, got 1 path/],
    [['convert', '--from', 'list', '--to', 'rec', '--bogus', 'a', 'b'], /Unknown option '--bogus'/],
    [['convert', '--from', 'list', '--to', 'rec', '--num-classes', 'x', 'a', 'b'], /--num-classes must be an integer >= 1, got 'x'/],
    [['make-bin', '--pairs', '4', '--out', 'x.bin'], /give exactly one of --list and --synthetic/],
    [['make-bin', '--synthetic', '3', '--out', 'x.bin'], /--pairs is required/],
    [['make-bin', '--synthetic', '3', '--pairs', '4', '--out', 'x.bin', '--protocol', '7'], /--protocol must be 2, 3, 4 or 5/],
    [['make-bin', '--synthetic', '1', '--pairs', '4', '--out', 'x.bin'], /--synthetic must be an integer >= 2/],
  ];
  for (const [argv, expected] of cases) {
    const io = captureIO();
    assert.equal(await dataCommand(argv, io), 2, argv.join(' '));
    assert.match(io.err(), expected, argv.join(' '));
  }
  for (const argv of [['--help'], ['convert', '--help'], ['make-bin', '-h']]) {
    const io = captureIO();
    assert.equal(await dataCommand(argv, io), 0);
    assert.match(io.out(), /^usage: plsc data/);
  }
});

test('plsc data make-bin --synthetic: alternating labels, readable back, deterministic in the seed', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const binPath = join(dir, 'bins', 'synth.bin');
    const args = ['make-bin', '--synthetic', '6', '--images-per-class', '4', '--pairs', '9', '--size', '32', '--out', binPath];
    const io = captureIO();
    assert.equal(await dataCommand(args, io), 0, io.err());
    assert.match(io.out(), /: 9 pairs \(5 same, 4 different\), \d+ distinct 32x32 jpeg images from 6 synthetic identities x 4 images\n$/);
    const bin = await readVerificationBin(binPath);
    assert.equal(bin.images.length, 18);
    assert.deepEqual(bin.issame, [true, false, true, false, true, false, true, false, true]);
    for (const image of bin.images) {
      const meta = await sharp(image).metadata();
      assert.equal(meta.format, 'jpeg');
      assert.equal(meta.width, 32);
      assert.equal(meta.height, 32);
    }
    const first = await readFile(binPath);
    assert.equal(await dataCommand(args, captureIO()), 0);
    assert.ok(first.equals(await readFile(binPath)), 'same arguments, same bytes');
    assert.equal(await dataCommand([...args, '--seed', '1', '--protocol', '2', '--format', 'png'], captureIO()), 0);
    const other = await readVerificationBin(binPath);
    assert.equal((await sharp(other.images[0]!).metadata()).format, 'png');
    assert.deepEqual(other.issame, bin.issame);
  } finally {
    await cleanup();
  }
});

test('plsc data make-bin --list: pair labels match the identities in the images', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const labels = [0, 0, 0, 1, 1, 2, 2, 2, 3];
    const listPath = await makeColourList(dir, labels);
    const binPath = join(dir, 'list.bin');
    const io = captureIO();
    assert.equal(await dataCommand(['make-bin', '--list', listPath, '--pairs', '12', '--size', '16', '--seed', '7', '--out', binPath], io), 0, io.err());
    assert.match(io.out(), /12 pairs \(6 same, 6 different\).* from 9 images of 4 identities/);
    const bin = await readVerificationBin(binPath);
    assert.equal(bin.images.length, 24);
    // Each class has its own colour: the pair label must agree with whether the colours match.
    const colourOf = async (image: Buffer): Promise<number> => {
      const { data, info } = await sharp(image).raw().toBuffer({ resolveWithObject: true });
      assert.equal(info.width, 16);
      const mean = [0, 1, 2].map((c) => {
        let sum = 0;
        for (let p = c; p < data.length; p += info.channels) sum += data[p]!;
        return sum / (data.length / info.channels);
      });
      const distances = CLASS_COLORS.map((rgb) => Math.hypot(rgb[0] - mean[0]!, rgb[1] - mean[1]!, rgb[2] - mean[2]!));
      const best = distances.indexOf(Math.min(...distances));
      assert.ok(distances[best]! < 12, `image colour ${mean.map((v) => v.toFixed(0))} is near no class colour`);
      return best;
    };
    for (let i = 0; i < bin.issame.length; i++) {
      const a = await colourOf(bin.images[2 * i]!);
      const b = await colourOf(bin.images[2 * i + 1]!);
      assert.equal(a === b, bin.issame[i], `pair ${i}: classes ${a} and ${b}, issame ${bin.issame[i]}`);
    }
  } finally {
    await cleanup();
  }
});

test('drawVerificationPairs: distinct pairs, correct labels, clear errors when the data cannot supply them', () => {
  const labels = [0, 0, 1, 1, 1, 2, 3, 3];
  const samples = { length: labels.length, numClasses: 4, label: (i: number) => labels[i]! };
  const pairs = drawVerificationPairs(samples, 10, 3);
  assert.equal(pairs.length, 10);
  const keys = new Set<string>();
  pairs.forEach((p, i) => {
    assert.equal(p.same, i % 2 === 0);
    assert.notEqual(p.first, p.second);
    assert.equal(labels[p.first] === labels[p.second], p.same, `pair ${i}`);
    keys.add([p.first, p.second].sort().join(','));
  });
  assert.equal(keys.size, 10, 'no pair repeats while distinct ones remain');
  assert.deepEqual(drawVerificationPairs(samples, 10, 3), pairs, 'deterministic');
  assert.notDeepEqual(drawVerificationPairs(samples, 10, 4), pairs, 'depends on the seed');

  // 1 + 3 + 0 + 1 = 5 distinct same-identity pairs.
  assert.throws(() => drawVerificationPairs(samples, 12, 0), /only 5 distinct same-identity pairs exist, 12 pairs need 6/);
  const singletons = { length: 3, numClasses: 3, label: (i: number) => i };
  assert.throws(() => drawVerificationPairs(singletons, 2), /no identity has two or more samples/);
  const oneClass = { length: 3, numClasses: 1, label: () => 0 };
  assert.deepEqual(drawVerificationPairs(oneClass, 1).map((p) => p.same), [true], 'one same pair needs no second identity');
  assert.throws(() => drawVerificationPairs(oneClass, 2), /fewer than two identities/);
  assert.throws(() => drawVerificationPairs(samples, 0), /positive integer/);
});
