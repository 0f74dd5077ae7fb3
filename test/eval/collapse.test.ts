// Collapsed embeddings (an undertrained backbone mapping every image to the same vector) are named in
// `plsc eval` and in the trainer's validation output instead of passing as accuracy 0.5 ± 0.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { evalCommand } from '../../src/eval/cli.js';
import { collapsedEmbeddingsWarning, embeddingsCollapsed } from '../../src/eval/collapse.js';
import { evaluateVerification } from '../../src/eval/verification.js';
import { writeVerificationBin } from '../../src/data/bin-file.js';
import { SyntheticFaces } from '../../src/data/synthetic.js';
import { encodeRgb } from '../../src/data/image.js';
import { saveSafetensors } from '../../src/torch/safetensors.js';
import { tidy } from '../../src/torch/scope.js';
import { manualSeed } from '../../src/torch/native.js';
import { resolveConfig } from '../../src/config/train-config.js';
import { Trainer } from '../../src/train/trainer.js';
import { ProgressReporter } from '../../src/train/progress.js';
import { ConstantEmbedder } from './fixtures/constant-backbone.js';
import { TinyPoolEmbedder } from './fixtures/tiny-backbone.js';

const SIZE = 16;
const EMB = 8;
const PAIRS = 20;
const fixtures = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

let dir = '';
let bin = '';

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'plsc-collapse-'));
  const faces = new SyntheticFaces({ numClasses: 6, imagesPerClass: 4, size: SIZE, seed: 2 });
  const images: Buffer[] = [];
  const issame: boolean[] = [];
  for (let i = 0; i < PAIRS; i++) {
    const c = i % 6;
    const same = i % 2 === 0;
    images.push(await encodeRgb(faces.render(c * 4), SIZE, SIZE, 'chw', 'png'));
    images.push(await encodeRgb(faces.render(same ? c * 4 + 1 : ((c + 1) % 6) * 4 + 2), SIZE, SIZE, 'chw', 'png'));
    issame.push(same);
  }
  bin = join(dir, 'pairs.bin');
  await writeVerificationBin(bin, images, issame);
});

after(() => rmSync(dir, { recursive: true, force: true }));

test('identical embeddings are reported as collapsed; distinct ones are not', () => {
  const issame = Array.from({ length: PAIRS }, (_, i) => i % 2 === 0);
  const constant = Array.from({ length: 2 * PAIRS }, () => Float32Array.of(0.3, -1, 2));
  const collapsed = evaluateVerification(constant, constant, issame);
  assert.equal(collapsed.accuracy, 0.5);
  assert.equal(collapsed.std, 0);
  assert.equal(embeddingsCollapsed(collapsed), true);
  assert.match(collapsedEmbeddingsWarning(collapsed, 'lfw')!, /^warning: lfw: the embeddings have collapsed: no distance threshold separates same from different pairs, so accuracy 0\.5000 ± 0\.0000 is only the share of the larger pair class/);
  // Pairs of identical images apart from a varying other image: distances spread, not collapsed.
  const spread = Array.from({ length: 2 * PAIRS }, (_, row) => (row % 2 === 0 ? Float32Array.of(1, 0, 0) : Float32Array.of(Math.cos(row / 7), Math.sin(row / 7), 0)));
  const result = evaluateVerification(spread, null, issame);
  assert.equal(embeddingsCollapsed(result), false);
  assert.equal(collapsedEmbeddingsWarning(result, 'lfw'), undefined);
});

test('plsc eval warns on stderr and flags JSON when the backbone outputs a constant', async () => {
  manualSeed(3);
  const run = async (model: TinyPoolEmbedder | ConstantEmbedder, factory: string, json: boolean) => {
    const path = join(dir, `${factory}.safetensors`);
    tidy(() => saveSafetensors(path, model.stateDict(), { model: `${fixtures(`${factory === 'constantBackbone' ? 'constant' : 'tiny'}-backbone.js`)}#${factory}`, embeddingSize: String(EMB), imageSize: String(SIZE) }));
    let out = '';
    let err = '';
    const io = { stdout: { write: (c: string) => ((out += c), true) }, stderr: { write: (c: string) => ((err += c), true) } };
    const code = await evalCommand(['--model', path, '--bin', bin, ...(json ? ['--json'] : [])], io);
    return { code, out, err };
  };
  const constant = await run(new ConstantEmbedder(EMB, SIZE), 'constantBackbone', false);
  assert.equal(constant.code, 0, constant.err);
  assert.match(constant.out, /0\.50000 ± 0\.00000/);
  assert.match(constant.err, /plsc eval: warning: pairs: the embeddings have collapsed/);
  const asJson = await run(new ConstantEmbedder(EMB, SIZE), 'constantBackbone', true);
  assert.equal(JSON.parse(asJson.out.trim()).embeddings_collapsed, true);
  const working = await run(new TinyPoolEmbedder(EMB, SIZE), 'tinyPoolBackbone', true);
  assert.equal(working.code, 0, working.err);
  assert.equal(JSON.parse(working.out.trim()).embeddings_collapsed, false);
  assert.doesNotMatch(working.err, /collapsed/);
});

test("the trainer's validation output warns when the backbone outputs a constant", async () => {
  const config = resolveConfig({
    dataset: { type: 'synthetic', numClasses: 6, imagesPerClass: 4, seed: 1 },
    model: `${fixtures('constant-backbone.js')}#constantBackbone`,
    imageSize: SIZE,
    embSize: EMB,
    trainBatchSize: 4,
    trainSteps: 1,
    valTargets: [bin],
    checkpointDir: join(dir, 'checkpoints'),
    modelSaveDir: join(dir, 'output'),
  });
  const trainer = await Trainer.create(config);
  let printed = '';
  const stream = new Writable({ write: (chunk: Buffer, _encoding, done) => ((printed += chunk.toString()), done()) });
  try {
    const { targets: [result] } = await trainer.validate(new ProgressReporter({ totalSteps: 1, stream, isTTY: false }));
    assert.equal(result!.accuracy, 0.5);
    assert.match(printed, /val step 0\/1: pairs acc 0\.5000/);
    assert.match(printed, /warning: pairs: the embeddings have collapsed/);
  } finally {
    trainer.dispose();
  }
});
