// The eval paths embed with the backbone's BN-folded inference form: none of the trained model's
// BatchNorm modules runs, and the results equal those of the unfolded eval forward.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SyntheticFaces, createBackbone, makeVerificationBin, manualSeed, nn, noGrad, type Backbone, type Tensor } from '../../src/index.js';
import { backboneEmbedFunction, verifyBin } from '../../src/eval/backbone-verification.js';
import { embedLoadedImages } from '../../src/eval/embed-loaded.js';
import { evaluateVerification } from '../../src/eval/verification.js';
import { readVerificationBin } from '../../src/data/bin-file.js';
import { decodeToRgb } from '../../src/data/image.js';

const SIZE = 32;
const work = mkdtempSync(join(tmpdir(), 'plsc-folded-embedding-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** Counts calls of every BatchNorm module of `model` (instance-level wrappers, removed by the returned function). */
function countBatchNormCalls(model: Backbone): { calls: () => number; restore: () => void } {
  let calls = 0;
  const patched: nn.BatchNorm2d[] = [];
  for (const module of model.modules()) {
    if (!(module instanceof nn.BatchNorm2d || module instanceof nn.BatchNorm1d)) continue;
    const original = module.forward.bind(module);
    module.forward = (x: Tensor): Tensor => {
      calls++;
      return original(x);
    };
    patched.push(module as nn.BatchNorm2d);
  }
  return {
    calls: () => calls,
    restore: () => {
      for (const module of patched) delete (module as { forward?: unknown }).forward;
    },
  };
}

test('verifyBin embeds through the folded form: no BatchNorm module of the model runs, same result as the unfolded embeddings', async () => {
  manualSeed(51);
  const faces = new SyntheticFaces({ numClasses: 12, imagesPerClass: 3, size: SIZE, seed: 7 });
  const bin = await makeVerificationBin({ source: faces, pairs: 24, out: join(work, 'pairs.bin'), size: SIZE, format: 'png', seed: 1 });
  const model = createBackbone('mobilefacenet', { inputSize: SIZE, embeddingSize: 16 });
  try {
    noGrad(() => {
      for (const module of model.modules()) {
        if (module instanceof nn.BatchNorm2d || module instanceof nn.BatchNorm1d) {
          module.runningMean?.normal_(0, 0.2);
          module.runningVar?.uniform_(0.5, 1.5);
        }
      }
    });
    const counter = countBatchNormCalls(model);
    try {
      const folded = await verifyBin(model, bin.path, { batchSize: 10 });
      assert.equal(counter.calls(), 0, 'the trained BatchNorm modules are not called');
      assert.equal(model.training, true, 'the mode is restored');
      // The reference: the model's own eval forward, on the images as verifyBin decodes them.
      model.eval();
      const pairs = await readVerificationBin(bin.path);
      const load = (i: number): Promise<Uint8Array> => decodeToRgb(pairs.images[i] as Uint8Array, SIZE, SIZE);
      const reference = await embedLoadedImages(pairs.images.length, load, backboneEmbedFunction(model), { height: SIZE, width: SIZE, batchSize: 10 });
      assert.ok(counter.calls() > 0, 'the unfolded forward calls them (so the counter counts)');
      const expected = evaluateVerification(reference.original, reference.flipped, pairs.issame);
      assert.ok(Math.abs(folded.xnorm - expected.xnorm) <= 1e-5 * expected.xnorm, `XNorm ${folded.xnorm} vs ${expected.xnorm}`);
      assert.equal(folded.accuracy, expected.accuracy);
    } finally {
      counter.restore();
    }
  } finally {
    model.dispose();
  }
});
