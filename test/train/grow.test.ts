// plsc grow: imprinted classes are recognized before any training, old classes keep their accuracy,
// training resumes at the grown class count, and bad input is named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Trainer,
  CenterSearchEngine,
  SyntheticFaces,
  backboneEmbedFunction,
  backboneImageSize,
  embedLoadedImages,
  growCheckpoint,
  listCheckpoints,
  loadCheckpointBackbone,
  loadClassCenters,
  loadSafetensors,
  readClassRows,
  readMeta,
  reshardCheckpoint,
  resolveConfig,
  samplePayloadToRgb,
  writeCheckpointCenters,
  writeListDataset,
  tidy,
  ops as F,
  type SampleSource,
  type TrainConfig,
  type Tensor,
} from '../../src/index.js';
import { growCommand } from '../../src/train/grow-cli.js';
import { captured } from '../helpers/capture-console.js';

const tinyBackbone = `${fileURLToPath(new URL('./fixtures/tiny-backbone.js', import.meta.url))}#createTinyBackbone`;

const OLD_CLASSES = 24;
const NEW_CLASSES = 8;
const SEED = 5;
const IMAGE_SIZE = 16;
// Images per class of the evaluation source: the first IMPRINT_IMAGES of each new class are
// imprinted, the rest of every class are held out.
const IMAGES_PER_CLASS = 18;
const IMPRINT_IMAGES = 5;

function config(dir: string, overrides: Partial<TrainConfig> = {}): TrainConfig {
  return resolveConfig({
    classNum: OLD_CLASSES,
    dataset: { type: 'synthetic', numClasses: OLD_CLASSES, imagesPerClass: 8, seed: SEED },
    model: tinyBackbone,
    imageSize: IMAGE_SIZE,
    embSize: 32,
    trainBatchSize: 32,
    trainSteps: 60,
    lr: 1.0,
    scale: 16,
    withTest: false,
    logPeriod: 1000,
    checkpointDir: join(dir, 'checkpoints'),
    modelSaveDir: join(dir, 'output'),
    ...overrides,
  });
}

/** Some images of some classes of a synthetic source, labelled with their global class ids. */
function subset(all: SyntheticFaces, classes: number[], images: number[]): SampleSource & { indices: number[] } {
  const indices = classes.flatMap((c) => images.map((j) => c * all.imagesPerClass + j));
  return {
    indices,
    length: indices.length,
    numClasses: all.numClasses,
    label: (i) => all.label(indices[i] as number),
    read: (i) => all.read(indices[i] as number),
    describe: (i) => all.describe(indices[i] as number),
  };
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

/** Top-1 accuracy of the centre search `plsc serve` runs, over the checkpoint's own backbone embeddings. */
async function classify(checkpoint: string, images: SampleSource, scratch: string): Promise<number> {
  const meta = readMeta(checkpoint);
  const centersPath = join(scratch, `centers-${meta.numClasses}.safetensors`);
  writeCheckpointCenters(checkpoint, meta, centersPath);
  const engine = await CenterSearchEngine.create(await loadClassCenters(centersPath));
  const backbone = await loadCheckpointBackbone(checkpoint, meta);
  try {
    const [height, width] = backboneImageSize(backbone);
    const embedded = await embedLoadedImages(images.length, async (i) => samplePayloadToRgb(await images.read(i), width, height), backboneEmbedFunction(backbone), {
      height,
      width,
      flip: false,
    });
    const dim = embedded.original.dim;
    const queries = Array.from({ length: images.length }, (_, i) => embedded.original.data.subarray(i * dim, (i + 1) * dim));
    const matches = await engine.search(queries, 1);
    let right = 0;
    matches.forEach((best, i) => {
      if (best[0]?.index === images.label(i)) right++;
    });
    return right / images.length;
  } finally {
    backbone.dispose();
  }
}

test('grow by imprinting: new classes recognized before training, old classes unharmed, training resumes at the new class count', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-grow-'));
  try {
    const trainer = await Trainer.create(config(dir, { lossType: 'dist_arcface' }));
    await trainer.train({ quiet: true });
    trainer.dispose();
    // Split over 2 shards, as 2 workers would have saved it: the grown checkpoint keeps 2 shards, re-split.
    const trained = join(dir, 'two-shards');
    reshardCheckpoint((listCheckpoints(join(dir, 'checkpoints')).at(-1) as { path: string }).path, 2, trained);

    const all = new SyntheticFaces({ numClasses: OLD_CLASSES + NEW_CLASSES, imagesPerClass: IMAGES_PER_CLASS, size: IMAGE_SIZE, seed: SEED });
    const newClasses = range(OLD_CLASSES, OLD_CLASSES + NEW_CLASSES);
    await writeListDataset(subset(all, newClasses, range(0, IMPRINT_IMAGES)), join(dir, 'new-ids'), { rawEncoding: 'png' });

    const grown = join(dir, 'grown');
    const result = await growCheckpoint({ checkpoint: trained, add: NEW_CLASSES, images: join(dir, 'new-ids'), out: grown });
    assert.equal(result.numClasses, OLD_CLASSES + NEW_CLASSES);
    assert.equal(result.init, 'imprinted');
    assert.equal(result.images, NEW_CLASSES * IMPRINT_IMAGES);
    const before = readMeta(trained);
    const meta = readMeta(grown);
    assert.equal(meta.numClasses, OLD_CLASSES + NEW_CLASSES);
    assert.equal(meta.worldSize, 2);
    assert.deepEqual(result.shardRows, [16, 16]);
    assert.equal(meta.step, before.step);

    tidy(() => {
      // Old rows unchanged; new rows have zero momentum and the existing centres' mean norm.
      const oldRows = readClassRows(trained, before, 0, OLD_CLASSES);
      const grownRows = readClassRows(grown, meta, 0, OLD_CLASSES + NEW_CLASSES);
      assert.deepEqual(F.narrow(grownRows.weight as Tensor, 0, 0, OLD_CLASSES).toArray(), (oldRows.weight as Tensor).toArray());
      assert.deepEqual(F.narrow(grownRows.weight_momentum as Tensor, 0, 0, OLD_CLASSES).toArray(), (oldRows.weight_momentum as Tensor).toArray());
      assert.equal(F.sum(F.abs(F.narrow(grownRows.weight_momentum as Tensor, 0, OLD_CLASSES, NEW_CLASSES))).item(), 0);
      const newNorms = F.norm(F.narrow(grownRows.weight as Tensor, 0, OLD_CLASSES, NEW_CLASSES), 2, 1).toArray();
      for (const n of newNorms) assert.ok(Math.abs(n - result.meanCentreNorm) < 1e-3 * result.meanCentreNorm, `new centre norm ${n} vs ${result.meanCentreNorm}`);
    });

    const heldOutNew = subset(all, newClasses, range(IMPRINT_IMAGES, IMAGES_PER_CLASS));
    const heldOutOld = subset(all, range(0, OLD_CLASSES), range(8, IMAGES_PER_CLASS));
    const newAccuracy = await classify(grown, heldOutNew, dir);
    const oldBefore = await classify(trained, heldOutOld, dir);
    const oldAfter = await classify(grown, heldOutOld, dir);
    assert.ok(newAccuracy >= 0.9, `held-out images of the new classes: ${(100 * newAccuracy).toFixed(1)}% right (want >= 90%)`);
    assert.ok(oldAfter >= oldBefore - 0.01, `old classes: ${(100 * oldBefore).toFixed(1)}% before growing, ${(100 * oldAfter).toFixed(1)}% after`);

    // Training continues from the grown checkpoint at the new class count.
    const resumed = await Trainer.create(
      config(dir, {
        lossType: 'dist_arcface',
        classNum: OLD_CLASSES + NEW_CLASSES,
        dataset: { type: 'synthetic', numClasses: OLD_CLASSES + NEW_CLASSES, imagesPerClass: 8, seed: SEED },
        resume: grown,
        checkpointDir: join(dir, 'checkpoints-grown'),
        trainSteps: before.step + 3,
      }),
    );
    assert.equal(resumed.step, before.step);
    const run = await resumed.train({ quiet: true, noCheckpoints: true, maxStepsThisRun: 3 });
    resumed.dispose();
    assert.equal(run.losses.length, 3);
    for (const loss of run.losses) assert.ok(Number.isFinite(loss));

    // The class count must agree with the config.
    await assert.rejects(
      Trainer.create(config(dir, { resume: grown, checkpointDir: join(dir, 'checkpoints-grown') })),
      /resume: checkpoint .*grown has 32 classes x 32, the config 24 x 32/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('grow without images: random centres like a fresh head; a dense head\'s optimizer momentum grows with zero rows', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-grow-'));
  try {
    const trainer = await Trainer.create(config(dir, { lossType: 'arcface', trainSteps: 2 }));
    await trainer.train({ quiet: true });
    trainer.dispose();
    const trained = (listCheckpoints(join(dir, 'checkpoints')).at(-1) as { path: string }).path;
    const grown = join(dir, 'grown');
    const lines = await captured(() => growCommand(['--checkpoint', trained, '--add', '3', '--out', grown]));
    assert.equal(lines.result, 0, `${lines.stdout}\n${lines.stderr}`);
    assert.match(`${lines.stdout}\n${lines.stderr}`, /new classes 24\.\.26, centres random like a fresh head/);
    assert.match(`${lines.stdout}\n${lines.stderr}`, /--set classNum=27 --set resume=/);
    const meta = readMeta(grown);
    assert.equal(meta.numClasses, 27);
    tidy(() => {
      const rows = readClassRows(grown, meta, OLD_CLASSES, 3).weight as Tensor;
      const norms = F.norm(rows, 2, 1).toArray();
      // randn * 0.01 in 32 dimensions: norms near 0.01 * sqrt(32), and not all equal.
      for (const n of norms) assert.ok(n > 0.02 && n < 0.1, `random centre norm ${n}`);
      const optimizer = loadSafetensors(join(grown, 'optimizer.safetensors'));
      const grownBuffers = Object.entries(optimizer).filter(([, t]) => t.shape[0] === 27 && t.shape[1] === 32);
      assert.equal(grownBuffers.length, 1, 'the head weight\'s momentum buffer has 27 rows');
      assert.equal(F.sum(F.abs(F.narrow((grownBuffers[0] as [string, Tensor])[1], 0, OLD_CLASSES, 3))).item(), 0);
    });
    const resumed = await Trainer.create(config(dir, { lossType: 'arcface', classNum: 27, dataset: { type: 'synthetic', numClasses: 27, imagesPerClass: 8, seed: SEED }, resume: grown, checkpointDir: join(dir, 'ck2'), trainSteps: 4 }));
    const run = await resumed.train({ quiet: true, noCheckpoints: true });
    resumed.dispose();
    assert.equal(run.losses.length, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('grow names bad input: missing checkpoint, --add 0, image labels that are not the new classes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-grow-'));
  try {
    await assert.rejects(growCheckpoint({ checkpoint: join(dir, 'nope'), add: 2, out: join(dir, 'out') }), /checkpoint .*nope: no such directory/);
    const missing = await captured(() => growCommand(['--checkpoint', join(dir, 'nope'), '--add', '2', '--out', join(dir, 'out')]));
    assert.equal(missing.result, 1);
    assert.match(missing.stderr, /plsc grow: checkpoint .*nope: no such directory/);
    const zero = await captured(() => growCommand(['--checkpoint', dir, '--add', '0', '--out', join(dir, 'out')]));
    assert.equal(zero.result, 2);
    assert.match(zero.stderr, /--add must be an integer >= 1, got '0'/);
    await assert.rejects(growCheckpoint({ checkpoint: dir, add: 0, out: join(dir, 'out') }), /--add must be a positive integer/);

    const trainer = await Trainer.create(config(dir, { trainSteps: 1 }));
    await trainer.train({ quiet: true });
    trainer.dispose();
    const all = new SyntheticFaces({ numClasses: OLD_CLASSES + 4, imagesPerClass: 2, size: IMAGE_SIZE, seed: SEED });
    // Labels 24..27 (4 classes) for --add 3, and labels 0, 1, 3 (a gap) for --add 3.
    await writeListDataset(subset(all, range(OLD_CLASSES, OLD_CLASSES + 4), [0]), join(dir, 'four'), { rawEncoding: 'png' });
    await assert.rejects(
      growCheckpoint({ checkpoint: join(dir, 'checkpoints'), add: 3, images: join(dir, 'four'), out: join(dir, 'out') }),
      /four has 4 images of 4 label\(s\) \(24, 25, 26, 27\), which do not map to the 3 new classes: expected every label of 0\.\.2 or of 24\.\.26/,
    );
    mkdirSync(join(dir, 'gap'));
    writeFileSync(join(dir, 'gap', 'label.txt'), 'a.png\t0\nb.png\t1\nc.png\t3\n');
    await assert.rejects(
      growCheckpoint({ checkpoint: join(dir, 'checkpoints'), add: 3, images: join(dir, 'gap', 'label.txt'), out: join(dir, 'out') }),
      /label\.txt has 3 images of 3 label\(s\) \(0, 1, 3\), which do not map to the 3 new classes/,
    );
    await assert.rejects(
      growCheckpoint({ checkpoint: join(dir, 'checkpoints'), add: 3, images: join(dir, 'absent'), out: join(dir, 'out') }),
      /grow: --images .*absent does not exist/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
