// `plsc eval --classify`: exact agreement with a brute-force cosine ranking over every dataset
// format and over checkpoints whose FC is split in 1, 2 and 3 shards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { evalCommand } from '../../src/eval/cli.js';
import { ClassificationTally, centerRanker, classifyDataset, mostConfusedPairs, type ClassificationResult } from '../../src/eval/classify.js';
import { formatClassification } from '../../src/eval/classify-report.js';
import { SyntheticFaces } from '../../src/data/synthetic.js';
import { decodeToRgb, encodeRgb } from '../../src/data/image.js';
import { convertDataset } from '../../src/data/convert.js';
import { ListFileSource } from '../../src/data/list-file.js';
import { saveCheckpoint, reshardCheckpoint } from '../../src/train/checkpoint.js';
import { checkpointName, readMeta } from '../../src/checkpoint/format.js';
import { DEFAULT_CONFIG } from '../../src/config/train-config.js';
import { backboneEmbedFunction } from '../../src/eval/backbone-verification.js';
import { checkpointCenterRows } from '../../src/checkpoint/centers.js';
import { manualSeed } from '../../src/torch/native.js';
import { tidy } from '../../src/torch/scope.js';
import * as F from '../../src/torch/ops.js';
import { TinyPoolEmbedder } from './fixtures/tiny-backbone.js';

const SIZE = 24;
const EMB = 16;
const LABELLED_CLASSES = 8;
/** The model knows two classes no image has, so the shards split unevenly and "classes" differs from "classes with images". */
const MODEL_CLASSES = 10;
const PER_CLASS = 3;
const FACTORY = `${fileURLToPath(new URL('./fixtures/tiny-backbone.js', import.meta.url))}#tinyPoolBackbone`;

let dir = '';
let model: TinyPoolEmbedder;
let centres: Float32Array;
const png: Buffer[] = [];
const labels: number[] = [];
let expected: ClassificationResult;

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await evalCommand(argv, { stdout: { write: (c: string) => ((out += c), true) }, stderr: { write: (c: string) => ((err += c), true) } });
  return { code, out, err };
}

/** The image as the model sees it: decoded, HWC -> CHW, (x - 127.5) / 128; embedded alone, unflipped. */
async function embedOne(bytes: Buffer): Promise<Float32Array> {
  const hwc = await decodeToRgb(bytes, SIZE, SIZE);
  const chw = new Float32Array(3 * SIZE * SIZE);
  for (let p = 0; p < SIZE * SIZE; p++) for (let c = 0; c < 3; c++) chw[c * SIZE * SIZE + p] = (hwc[p * 3 + c]! - 127.5) / 128;
  return Float32Array.from(await backboneEmbedFunction(model)(chw, 1));
}

/** Every class ranked by cosine in float64, one centre at a time; ties to the lower class. */
function bruteForceRanking(query: Float32Array): number[] {
  const norm = (v: ArrayLike<number>): number => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0));
  const scores = Array.from({ length: MODEL_CLASSES }, (_, c) => {
    const row = centres.subarray(c * EMB, (c + 1) * EMB);
    let dot = 0;
    for (let d = 0; d < EMB; d++) dot += query[d]! * row[d]!;
    return { c, score: dot / (norm(query) * norm(row)) };
  });
  return scores.sort((a, b) => b.score - a.score || a.c - b.c).map((s) => s.c);
}

function writeCheckpoint(root: string): string {
  const config = { ...DEFAULT_CONFIG, model: FACTORY, embSize: EMB, imageSize: SIZE, classNum: MODEL_CLASSES };
  return tidy(() =>
    saveCheckpoint(root, {
      rank: 0,
      shardCount: 1,
      meta: {
        numClasses: MODEL_CLASSES,
        embeddingSize: EMB,
        step: 7,
        epoch: 0,
        dataOrder: { epoch: 0, position: 7 },
        samplerStep: 7,
        seed: 0,
        backbone: FACTORY,
        lossType: 'arcface',
        shardTensors: ['weight'],
        config: config as unknown as Record<string, unknown>,
      },
      backbone: model.stateDict(),
      shard: { index: 0, tensors: { weight: F.fromTypedArray(centres, [MODEL_CLASSES, EMB]) } },
      barrier: () => undefined,
      keepLast: 5,
    }),
  );
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'plsc-classify-'));
  const faces = new SyntheticFaces({ numClasses: LABELLED_CLASSES, imagesPerClass: PER_CLASS, size: SIZE, seed: 11 });
  for (let i = 0; i < faces.length; i++) {
    png.push(await encodeRgb(faces.render(i), SIZE, SIZE, 'chw', 'png'));
    labels.push(faces.label(i));
  }
  manualSeed(4);
  model = new TinyPoolEmbedder(EMB, SIZE);
  model.eval();
  const embeddings = await Promise.all(png.map((bytes) => embedOne(bytes)));
  // Centre of class c: its first image's embedding at an arbitrary scale plus noise (so the search
  // must normalize and some images land in the wrong class); the two extra classes are random.
  centres = new Float32Array(MODEL_CLASSES * EMB);
  const noise = tidy(() => F.randn([MODEL_CLASSES * EMB]).dataSync() as Float32Array);
  for (let c = 0; c < MODEL_CLASSES; c++) {
    for (let d = 0; d < EMB; d++) {
      const base = c < LABELLED_CLASSES ? embeddings[c * PER_CLASS]![d]! * (c + 1) : 0;
      centres[c * EMB + d] = base + 0.6 * (c + 1) * noise[c * EMB + d]!;
    }
  }
  const tally = new ClassificationTally(MODEL_CLASSES);
  embeddings.forEach((embedding, i) => tally.add(labels[i]!, bruteForceRanking(embedding).slice(0, 5)));
  expected = tally.result();

  // The same PNG bytes in every format.
  mkdirSync(join(dir, 'list', 'images'), { recursive: true });
  writeFileSync(join(dir, 'list', 'label.txt'), png.map((_, i) => `images/${i}.png\t${labels[i]}`).join('\n') + '\n');
  png.forEach((bytes, i) => writeFileSync(join(dir, 'list', 'images', `${i}.png`), bytes));
  for (let i = 0; i < png.length; i++) {
    mkdirSync(join(dir, 'folder', `class${labels[i]}`), { recursive: true });
    writeFileSync(join(dir, 'folder', `class${labels[i]}`, `${i}.png`), png[i]!);
  }
  mkdirSync(join(dir, 'base64'));
  writeFileSync(join(dir, 'base64', 'part-0.txt'), png.map((bytes, i) => `${bytes.toString('base64')}\t${labels[i]}`).join('\n') + '\n');
  writeFileSync(join(dir, 'base64', 'file_list.txt'), 'part-0.txt\n');
  await convertDataset({ from: 'list', to: 'rec', input: join(dir, 'list', 'label.txt'), output: join(dir, 'train.rec') });

  const one = writeCheckpoint(join(dir, 'ckpt-w1'));
  reshardCheckpoint(one, 2, join(dir, 'ckpt-w2'));
  reshardCheckpoint(one, 3, join(dir, 'ckpt-w3'));
});

after(() => {
  model?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the reference itself is a useful check: some images are right, some confused, the model knows classes without images', () => {
  assert.ok(expected.top1 > 0 && expected.top1 < 1, `top-1 ${expected.top1}`);
  assert.ok(expected.top5 >= expected.top1);
  assert.equal(expected.classesWithImages, LABELLED_CLASSES);
  assert.equal(expected.classes, MODEL_CLASSES);
});

test('classifyDataset equals the brute-force ranking for checkpoints in 1, 2 and 3 shards, in one pass or many', async () => {
  const source = await ListFileSource.open(join(dir, 'list', 'label.txt'));
  for (const name of ['ckpt-w1/' + checkpointName(7), 'ckpt-w2', 'ckpt-w3']) {
    const ckpt = join(dir, name);
    const meta = readMeta(ckpt);
    for (const queriesPerPass of [1000, 5]) {
      const ranker = centerRanker(() => checkpointCenterRows(ckpt, meta, { chunkRows: 2 }), { dim: EMB, classes: meta.numClasses });
      const result = await classifyDataset(source, backboneEmbedFunction(model), ranker, {
        classes: meta.numClasses,
        dim: EMB,
        imageSize: [SIZE, SIZE],
        queriesPerPass,
        batchSize: 4,
      });
      assert.deepEqual(result, expected, `${name} (worldSize ${meta.worldSize}), ${queriesPerPass} queries per pass`);
    }
  }
});

test('plsc eval --classify --json: the same numbers for every dataset format and shard count', async () => {
  const datasets: [string, string[]][] = [
    ['list', [join(dir, 'list', 'label.txt')]],
    ['list dir', [join(dir, 'list')]],
    ['rec', [join(dir, 'train.rec')]],
    ['folder', [join(dir, 'folder'), '--format', 'folder']],
    ['base64', [join(dir, 'base64', 'file_list.txt'), '--format', 'base64']],
  ];
  const expectedJson = {
    images: expected.images,
    classes: MODEL_CLASSES,
    top1: expected.top1,
    top5: expected.top5,
    confusion: expected.confusion.map((c) => ({ label: c.truth, predicted: c.predicted, count: c.count })),
  };
  for (const [name, data] of datasets) {
    for (const ckpt of ['ckpt-w1', 'ckpt-w2', 'ckpt-w3']) {
      const { code, out } = await run(['--checkpoint', join(dir, ckpt), '--classify', '--data', ...data, '--json']);
      assert.equal(code, 0, out);
      const record = JSON.parse(out) as Record<string, unknown>;
      assert.equal(record.target, 'classification');
      // Folder labels come from sorted folder names (class0..class7), the same ids here.
      assert.deepEqual({ images: record.images, classes: record.classes, top1: record.top1, top5: record.top5, confusion: record.confusion }, expectedJson, `${name} with ${ckpt}`);
      assert.equal((record.per_class as unknown[]).length, LABELLED_CLASSES);
    }
  }
});

test('the terminal table: accuracy, per-class accuracy and the whole confusion matrix for a few classes', async () => {
  const { code, out } = await run(['--checkpoint', join(dir, 'ckpt-w2'), '--classify', '--data', join(dir, 'list')]);
  assert.equal(code, 0, out);
  assert.match(out, /^model: checkpoint .*ckpt-w2 \(step 7\)/);
  assert.match(out, new RegExp(`${PER_CLASS * LABELLED_CLASSES} images of ${LABELLED_CLASSES} classes \\(the model has ${MODEL_CLASSES}\\)`));
  assert.match(out, new RegExp(`top-1 ${(expected.top1 * 100).toFixed(2)}%   top-5 ${(expected.top5 * 100).toFixed(2)}%`));
  assert.match(out, /confusion matrix \(rows: label, columns: predicted class\):/);
  const matrixRows = out.split('confusion matrix')[1]!.trim().split('\n').slice(2);
  assert.equal(matrixRows.length, LABELLED_CLASSES);
  const rowSums = matrixRows.map((line) => line.trim().split(/\s+/).slice(1).map(Number).reduce((a, b) => a + b, 0));
  assert.deepEqual(rowSums, new Array(LABELLED_CLASSES).fill(PER_CLASS));
});

test('many classes: the terminal lists the most confused pairs and the lowest per-class accuracies', () => {
  const tally = new ClassificationTally(40);
  for (let c = 0; c < 30; c++) {
    tally.add(c, [c]);
    tally.add(c, [c === 3 ? 4 : c]);
  }
  tally.add(7, [9, 7]);
  tally.add(3, [4, 3]);
  const result = tally.result();
  assert.deepEqual(mostConfusedPairs(result, 2), [
    { truth: 3, predicted: 4, count: 2 },
    { truth: 7, predicted: 9, count: 1 },
  ]);
  const text = formatClassification(result, 'data');
  assert.match(text, /most confused pairs \(2 of 2; --json has the whole matrix\)/);
  assert.match(text, /\n +3 +4 +2 +66\.67%\n/);
  assert.match(text, /per-class accuracy \(the 10 lowest of 30\)/);
  assert.doesNotMatch(text, /confusion matrix/);
});

test('errors name the problem: a label the model lacks, no centres without a checkpoint, a bad --format', async () => {
  mkdirSync(join(dir, 'bad'), { recursive: true });
  writeFileSync(join(dir, 'bad', 'label.txt'), `${join(dir, 'list', 'images', '0.png')} 3\n${join(dir, 'list', 'images', '1.png')} 12\n`);
  const wrongLabel = await run(['--checkpoint', join(dir, 'ckpt-w1'), '--classify', '--data', join(dir, 'bad', 'label.txt')]);
  assert.equal(wrongLabel.code, 1);
  assert.match(wrongLabel.err, /label\.txt line 2 .*has label 12, but the model has 10 classes \(0\.\.9\)/);
  const noCheckpoint = await run(['--model', join(dir, 'x.safetensors'), '--classify', '--data', join(dir, 'list')]);
  assert.equal(noCheckpoint.code, 2);
  assert.match(noCheckpoint.err, /--classify needs --checkpoint DIR/);
  const badFormat = await run(['--checkpoint', join(dir, 'ckpt-w1'), '--classify', '--data', join(dir, 'list'), '--format', 'csv']);
  assert.equal(badFormat.code, 2);
  assert.match(badFormat.err, /--format must be one of list, rec, folder, base64, got "csv"/);
});
