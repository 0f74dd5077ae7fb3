// valDatasets: held-out classification accuracy at every validation, equal to what
// `plsc eval --classify` computes from the same step's checkpoint (1 worker and 2 class shards).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Entry, listCheckpoints, resolveConfig, ConfigError } from '../../src/index.js';
import { evalCommand } from '../../src/eval/cli.js';
import { SyntheticFaces } from '../../src/data/synthetic.js';
import { encodeRgb } from '../../src/data/image.js';

const tinyBackbone = `${fileURLToPath(new URL('./fixtures/tiny-backbone.js', import.meta.url))}#createTinyBackbone`;
const CLASSES = 20;
let dir = '';
let heldOut = '';

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'plsc-valds-'));
  // Held out: images 6 and 7 of each identity; training uses images 0-5 (same seed).
  const faces = new SyntheticFaces({ numClasses: CLASSES, imagesPerClass: 8, seed: 2, size: 16 });
  heldOut = join(dir, 'holdout');
  mkdirSync(heldOut);
  const lines: string[] = [];
  for (let c = 0; c < CLASSES; c++) {
    for (const k of [6, 7]) {
      const index = c * 8 + k;
      writeFileSync(join(heldOut, `${index}.png`), await encodeRgb(faces.render(index), 16, 16, 'chw', 'png'));
      lines.push(`${index}.png ${c}`);
    }
  }
  writeFileSync(join(heldOut, 'label.txt'), lines.join('\n') + '\n');
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function entry(out: string, workers: number): Entry {
  return new Entry()
    .setDataset({ type: 'synthetic', numClasses: CLASSES, imagesPerClass: 6, seed: 2 })
    .setModel(tinyBackbone)
    .setImageSize(16)
    .setEmbSize(32)
    .setTrainBatchSize(10)
    .setTrainSteps(12)
    .setLr(2.0)
    .setScale(16)
    .setValTargets([])
    .setValDatasets([{ name: 'holdout', path: join(heldOut, 'label.txt') }])
    .setTestPeriod(6)
    .setCheckpointPeriod(6)
    .setWorkers(workers)
    .setCheckpointDir(join(out, 'checkpoints'))
    .setModelSaveDir(join(out, 'output'));
}

async function evalClassify(checkpoint: string): Promise<{ top1: number; top5: number; images: number }> {
  let out = '';
  const code = await evalCommand(['--checkpoint', checkpoint, '--classify', '--data', join(heldOut, 'label.txt'), '--json'], {
    stdout: { write: (c: string) => ((out += c), true) },
    stderr: { write: () => true },
  });
  assert.equal(code, 0, out);
  return JSON.parse(out) as { top1: number; top5: number; images: number };
}

for (const workers of [1, 2]) {
  test(`valDatasets with ${workers} worker(s): top-1/top-5 at each validation in metrics.jsonl and the report, equal to plsc eval --classify`, async () => {
    const out = join(dir, `w${workers}`);
    const result = await entry(out, workers).train();
    assert.equal(result.finalStep, 12);
    assert.equal(result.classification.length, 1);
    const final = result.classification[0]!;
    assert.equal(final.target, 'holdout');
    assert.equal(final.images, 2 * CLASSES);

    const records = readFileSync(join(out, 'output', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { type?: string; step: number; results?: { target: string; top1: number; top5: number; images: number }[] })
      .filter((r) => r.type === 'classification');
    assert.deepEqual(records.map((r) => r.step), [6, 12]);
    assert.equal(records[1]!.results![0]!.top1, final.top1);

    // The same numbers from the checkpoints written at those steps, through the offline command.
    const checkpoints = listCheckpoints(join(out, 'checkpoints'));
    for (const record of records) {
      const checkpoint = checkpoints.find((c) => c.step === record.step)!;
      const offline = await evalClassify(checkpoint.path);
      assert.deepEqual({ top1: offline.top1, top5: offline.top5, images: offline.images }, { top1: record.results![0]!.top1, top5: record.results![0]!.top5, images: 2 * CLASSES }, `step ${record.step}`);
    }
    // Training on these identities helps: the held-out images of the trained identities are mostly recognized.
    assert.ok(final.top5 > 0.5, `top-5 ${final.top5}`);

    const report = readFileSync(join(out, 'output', 'training-report.html'), 'utf8');
    assert.match(report, /Held-out classification accuracy/);
    assert.match(report, /holdout top-1/);
  });
}

test('valDatasets config: paths or { name, path, format }, errors name the entry', () => {
  const config = resolveConfig({ valDatasets: ['data/val/label.txt', { name: 'v2', path: 'val.rec', format: 'rec' }] });
  assert.deepEqual(config.valDatasets, [
    { name: 'label', path: 'data/val/label.txt', format: 'auto' },
    { name: 'v2', path: 'val.rec', format: 'rec' },
  ]);
  assert.throws(() => resolveConfig({ valDatasets: [{ path: 'x', format: 'csv' }] }), (err: unknown) => err instanceof ConfigError && /valDatasets\[0\]\.format: must be one of list, rec, folder, base64, auto/.test(err.message));
  assert.throws(() => resolveConfig({ valDatasets: [{ name: 'x' }] }), /valDatasets\[0\]\.path: must be a non-empty string/);
  assert.throws(() => resolveConfig({ valDatasets: [{ path: 'x', pth: 'y' }] }), /valDatasets\[0\]\.pth: unknown key/);
});
