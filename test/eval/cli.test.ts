import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { evalCommand } from '../../src/eval/cli.js';
import { embedLoadedImages } from '../../src/eval/embed-loaded.js';
import { embedImages, uint8HwcImageSource, type EmbedFunction } from '../../src/eval/embed.js';
import { evaluateIdentification, matmulTransposed } from '../../src/eval/identification.js';
import { torchMatmul } from '../../src/eval/torch-matmul.js';
import { writeVerificationBin } from '../../src/data/bin-file.js';
import { SyntheticFaces } from '../../src/data/synthetic.js';
import { chwToHwc, decodeToRgb, encodeRgb } from '../../src/data/image.js';
import { createBackbone } from '../../src/models/index.js';
import { saveSafetensors } from '../../src/torch/safetensors.js';
import { tidy } from '../../src/torch/scope.js';
import { manualSeed } from '../../src/torch/native.js';
import { saveCheckpoint } from '../../src/train/checkpoint.js';
import { checkpointName, shardFileName } from '../../src/checkpoint/format.js';
import { DEFAULT_CONFIG } from '../../src/config/train-config.js';
import { backboneEmbedFunction, verifyBin } from '../../src/eval/backbone-verification.js';
import * as F from '../../src/torch/ops.js';
import type { Backbone } from '../../src/models/backbone.js';
import { TinyPoolEmbedder } from './fixtures/tiny-backbone.js';

const SIZE = 24;
const EMB = 16;
const CLASSES = 8;
const PER_CLASS = 4;
const PAIRS = 20;
const FACTORY = `${fileURLToPath(new URL('./fixtures/tiny-backbone.js', import.meta.url))}#tinyPoolBackbone`;
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

let dir = '';
let faces: SyntheticFaces;
const png: Buffer[] = [];
/** Backbones whose weights were saved, kept to compute expected results in-process. */
let modelA: TinyPoolEmbedder;
let modelB: TinyPoolEmbedder;

function capture(): { io: { stdout: { write(c: string): boolean }; stderr: { write(c: string): boolean } }; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    io: { stdout: { write: (c: string) => ((out += c), true) }, stderr: { write: (c: string) => ((err += c), true) } },
    out: () => out,
    err: () => err,
  };
}

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const c = capture();
  const code = await evalCommand(argv, c.io);
  return { code, out: c.out(), err: c.err() };
}

function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

function imageIndex(cls: number, k: number): number {
  return cls * PER_CLASS + k;
}

/** Pair i: even = same identity (images 0 and 1 + i/CLASSES of class c), odd = two identities. */
function pairImages(): { images: Buffer[]; issame: boolean[] } {
  const images: Buffer[] = [];
  const issame: boolean[] = [];
  for (let i = 0; i < PAIRS; i++) {
    const c = i % CLASSES;
    const same = i % 2 === 0;
    images.push(png[imageIndex(c, 0)]!, same ? png[imageIndex(c, 1 + (Math.floor(i / CLASSES) % (PER_CLASS - 1)))]! : png[imageIndex((c + 3) % CLASSES, 2)]!);
    issame.push(same);
  }
  return { images, issame };
}

function save(model: Backbone, path: string, metadata?: Record<string, string>): void {
  tidy(() => saveSafetensors(path, model.stateDict(), metadata));
}

function writeCheckpoint(root: string, step: number, model: Backbone): void {
  const config = { ...DEFAULT_CONFIG, model: FACTORY, embSize: EMB, imageSize: SIZE, classNum: 3 };
  tidy(() =>
    saveCheckpoint(root, {
      rank: 0,
      shardCount: 1,
      meta: {
        numClasses: 3,
        embeddingSize: EMB,
        step,
        epoch: 0,
        dataOrder: { epoch: 0, position: step },
        samplerStep: step,
        seed: 0,
        backbone: FACTORY,
        lossType: 'arcface',
        shardTensors: ['weight'],
        config: config as unknown as Record<string, unknown>,
      },
      backbone: model.stateDict(),
      shard: { index: 0, tensors: { weight: F.zeros([3, EMB]) } },
      barrier: () => undefined,
      keepLast: 5,
    }),
  );
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'plsc-eval-cli-'));
  faces = new SyntheticFaces({ numClasses: CLASSES, imagesPerClass: PER_CLASS, size: SIZE, seed: 3 });
  for (let i = 0; i < faces.length; i++) png.push(await encodeRgb(faces.render(i), SIZE, SIZE, 'chw', 'png'));
  const { images, issame } = pairImages();
  await writeVerificationBin(join(dir, 'synth.bin'), images, issame);
  // The same pairs at Python 2's protocol, under another name.
  await writeVerificationBin(join(dir, 'synth_p2.bin'), images, issame, { protocol: 2 });

  // Seeded: a random projection of pooled colours separates these identities well for most seeds
  // (0.65 to 0.95 over seeds 0-19); seed 5 gives 0.95, so the accuracy checks below are stable.
  manualSeed(5);
  modelA = new TinyPoolEmbedder(EMB, SIZE);
  modelB = new TinyPoolEmbedder(EMB, SIZE);
  save(modelA, join(dir, 'with-meta.safetensors'), { model: FACTORY, embeddingSize: String(EMB), imageSize: String(SIZE) });
  save(modelA, join(dir, 'trainer-meta.safetensors'), { model: FACTORY, embeddingSize: String(EMB) });
  save(modelA, join(dir, 'bare.safetensors'));
  save(modelA, join(dir, 'lying-meta.safetensors'), { model: FACTORY, embeddingSize: '8', imageSize: String(SIZE) });
  writeCheckpoint(join(dir, 'ckpt'), 1, modelA);
  writeCheckpoint(join(dir, 'ckpt'), 2, modelB);

  // Identification: gallery = images 0 and 1 of every class, probes = image 2 of every class plus
  // one identity (label 99) that the gallery lacks.
  mkdirSync(join(dir, 'images'));
  const gallery: string[] = [];
  const probes: string[] = [];
  for (let c = 0; c < CLASSES; c++) {
    for (let k = 0; k < PER_CLASS; k++) writeFileSync(join(dir, 'images', `${c}_${k}.png`), png[imageIndex(c, k)]!);
    gallery.push(`images/${c}_0.png ${c}`, `images/${c}_1.png ${c}`);
    probes.push(`images/${c}_2.png ${c}`);
  }
  probes.push(`images/0_3.png 99`);
  writeFileSync(join(dir, 'gallery.txt'), `${gallery.join('\n')}\n`);
  writeFileSync(join(dir, 'probe.txt'), `${probes.join('\n')}\n`);
});

after(() => {
  modelA?.dispose();
  modelB?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('--model with metadata: one JSON line per target with the protocol numbers of the saved weights', async () => {
  const { code, out, err } = await run(['--model', join(dir, 'with-meta.safetensors'), '--bin', join(dir, 'synth.bin'), '--bin', join(dir, 'synth_p2.bin'), '--json', '--batch-size', '7']);
  assert.equal(code, 0, err);
  const lines = jsonLines(out);
  assert.deepEqual(
    lines.map((l) => l.target),
    ['synth', 'synth_p2'],
  );
  const expected = await verifyBin(modelA, join(dir, 'synth.bin'));
  for (const line of lines) {
    for (const key of ['target', 'accuracy', 'std', 'xnorm', 'val_at_far_1e-3', 'pairs']) assert.ok(key in line, `missing key ${key}`);
    assert.equal(line.pairs, PAIRS);
    const accuracy = line.accuracy as number;
    const std = line.std as number;
    assert.ok(accuracy >= 0 && accuracy <= 1, `accuracy ${accuracy}`);
    assert.ok(std >= 0 && std <= 0.5, `std ${std}`);
    assert.ok((line['val_at_far_1e-3'] as number) >= 0 && (line['val_at_far_1e-3'] as number) <= 1);
    assert.ok((line.xnorm as number) > 0);
    // Same weights, same pairs, same protocol: the loaded model reproduces the in-memory one
    // (XNorm depends on every weight, so this fails if loading left any parameter untouched).
    assert.equal(accuracy, expected.accuracy);
    assert.equal(std, expected.std);
    assert.ok(Math.abs((line.xnorm as number) - expected.xnorm) < 1e-6 * expected.xnorm, `xnorm ${line.xnorm} vs ${expected.xnorm}`);
    assert.equal(line['val_at_far_1e-3'], expected.valAtFar1e3);
  }
  // Colour layouts separate the synthetic identities, so even this pooled-colour model must do
  // clearly better than chance; a pairing or flip bug would pull it to about 0.5.
  assert.ok(expected.accuracy >= 0.8, `accuracy ${expected.accuracy}`);
  assert.notEqual(expected.xnorm, (await verifyBin(modelB, join(dir, 'synth.bin'))).xnorm);
});

test('table output: header, one row per target, accuracy ± std', async () => {
  const { code, out, err } = await run(['--model', join(dir, 'trainer-meta.safetensors'), '--image-size', String(SIZE), '--bin', join(dir, 'synth.bin')]);
  assert.equal(code, 0, err);
  const lines = out.trimEnd().split('\n');
  assert.match(lines[0]!, /^model: .*trainer-meta\.safetensors: .*tiny-backbone\.js#tinyPoolBackbone, 16-d, 24x24 input$/);
  assert.match(lines[1]!, /^target\s+pairs\s+accuracy\s+XNorm\s+VAL@FAR=1e-3$/);
  assert.match(lines[2]!, /^synth\s+20\s+[01]\.\d{5} ± 0\.\d{5}\s+\d+\.\d{4}\s+[01]\.\d{5}$/);
  assert.equal(lines.length, 3);
  assert.equal(err, '');
  // The trainer's metadata has no input size: the default is used, and said so.
  const assumed = await run(['--model', join(dir, 'trainer-meta.safetensors'), '--bin', join(dir, 'synth.bin')]);
  assert.equal(assumed.code, 0, assumed.err);
  assert.match(assumed.out, /16-d, 112x112 input/);
  assert.match(assumed.err, /warning: .*trainer-meta\.safetensors records no input size; evaluating at 112x112 \(pass --image-size/);
});

test('a bin given by name resolves in --dataset-dir', async () => {
  const { code, out, err } = await run(['--model', join(dir, 'with-meta.safetensors'), '--dataset-dir', dir, '--bin', 'synth', '--json']);
  assert.equal(code, 0, err);
  const [line] = jsonLines(out);
  assert.equal(line?.target, 'synth');
  assert.equal(line?.path, join(dir, 'synth.bin'));
});

test('--checkpoint: a root picks the newest step, a step directory is used as is', async () => {
  const fromRoot = await run(['--checkpoint', join(dir, 'ckpt'), '--bin', join(dir, 'synth.bin'), '--json']);
  assert.equal(fromRoot.code, 0, fromRoot.err);
  const fromStep1 = await run(['--checkpoint', join(dir, 'ckpt', checkpointName(1)), '--bin', join(dir, 'synth.bin'), '--json']);
  assert.equal(fromStep1.code, 0, fromStep1.err);
  const expectedB = await verifyBin(modelB, join(dir, 'synth.bin'));
  const expectedA = await verifyBin(modelA, join(dir, 'synth.bin'));
  const xnormOf = (text: string) => jsonLines(text)[0]!.xnorm as number;
  assert.ok(Math.abs(xnormOf(fromRoot.out) - expectedB.xnorm) < 1e-6 * expectedB.xnorm);
  assert.ok(Math.abs(xnormOf(fromStep1.out) - expectedA.xnorm) < 1e-6 * expectedA.xnorm);
  const table = await run(['--checkpoint', join(dir, 'ckpt'), '--bin', join(dir, 'synth.bin')]);
  assert.match(table.out, /^model: checkpoint .*step-00000002 \(step 2\): /);
  // Evaluation reads the backbone only: a copy without the FC shard evaluates the same.
  const backboneOnly = join(dir, 'backbone-only');
  cpSync(join(dir, 'ckpt', checkpointName(1)), backboneOnly, { recursive: true });
  rmSync(join(backboneOnly, shardFileName(0, 1)));
  const withoutShard = await run(['--checkpoint', backboneOnly, '--bin', join(dir, 'synth.bin'), '--json']);
  assert.equal(withoutShard.code, 0, withoutShard.err);
  assert.equal(xnormOf(withoutShard.out), xnormOf(fromStep1.out));
});

test('errors name what is wrong: missing files, bad checkpoints, mismatched sizes, unreadable bins', async () => {
  const bin = join(dir, 'synth.bin');
  const model = join(dir, 'with-meta.safetensors');
  const cases: [string[], RegExp][] = [
    [['--model', model, '--bin', join(dir, 'nope.bin')], /validation target '.*nope\.bin' not found/],
    [['--model', join(dir, 'nope.safetensors'), '--bin', bin], /model .*nope\.safetensors does not exist/],
    [['--checkpoint', join(dir, 'nope'), '--bin', bin], /checkpoint .*nope: no such directory/],
    [['--checkpoint', join(dir, 'images'), '--bin', bin], /neither a checkpoint step directory \(no meta\.json\) nor a checkpoint root/],
    [['--checkpoint', model, '--bin', bin], /is not a directory \(a \.safetensors file is loaded with --model\)/],
    [['--model', join(dir, 'bare.safetensors'), '--bin', bin], /bare\.safetensors carries no 'model' metadata; pass --backbone NAME/],
    [['--model', join(dir, 'bare.safetensors'), '--backbone', FACTORY, '--bin', bin], /bare\.safetensors carries no 'embeddingSize' metadata; pass --emb-size D/],
    [['--model', model, '--emb-size', '32', '--bin', bin], /records embedding size 16, but --emb-size 32 was given \(mismatched embedding size\)/],
    [['--model', model, '--image-size', '32', '--bin', bin], /records image size 24, but --image-size 32 was given/],
    [['--checkpoint', join(dir, 'ckpt'), '--emb-size', '8', '--bin', bin], /checkpoint .*step-00000002 records embedding size 16, but --emb-size 8/],
    [['--model', join(dir, 'lying-meta.safetensors'), '--bin', bin], /lying-meta\.safetensors: the weights do not fit backbone .* \(8-d, 24x24 input\): .*size mismatch for body\.2\.weight/],
    [['--model', join(dir, 'bare.safetensors'), '--backbone', 'no-such-net', '--emb-size', '16', '--bin', bin], /cannot build backbone 'no-such-net': unknown backbone/],
    [['--model', join(dir, 'gallery.txt'), '--bin', bin], /gallery\.txt/],
    [['--model', model, '--bin', join(dir, 'gallery.txt')], /gallery\.txt/],
  ];
  for (const [argv, pattern] of cases) {
    const { code, out, err } = await run(argv);
    assert.equal(code, 1, `${argv.join(' ')}: ${err}`);
    assert.doesNotMatch(out, /^\S+\s+\d+\s+[01]\.\d{5} ±/m, argv.join(' '));
    assert.match(err, pattern, argv.join(' '));
    assert.match(err, /^plsc eval: /);
  }
});

test('usage errors exit 2 with the usage text; --help exits 0', async () => {
  const bin = join(dir, 'synth.bin');
  const model = join(dir, 'with-meta.safetensors');
  const cases: [string[], RegExp][] = [
    [['--bin', bin], /exactly one of --checkpoint DIR and --model FILE/],
    [['--model', model, '--checkpoint', dir, '--bin', bin], /exactly one of --checkpoint DIR and --model FILE/],
    [['--model', model], /at least one --bin FILE/],
    [['--model', model, '--identify', '--gallery', 'g.txt'], /--identify needs --gallery LIST and --probe LIST/],
    [['--model', model, '--gallery', 'g.txt', '--probe', 'p.txt'], /--gallery\/--probe need --identify/],
    [['--model', model, '--bin', bin, '--batch-size', '0'], /--batch-size must be an integer >= 1, got '0'/],
    [['--model', model, '--bin', bin, '--frobnicate'], /Unknown option '--frobnicate'/],
  ];
  for (const [argv, pattern] of cases) {
    const { code, err } = await run(argv);
    assert.equal(code, 2, argv.join(' '));
    assert.match(err, pattern);
    assert.match(err, /usage: plsc eval/);
  }
  const help = await run(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.out, /--checkpoint DIR/);
});

/** Flip-fused embeddings of list images computed directly from the in-memory model. */
async function fusedEmbeddings(model: Backbone, files: string[]): Promise<Float32Array[]> {
  const pixels = await Promise.all(files.map((f) => decodeToRgb(readFileSync(join(dir, f)), SIZE, SIZE)));
  const { original, flipped } = await embedImages(uint8HwcImageSource(pixels, { height: SIZE, width: SIZE }), backboneEmbedFunction(model));
  return files.map((_, i) => {
    const row = original.data.slice(i * EMB, (i + 1) * EMB);
    for (let j = 0; j < EMB; j++) row[j]! += flipped!.data[i * EMB + j]!;
    return row;
  });
}

test('--identify: rank-1/rank-5 over probes with a gallery mate, equal to a direct computation', async () => {
  const { code, out, err } = await run(['--model', join(dir, 'with-meta.safetensors'), '--identify', '--gallery', join(dir, 'gallery.txt'), '--probe', join(dir, 'probe.txt'), '--json', '--gallery-chunk', '5', '--batch-size', '3']);
  assert.equal(code, 0, err);
  const [line, ...rest] = jsonLines(out);
  assert.equal(rest.length, 0);
  assert.equal(line?.target, 'identification');
  assert.equal(line?.gallery_size, 2 * CLASSES);
  assert.equal(line?.probes, CLASSES + 1);
  assert.equal(line?.evaluated_probes, CLASSES);
  assert.equal(line?.probes_without_mate, 1);
  const rank1 = line?.rank1 as number;
  const rank5 = line?.rank5 as number;
  assert.ok(rank1 >= 0 && rank1 <= rank5 && rank5 <= 1, `${rank1} ${rank5}`);

  const galleryFiles = Array.from({ length: CLASSES }, (_, c) => [`images/${c}_0.png`, `images/${c}_1.png`]).flat();
  const probeFiles = [...Array.from({ length: CLASSES }, (_, c) => `images/${c}_2.png`), 'images/0_3.png'];
  const expected = await evaluateIdentification(
    await fusedEmbeddings(modelA, galleryFiles),
    Array.from({ length: 2 * CLASSES }, (_, i) => Math.floor(i / 2)),
    await fusedEmbeddings(modelA, probeFiles),
    [...Array.from({ length: CLASSES }, (_, c) => c), 99],
  );
  assert.equal(rank1, expected.rank1);
  assert.equal(rank5, expected.rank5);
  assert.ok(rank1 >= 0.5, `rank-1 ${rank1}: the pooled-colour model should find most synthetic identities`);

  const table = await run(['--model', join(dir, 'with-meta.safetensors'), '--identify', '--gallery', join(dir, 'gallery.txt'), '--probe', join(dir, 'probe.txt')]);
  assert.equal(table.code, 0, table.err);
  assert.match(table.out, /gallery\s+probes\s+evaluated\s+rank-1\s+rank-5\n\s+16\s+9\s+8\s+[01]\.\d{5}\s+[01]\.\d{5}\n/);
  assert.match(table.out, /\(1 probes have no gallery image/);
});

test('--identify errors: malformed list line, missing image, no probe with a gallery mate', async () => {
  writeFileSync(join(dir, 'bad-list.txt'), 'images/0_0.png 0\nimages/0_1.png zero\n');
  writeFileSync(join(dir, 'missing-image.txt'), 'images/0_0.png 0\nimages/absent.png 1\n');
  writeFileSync(join(dir, 'strangers.txt'), 'images/0_0.png 50\nimages/1_0.png 51\n');
  const model = join(dir, 'with-meta.safetensors');
  const cases: [string, string, RegExp][] = [
    ['bad-list.txt', 'probe.txt', /bad-list\.txt line 2: label "zero" is not a non-negative integer/],
    ['missing-image.txt', 'probe.txt', /missing-image\.txt line 2 .*image file missing: .*absent\.png/],
    ['gallery.txt', 'strangers.txt', /no probe in .*strangers\.txt has a label that occurs in the gallery/],
  ];
  for (const [gallery, probe, pattern] of cases) {
    const { code, err } = await run(['--model', model, '--identify', '--gallery', join(dir, gallery), '--probe', join(dir, probe)]);
    assert.equal(code, 1, err);
    assert.match(err, pattern);
  }
});

test('torchMatmul computes a * b^T like the TypeScript kernel', () => {
  const a = Float32Array.from({ length: 5 * 7 }, (_, i) => Math.sin(i * 1.3));
  const b = Float32Array.from({ length: 9 * 7 + 3 }, (_, i) => Math.cos(i * 0.7));
  const got = torchMatmul(a, 5, b, 9, 7) as Float32Array;
  const want = matmulTransposed(a, 5, b, 9, 7);
  assert.equal(got.length, 45);
  for (let i = 0; i < 45; i++) assert.ok(Math.abs(got[i]! - want[i]!) < 1e-5, `${i}: ${got[i]} vs ${want[i]}`);
  assert.throws(() => torchMatmul(a, 6, b, 9, 7), /inputs hold 35 and 66 values/);
});

test('embedLoadedImages: same embeddings as embedding everything at once, loading at most one batch ahead', async () => {
  const count = 11;
  const batch = 3;
  const pixels = Array.from({ length: count }, (_, i) => chwToHwc(faces.render(i), SIZE, SIZE));
  let highestLoaded = -1;
  const load = async (i: number) => {
    highestLoaded = Math.max(highestLoaded, i);
    await new Promise((r) => setImmediate(r));
    return pixels[i]!;
  };
  const backbone = createBackbone('feature-mlp', { inputDim: 3 * SIZE * SIZE, embeddingSize: 5, hiddenDims: [] });
  try {
    const inner = backboneEmbedFunction(backbone);
    let seen = 0;
    const embed: EmbedFunction = (input, n) => {
      // While batch k is embedded, only batches k and k+1 may have been loaded.
      assert.ok(highestLoaded < Math.floor(seen / 2 / batch) * batch + 2 * batch, `loaded up to ${highestLoaded} while embedding ${seen}`);
      seen += n;
      return inner(input, n);
    };
    backbone.eval();
    const streamed = await embedLoadedImages(count, load, embed, { height: SIZE, width: SIZE, batchSize: batch });
    const whole = await embedImages(uint8HwcImageSource(pixels, { height: SIZE, width: SIZE }), inner, { batchSize: count });
    assert.equal(streamed.original.dim, 5);
    for (let i = 0; i < count * 5; i++) {
      assert.ok(Math.abs(streamed.original.data[i]! - whole.original.data[i]!) < 1e-5);
      assert.ok(Math.abs(streamed.flipped!.data[i]! - whole.flipped!.data[i]!) < 1e-5);
    }
    await assert.rejects(
      embedLoadedImages(count, async (i) => (i === 7 ? Promise.reject(new Error('image 7 is broken')) : pixels[i]!), inner, { height: SIZE, width: SIZE, batchSize: batch }),
      /image 7 is broken/,
    );
  } finally {
    backbone.dispose();
  }
});

test('verifyBin: decodes to the backbone input size and rejects a different imageSize', async () => {
  await assert.rejects(verifyBin(modelA, join(dir, 'synth.bin'), { imageSize: 112 }), /imageSize 112 does not match the backbone's input 24x24/);
  const features = createBackbone('feature-mlp', { inputDim: 12, embeddingSize: 4 });
  try {
    await assert.rejects(verifyBin(features, join(dir, 'synth.bin')), /takes inputs of shape \[12\], not RGB images/);
  } finally {
    features.dispose();
  }
});

test('plsc eval end to end: the registered command in a fresh process, model given as file.js#factory metadata', () => {
  const plsc = join(REPO_ROOT, 'bin', 'plsc.js');
  const result = spawnSync(process.execPath, [plsc, 'eval', '--model', join(dir, 'trainer-meta.safetensors'), '--image-size', String(SIZE), '--bin', join(dir, 'synth.bin'), '--json'], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  assert.equal(result.status, 0, result.stderr);
  const [line, ...rest] = jsonLines(result.stdout);
  assert.equal(rest.length, 0);
  assert.equal(line?.target, 'synth');
  assert.equal(line?.pairs, PAIRS);
  assert.ok((line?.accuracy as number) >= 0.8, `accuracy ${line?.accuracy}`);
  const missing = spawnSync(process.execPath, [plsc, 'eval', '--model', join(dir, 'trainer-meta.safetensors'), '--bin', join(dir, 'absent.bin')], { encoding: 'utf8', timeout: 300_000 });
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /plsc eval: validation target '.*absent\.bin' not found/);
  const listed = spawnSync(process.execPath, [plsc, '--help'], { encoding: 'utf8' });
  assert.match(listed.stdout, /eval\s+verification on insightface \.bin files/);
});
