// Corrupt checkpoints never load: a flipped bit fails the sha256 meta.json records (resume, eval,
// export, reshard, serve centres), NaN/Inf is an error naming file and tensor, and checkpoints saved
// before digests were recorded still load, with a note.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  Trainer,
  readMeta,
  digestFile,
  reshardCheckpoint,
  loadBackboneForEval,
  exportCheckpoint,
  writeCheckpointCenters,
} from '../../src/index.js';
import { evalCommand } from '../../src/eval/cli.js';
import { main } from '../../src/cli/main.js';
import { captured } from '../helpers/capture-console.js';
import { capturingWarnings, dropDigests, flipExponentBit, recordCurrentDigests, scratch, tinyConfig, trainTiny, writeNaN } from './fixtures/tiny-run.js';

test('meta.json records the sha256 and size of every checkpoint file; no digest sidecars are left behind', async () => {
  const dir = scratch();
  const checkpoint = await trainTiny(tinyConfig(dir, { lossType: 'arcface' }));
  const meta = readMeta(checkpoint);
  assert.deepEqual(Object.keys(meta.files ?? {}).sort(), ['backbone.safetensors', 'fc-rank-0-of-1.safetensors', 'optimizer.safetensors']);
  for (const [name, recorded] of Object.entries(meta.files ?? {})) assert.deepEqual(recorded, digestFile(join(checkpoint, name)), name);
  assert.deepEqual(readdirSync(checkpoint).sort(), ['backbone.safetensors', 'fc-rank-0-of-1.safetensors', 'meta.json', 'optimizer.safetensors']);
  rmSync(dir, { recursive: true, force: true });
});

test('one flipped exponent bit in backbone.safetensors is caught by resume, eval (library and CLI) and export (library and CLI)', async () => {
  const dir = scratch();
  const config = tinyConfig(dir);
  const checkpoint = await trainTiny(config);
  const backboneFile = join(checkpoint, 'backbone.safetensors');
  flipExponentBit(backboneFile);
  const corrupt = new RegExp(`${backboneFile.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is corrupt: its sha256`);
  await assert.rejects(Trainer.create({ ...config, resume: 'latest' }), corrupt);
  await assert.rejects(loadBackboneForEval({ checkpoint }), corrupt);
  await assert.rejects(exportCheckpoint({ checkpoint, out: join(dir, 'model.onnx') }), corrupt);
  assert.equal(existsSync(join(dir, 'model.onnx')), false);

  const bin = join(dir, 'pairs.bin');
  writeFileSync(bin, 'never read: the model fails first');
  const evalErrors: string[] = [];
  const evalCode = await evalCommand(['--checkpoint', checkpoint, '--bin', bin], { stdout: { write: () => true }, stderr: { write: (text: string) => evalErrors.push(text) } });
  assert.equal(evalCode, 1);
  assert.match(evalErrors.join(''), corrupt);
  const exportRun = await captured(() => main(['export', '--checkpoint', checkpoint, '--out', join(dir, 'model.onnx')]));
  assert.equal(exportRun.result, 1);
  assert.match(exportRun.stderr, corrupt);
  rmSync(dir, { recursive: true, force: true });
});

test('a flipped bit in an FC shard is caught by resume, reshard and the serve centres export; a truncated shard by its size', async () => {
  const dir = scratch();
  const config = tinyConfig(dir, { lossType: 'arcface' });
  const checkpoint = await trainTiny(config);
  const shard = join(checkpoint, 'fc-rank-0-of-1.safetensors');
  flipExponentBit(shard, 'weight');
  const corrupt = /fc-rank-0-of-1\.safetensors is corrupt: its sha256 [0-9a-f]{16}\.\.\. differs from the [0-9a-f]{16}\.\.\. that meta\.json records/;
  await assert.rejects(Trainer.create({ ...config, resume: checkpoint }), corrupt);
  assert.throws(() => reshardCheckpoint(checkpoint, 2, join(dir, 'two')), corrupt);
  assert.equal(existsSync(join(dir, 'two')), false);
  assert.equal(existsSync(join(dir, 'two.tmp-reshard')), false, 'a failed reshard leaves no half-written folder');
  assert.throws(() => writeCheckpointCenters(checkpoint, readMeta(checkpoint), join(dir, 'centers.safetensors')), corrupt);
  assert.equal(existsSync(join(dir, 'centers.safetensors')), false);
  flipExponentBit(shard, 'weight');
  const { truncateSync, statSync } = await import('node:fs');
  truncateSync(shard, statSync(shard).size - 4);
  assert.throws(() => reshardCheckpoint(checkpoint, 2, join(dir, 'two')), /fc-rank-0-of-1\.safetensors has \d+ bytes but meta\.json records \d+: it was truncated or replaced/);
  assert.equal(existsSync(join(dir, 'two.tmp-reshard')), false);
  rmSync(dir, { recursive: true, force: true });
});

test('NaN in loaded weights is an error naming the file and the tensor (resume, eval, export, centres, a --model file)', async () => {
  const dir = scratch();
  const config = tinyConfig(dir, { lossType: 'arcface' });
  const checkpoint = await trainTiny(config);
  const backboneFile = join(checkpoint, 'backbone.safetensors');
  const tensor = writeNaN(backboneFile);
  // As if saved from a run whose weights had already turned NaN: the digests match, the values do not.
  recordCurrentDigests(checkpoint);
  const named = new RegExp(`backbone\\.safetensors: tensor '${tensor.replace(/\./g, '\\.')}' holds 1 non-finite value \\(1 NaN, 0 Inf\\)`);
  await assert.rejects(Trainer.create({ ...config, resume: 'latest' }), named);
  await assert.rejects(loadBackboneForEval({ checkpoint }), named);
  await assert.rejects(exportCheckpoint({ checkpoint, out: join(dir, 'model.onnx') }), named);

  const shard = join(checkpoint, 'fc-rank-0-of-1.safetensors');
  writeNaN(shard, 'weight');
  recordCurrentDigests(checkpoint);
  assert.throws(() => writeCheckpointCenters(checkpoint, readMeta(checkpoint), join(dir, 'centers.safetensors')), /fc-rank-0-of-1\.safetensors: tensor 'weight \(rows 0 to \d+\)' holds 1 non-finite value/);

  const modelFile = join(config.modelSaveDir, 'backbone.safetensors');
  const modelTensor = writeNaN(modelFile);
  await assert.rejects(loadBackboneForEval({ model: modelFile }), new RegExp(`output/backbone\\.safetensors: tensor '${modelTensor.replace(/\./g, '\\.')}' holds 1 non-finite`));
  rmSync(dir, { recursive: true, force: true });
});

test('a checkpoint saved before digests were recorded still resumes and loads for eval, with a note; its values are still checked', async () => {
  const dir = scratch();
  const config = tinyConfig(dir);
  const checkpoint = await trainTiny(config);
  dropDigests(checkpoint);
  const { warnings } = await capturingWarnings(async () => {
    const trainer = await Trainer.create({ ...config, resume: 'latest', trainSteps: 3 });
    assert.equal(trainer.step, 2);
    trainer.dispose();
  });
  assert.match(warnings, /checkpoint .*step-00000002 records no file digests \(written before plsc recorded them\): its files are loaded unverified; values are still checked finite/);
  const loaded = await loadBackboneForEval({ checkpoint });
  loaded.backbone.dispose();
  writeNaN(join(checkpoint, 'backbone.safetensors'));
  await assert.rejects(loadBackboneForEval({ checkpoint }), /backbone\.safetensors: tensor '.*' holds 1 non-finite value/);
  rmSync(dir, { recursive: true, force: true });
});

test('a file added to a checkpoint after the save is refused; reshard writes digests of its own files', async () => {
  const dir = scratch();
  const config = tinyConfig(dir, { lossType: 'arcface' });
  const checkpoint = await trainTiny(config);
  const resharded = join(dir, 'resharded');
  const meta = reshardCheckpoint(checkpoint, 2, resharded);
  assert.deepEqual(Object.keys(meta.files ?? {}).sort(), ['backbone.safetensors', 'fc-rank-0-of-2.safetensors', 'fc-rank-1-of-2.safetensors', 'optimizer.safetensors']);
  for (const [name, recorded] of Object.entries(readMeta(resharded).files ?? {})) assert.deepEqual(recorded, digestFile(join(resharded, name)), name);
  // A checkpoint missing its optimizer state in the digests but holding the file: refused on resume.
  const { readFileSync } = await import('node:fs');
  const metaPath = join(checkpoint, 'meta.json');
  const edited = JSON.parse(readFileSync(metaPath, 'utf8')) as { files: Record<string, unknown> };
  delete edited.files['optimizer.safetensors'];
  writeFileSync(metaPath, JSON.stringify(edited));
  await assert.rejects(Trainer.create({ ...config, resume: checkpoint }), /optimizer\.safetensors is not listed in .*meta\.json .*: it was added after the save/);
  rmSync(dir, { recursive: true, force: true });
});
