// `plsc export` end to end: checkpoints written with the training checkpoint functions (2 FC
// shards, uneven), exported to ONNX and class centres, then checked in onnxruntime against the
// libtorch forward of the very module that was saved, and the centres against the shard files.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import '../../src/onnx/ort-telemetry.js';
import ort from 'onnxruntime-node';
import * as F from '../../src/torch/ops.js';
import { noGrad } from '../../src/torch/autograd.js';
import { tidy } from '../../src/torch/scope.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../../src/torch/safetensors.js';
import { BatchNorm1d, BatchNorm2d } from '../../src/torch/nn/batchnorm.js';
import { Conv2d } from '../../src/torch/nn/conv.js';
import { PReLU } from '../../src/torch/nn/activation.js';
import type { Module } from '../../src/torch/nn/module.js';
import { manualSeed } from '../../src/torch/native.js';
import type { Tensor } from '../../src/torch/tensor.js';
import { createBackbone } from '../../src/models/index.js';
import type { Backbone } from '../../src/models/backbone.js';
import { saveCheckpoint } from '../../src/train/checkpoint.js';
import { checkpointName, shardFileName, readMeta, type CheckpointMeta } from '../../src/checkpoint/format.js';
import { exportCommand } from '../../src/serve/export-cli.js';
import { exportCheckpoint, ExportParityError } from '../../src/export/export-checkpoint.js';
import { writeCheckpointCenters } from '../../src/checkpoint/centers.js';
import { digestFile } from '../../src/checkpoint/integrity.js';
import { loadClassCenters } from '../../src/centers/centers.js';
import { halfToFloat32 } from '../../src/centers/float16.js';
import { EmbeddingModel } from '../../src/serve/model.js';
import { mismatchedBackbone } from './fixtures/mismatched-backbone.js';
import { captured } from '../helpers/capture-console.js';

const NUM_CLASSES = 11; // 6 + 5 over two shards
const EMB = 64;
const ZERO_ROW = 3;

const work = mkdtempSync(join(tmpdir(), 'plsc-export-'));
after(() => rmSync(work, { recursive: true, force: true }));

function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomArray(length: number, random: () => number, scale = 1): Float32Array {
  return Float32Array.from({ length }, () => (random() * 2 - 1) * scale);
}

/** Non-trivial BN statistics and PReLU slopes, so the export must carry every one of them. */
function randomizeForInference(model: Module<[Tensor], Tensor>): void {
  noGrad(() => {
    for (const module of model.modules()) {
      if (module instanceof BatchNorm2d || module instanceof BatchNorm1d) {
        module.runningMean?.normal_(0, 0.2);
        module.runningVar?.uniform_(0.5, 1.5);
        module.weight?.uniform_(0.7, 1.3);
        module.bias?.normal_(0, 0.2);
      } else if (module instanceof Conv2d) {
        module.weight.normal_(0, 1 / Math.sqrt(module.weight.numel / module.weight.shape[0]!));
      } else if (module instanceof PReLU) {
        module.weight.uniform_(-0.2, 0.6);
      }
    }
  });
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

function torchForward(backbone: Backbone, input: Float32Array, batch: number): Float32Array {
  backbone.eval();
  return noGrad(() => tidy(() => backbone.call(F.tensor(input, { shape: [batch, ...backbone.inputShape] })).dataSync() as Float32Array));
}

async function onnxForward(path: string, input: Float32Array, shape: number[]): Promise<{ output: Float32Array; inputDims: readonly (number | string)[] }> {
  const session = await ort.InferenceSession.create(path);
  try {
    const meta = session.inputMetadata[0]!;
    const result = await session.run({ input: new ort.Tensor('float32', input, shape) });
    return { output: result.embedding!.data as Float32Array, inputDims: meta.isTensor ? meta.shape : [] };
  } finally {
    await session.release();
  }
}

/** FC shard weights with one zero row and rows of very different norms. */
function shardWeights(seed: number): [Float32Array, Float32Array] {
  const random = rng(seed);
  const full = new Float32Array(NUM_CLASSES * EMB);
  for (let c = 0; c < NUM_CLASSES; c++) {
    const scale = c === ZERO_ROW ? 0 : 10 ** ((c % 4) - 2);
    full.set(randomArray(EMB, random, scale), c * EMB);
  }
  return [full.slice(0, 6 * EMB), full.slice(6 * EMB)];
}

/**
 * Writes one checkpoint as a 2-worker run would: rank 0 through saveCheckpoint (backbone, meta,
 * shard 0), rank 1's shard beside it.
 */
function writeCheckpoint(root: string, step: number, state: Record<string, Tensor>, shards: [Float32Array, Float32Array], config: Record<string, unknown>, backboneName: string): string {
  const embedding = Number(config.embSize);
  const rows = [shards[0].length / embedding, shards[1].length / embedding];
  const meta: Omit<CheckpointMeta, 'format' | 'worldSize' | 'savedAt'> = {
    numClasses: rows[0]! + rows[1]!,
    embeddingSize: embedding,
    step,
    epoch: 1,
    dataOrder: { epoch: 1, position: 0 },
    samplerStep: step,
    seed: 0,
    backbone: backboneName,
    lossType: 'dist_arcface',
    shardTensors: ['weight', 'weight_momentum'],
    config,
  };
  return tidy(() => {
    const shardTensors = (r: number) => ({
      weight: F.tensor(shards[r]!, { shape: [rows[r]!, embedding] }),
      weight_momentum: F.mul(F.ones([rows[r]!, embedding]), 0.5),
    });
    // Rank 1 writes its shard into the temporary directory between the first two barriers, as a real rank 1 would.
    let barriers = 0;
    const rank1 = (): void => {
      if (++barriers === 1) saveSafetensors(join(root, `.tmp-${checkpointName(step)}`, shardFileName(1, 2)), shardTensors(1), { rank: '1', worldSize: '2' });
    };
    return saveCheckpoint(root, { rank: 0, shardCount: 2, meta, backbone: state, shard: { index: 0, tensors: shardTensors(0) }, barrier: rank1, keepLast: 5 });
  });
}


const CONFIG = { model: 'mobilefacenet', embSize: EMB, imageSize: 112, classNum: NUM_CLASSES, lossType: 'dist_arcface' };

// Two steps with different weights: the root must resolve to the newer one.
manualSeed(20240607);
const root = join(work, 'checkpoints');
const older = createBackbone('mobilefacenet', { embeddingSize: EMB });
const newer = createBackbone('mobilefacenet', { embeddingSize: EMB });
randomizeForInference(older);
randomizeForInference(newer);
tidy(() => writeCheckpoint(root, 100, older.stateDict(), shardWeights(1), CONFIG, 'mobilefacenet'));
const newestDir = tidy(() => writeCheckpoint(root, 200, newer.stateDict(), shardWeights(2), CONFIG, 'mobilefacenet'));
after(() => {
  older.dispose();
  newer.dispose();
});

/** The expected centres: the shard files' weight rows in rank order, each divided by its norm (float64). */
function expectedCenters(dir: string): Float64Array {
  const rows: number[] = [];
  for (let r = 0; r < 2; r++) {
    const tensors = loadSafetensors(join(dir, shardFileName(r, 2)));
    rows.push(...(tensors.weight!.dataSync() as Float32Array));
    for (const t of Object.values(tensors)) t.dispose();
  }
  const out = new Float64Array(rows.length);
  for (let c = 0; c < rows.length / EMB; c++) {
    let sum = 0;
    for (let d = 0; d < EMB; d++) sum += rows[c * EMB + d]! ** 2;
    const scale = sum > 0 ? 1 / Math.sqrt(sum) : 0;
    for (let d = 0; d < EMB; d++) out[c * EMB + d] = rows[c * EMB + d]! * scale;
  }
  return out;
}

test('export of a checkpoint root: newest step, dynamic batch, onnxruntime matches the saved module, centres of all classes in shard order', async () => {
  const model = join(work, 'out', 'model.onnx');
  const centers = join(work, 'out', 'centers.safetensors');
  const { result: code, stdout, stderr } = await captured(() => exportCommand(['--checkpoint', root, '--out', model, '--dynamic-batch', '--centers', centers]));
  assert.equal(code, 0, stderr);
  assert.match(stdout, /step 200/);
  const parity = /max abs diff (\S+)/.exec(stdout);
  assert.ok(parity, stdout);
  assert.ok(Number(parity[1]) <= 1e-4, `printed parity ${parity[1]}`);
  assert.match(stdout, new RegExp(`plsc serve --model \\S*model\\.onnx --centers \\S*centers\\.safetensors`));
  console.log(`# export parity (mobilefacenet, emb ${EMB}): ${parity[1]}`);

  // Independent check on other inputs and another batch size, against the module that was saved.
  const batch = 3;
  const input = randomArray(batch * 3 * 112 * 112, rng(99), 1.5);
  const { output, inputDims } = await onnxForward(model, input, [batch, 3, 112, 112]);
  assert.equal(typeof inputDims[0], 'string', 'dynamic batch dimension');
  assert.deepEqual(inputDims.slice(1), [3, 112, 112]);
  const expected = torchForward(newer, input, batch);
  const olderOutput = torchForward(older, input, batch);
  assert.equal(output.length, batch * EMB);
  const diff = maxAbsDiff(output, expected);
  assert.ok(diff <= 1e-4, `onnxruntime vs libtorch: ${diff}`);
  assert.ok(maxAbsDiff(output, olderOutput) > 1e-2, 'the export used the newest checkpoint, not step 100');

  // The serving side loads both files.
  const served = await EmbeddingModel.load(model);
  assert.equal(served.info.embeddingDim, EMB);
  assert.equal(served.info.fixedBatch, null);
  const loaded = await loadClassCenters(centers);
  assert.equal(loaded.count, NUM_CLASSES);
  assert.equal(loaded.dim, EMB);
  assert.equal(loaded.dtype, 'float32');
  const reference = expectedCenters(newestDir);
  assert.ok(maxAbsDiff(loaded.rows, reference) < 1e-6);
  for (let d = 0; d < EMB; d++) assert.ok(loaded.rows[ZERO_ROW * EMB + d] === 0, 'a zero row stays zero');
  for (let c = 0; c < NUM_CLASSES; c++) {
    if (c === ZERO_ROW) continue;
    assert.ok(Math.abs(1 / loaded.inverseNorms[c]! - 1) < 1e-6, `row ${c} has unit norm`);
  }
  const header = readSafetensorsHeader(centers);
  assert.deepEqual(header.entries.map((e) => [e.name, e.dtype, e.shape]), [['centers', 'F32', [NUM_CLASSES, EMB]]]);
  assert.equal(header.metadata.num_classes, String(NUM_CLASSES));
  assert.equal(header.metadata.normalized, 'l2');
  assert.ok(!existsSync(`${model}.tmp-${process.pid}`) && !existsSync(`${centers}.tmp-${process.pid}`));
});

test('export of a step directory: fixed batch 1 by default, opset 13, fp16 centres', async () => {
  const stepDir = join(root, 'step-00000100');
  const model = join(work, 'fixed', 'model.onnx');
  const centers = join(work, 'fixed', 'centers-fp16.safetensors');
  const { result: code, stderr } = await captured(() => exportCommand(['--checkpoint', stepDir, '--out', model, '--opset', '13', '--centers', centers, '--fp16']));
  assert.equal(code, 0, stderr);
  const input = randomArray(3 * 112 * 112, rng(5));
  const { output, inputDims } = await onnxForward(model, input, [1, 3, 112, 112]);
  assert.deepEqual(inputDims, [1, 3, 112, 112]);
  assert.ok(maxAbsDiff(output, torchForward(older, input, 1)) <= 1e-4);
  const served = await EmbeddingModel.load(model);
  assert.equal(served.info.fixedBatch, 1);

  const loaded = await loadClassCenters(centers);
  assert.equal(loaded.dtype, 'float16');
  assert.equal(loaded.count, NUM_CLASSES);
  const values = halfToFloat32(loaded.rows as Uint16Array);
  // binary16 keeps 11 significant bits: |error| <= 2^-12 for values in [-1, 1].
  assert.ok(maxAbsDiff(values, expectedCenters(stepDir)) <= 2 ** -12);
});

test('centres are byte-identical whatever the chunk size (1 row, 4 rows, whole shards)', () => {
  const stepDir = join(root, 'step-00000200');
  const meta = readMeta(stepDir);
  const whole = join(work, 'chunks', 'whole.safetensors');
  const one = join(work, 'chunks', 'one.safetensors');
  const four = join(work, 'chunks', 'four.safetensors');
  writeCheckpointCenters(stepDir, meta, whole);
  const result = writeCheckpointCenters(stepDir, meta, one, { chunkRows: 1 });
  writeCheckpointCenters(stepDir, meta, four, { chunkRows: 4 });
  assert.deepEqual(result.shardRows, [6, 5]);
  assert.equal(result.bytes, readFileSync(one).length);
  assert.deepEqual(readFileSync(one), readFileSync(whole));
  assert.deepEqual(readFileSync(four), readFileSync(whole));
});

test('a checkpoint whose shard weight has the wrong shape is refused, naming the file, and leaves no output', () => {
  const copy = join(work, 'bad-shard', 'step-00000200');
  cpSync(join(root, 'step-00000200'), copy, { recursive: true });
  tidy(() => saveSafetensors(join(copy, shardFileName(1, 2)), { weight: F.zeros([4, EMB]) }));
  // Recorded in meta.json as if saved so: the shape check, not the digest, is what must refuse it.
  const recorded = JSON.parse(readFileSync(join(copy, 'meta.json'), 'utf8')) as CheckpointMeta;
  writeFileSync(join(copy, 'meta.json'), JSON.stringify({ ...recorded, files: { ...recorded.files, [shardFileName(1, 2)]: digestFile(join(copy, shardFileName(1, 2))) } }));
  const out = join(work, 'bad-shard', 'centers.safetensors');
  assert.throws(() => writeCheckpointCenters(copy, readMeta(copy), out), /fc-rank-1-of-2\.safetensors: tensor 'weight' has shape \[4, 64\], expected \[5, 64\]/);
  assert.ok(!existsSync(out) && !existsSync(`${out}.tmp-${process.pid}`));
});

test('error: a directory without meta.json or step-* checkpoints', async () => {
  const empty = join(work, 'empty');
  mkdirSync(empty, { recursive: true });
  const { result: code, stderr } = await captured(() => exportCommand(['--checkpoint', empty, '--out', join(work, 'x.onnx')]));
  assert.equal(code, 1);
  assert.match(stderr, /empty: neither a checkpoint step directory \(no meta\.json\) nor a checkpoint root/);
  await assert.rejects(exportCheckpoint({ checkpoint: join(work, 'missing'), out: join(work, 'x.onnx') }), /missing: no such directory/);
  assert.ok(!existsSync(join(work, 'x.onnx')));
});

test('error: unknown backbone in meta.json', async () => {
  const copy = join(work, 'unknown', 'step-00000200');
  cpSync(join(root, 'step-00000200'), copy, { recursive: true });
  const meta = JSON.parse(readFileSync(join(copy, 'meta.json'), 'utf8')) as CheckpointMeta;
  meta.backbone = 'resnet-9000';
  meta.config = { ...meta.config, model: 'resnet-9000' };
  writeFileSync(join(copy, 'meta.json'), JSON.stringify(meta));
  const out = join(work, 'unknown', 'model.onnx');
  const { result: code, stderr } = await captured(() => exportCommand(['--checkpoint', copy, '--out', out]));
  assert.equal(code, 1);
  assert.match(stderr, /meta\.json: cannot build backbone 'resnet-9000': .*unknown backbone 'resnet-9000' \(available: .*mobilefacenet/);
  assert.ok(!existsSync(out));
});

test('a checkpoint without its FC shards still exports the model; --centers names the missing shard', async () => {
  const copy = join(work, 'backbone-only', 'step-00000200');
  cpSync(join(root, 'step-00000200'), copy, { recursive: true });
  const meta = JSON.parse(readFileSync(join(copy, 'meta.json'), 'utf8')) as CheckpointMeta;
  for (let r = 0; r < meta.worldSize; r++) rmSync(join(copy, shardFileName(r, meta.worldSize)));
  const out = join(work, 'backbone-only', 'model.onnx');
  const exported = await captured(() => exportCommand(['--checkpoint', copy, '--out', out]));
  assert.equal(exported.result, 0, exported.stderr);
  assert.ok(existsSync(out));
  const centers = join(work, 'backbone-only', 'centers.safetensors');
  const withCenters = await captured(() => exportCommand(['--checkpoint', copy, '--out', join(work, 'backbone-only', 'again.onnx'), '--centers', centers]));
  assert.equal(withCenters.result, 1);
  assert.match(withCenters.stderr, new RegExp(`missing FC shard ${shardFileName(0, meta.worldSize)}`));
  assert.ok(!existsSync(centers) && !existsSync(join(work, 'backbone-only', 'again.onnx')));
});

test('error: weights that do not fit the named backbone', async () => {
  const copy = join(work, 'misfit', 'step-00000200');
  cpSync(join(root, 'step-00000200'), copy, { recursive: true });
  const meta = JSON.parse(readFileSync(join(copy, 'meta.json'), 'utf8')) as CheckpointMeta;
  meta.config = { ...meta.config, model: 'iresnet18' };
  writeFileSync(join(copy, 'meta.json'), JSON.stringify(meta));
  await assert.rejects(exportCheckpoint({ checkpoint: copy, out: join(work, 'misfit', 'model.onnx') }), /backbone\.safetensors: does not fit backbone 'iresnet18'/);
});

test('a graph that disagrees with libtorch fails the parity check and is not written', async () => {
  const fixture = fileURLToPath(new URL('./fixtures/mismatched-backbone.js', import.meta.url));
  const backbone = mismatchedBackbone();
  const customRoot = join(work, 'custom');
  const random = rng(3);
  const weights: [Float32Array, Float32Array] = [randomArray(2 * 8, random), randomArray(2 * 8, random)];
  const config = { model: `${fixture}#mismatchedBackbone`, embSize: 8, imageSize: 4, classNum: 4, lossType: 'dist_arcface' };
  tidy(() => writeCheckpoint(customRoot, 1, backbone.stateDict(), weights, config, config.model));
  backbone.dispose();
  const out = join(work, 'custom', 'model.onnx');
  const { result: code, stderr } = await captured(() => exportCommand(['--checkpoint', customRoot, '--out', out, '--dynamic-batch']));
  assert.equal(code, 1);
  assert.match(stderr, /ONNX parity check failed: max \|onnxruntime - libtorch\| = \S+ over batch 2 exceeds 0\.0001/);
  assert.ok(!existsSync(out));
  const error = await exportCheckpoint({ checkpoint: customRoot, out, dynamicBatch: true }).catch((e: unknown) => e);
  assert.ok(error instanceof ExportParityError);
  assert.ok(error.parity.maxAbsDiff > 1e-4 && error.parity.maxAbsDiff < 1, `${error.parity.maxAbsDiff}`);
  // A looser --tolerance accepts the same graph.
  const loose = await captured(() => exportCommand(['--checkpoint', customRoot, '--out', out, '--dynamic-batch', '--tolerance', '1']));
  assert.equal(loose.result, 0, loose.stderr);
  assert.match(loose.stdout, /tolerance 1;/);
  assert.ok(existsSync(out));
  assert.match(loose.stdout, /plsc serve --model \S*model\.onnx$/);
});

test('usage errors exit 2 without touching anything', async () => {
  for (const argv of [
    ['--out', 'm.onnx'],
    ['--checkpoint', root],
    ['--checkpoint', root, '--out', 'm.onnx', '--opset', '12'],
    ['--checkpoint', root, '--out', 'm.onnx', '--fp16'],
    ['--checkpoint', root, '--out', 'm.onnx', '--dynamic-batch', '--batch-size', '4'],
    ['--checkpoint', root, '--out', 'm.onnx', '--bogus'],
    ['--checkpoint', root, '--out', 'm.onnx', '--tolerance', '-1'],
  ]) {
    const { result: code, stderr } = await captured(() => exportCommand(argv));
    assert.equal(code, 2, argv.join(' '));
    assert.match(stderr, /^plsc export: /);
  }
  const { result: code, stdout } = await captured(() => exportCommand(['--help']));
  assert.equal(code, 0);
  assert.match(stdout, /usage: plsc export --checkpoint DIR --out model\.onnx/);
});
