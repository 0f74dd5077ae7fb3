// The package root (src/index.ts): the library API, and every name the README and docs import from
// 'plsc'; no command functions, usage texts, benchmark helpers or the ONNX protobuf codec.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as plsc from '../../src/index.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const exported = new Set(Object.keys(plsc));

/** Value names (not `type X`) of every `import { ... } from 'plsc'` in a markdown file. */
function namesImportedFromPlsc(markdown: string): string[] {
  return [...markdown.matchAll(/import\s*\{([^}]*)\}\s*from\s*'plsc'/g)].flatMap((m) =>
    m[1]!
      .split(',')
      .map((part) => part.trim())
      .filter((part) => part !== '' && !part.startsWith('type '))
      .map((part) => part.split(/\s+as\s+/)[0]!)
      // prose such as `import { ... } from 'plsc'` names no export
      .filter((name) => /^[A-Za-z_$][\w$]*$/.test(name)),
  );
}

test('every name the README and docs/ import from plsc is exported by the package root', () => {
  const pages = ['README.md', ...readdirSync(`${ROOT}docs`).filter((n) => n.endsWith('.md')).map((n) => `docs/${n}`)];
  const missing: string[] = [];
  let checked = 0;
  for (const page of pages) {
    for (const name of namesImportedFromPlsc(readFileSync(`${ROOT}${page}`, 'utf8'))) {
      checked++;
      if (!exported.has(name)) missing.push(`${page}: ${name}`);
    }
  }
  assert.ok(checked > 20, `only ${checked} imported names found in the docs`);
  assert.deepEqual(missing, []);
});

test('the package root exports the library by area', () => {
  const byArea: Record<string, string[]> = {
    engine: ['Tensor', 'ops', 'tidy', 'noGrad', 'nn', 'optim', 'Module', 'saveSafetensors', 'loadSafetensors'],
    distributed: ['initProcessGroup', 'allReduce', 'DataParallel', 'launch'],
    head: ['PartialFC', 'CombinedMarginLoss'],
    models: ['createBackbone', 'registerBackbone', 'exportOnnx', 'exportCenters'],
    data: ['ListFileSource', 'RecordIOSource', 'DataLoader', 'openTrainingData', 'convertDataset', 'readVerificationBin'],
    training: ['Entry', 'Trainer', 'resolveConfig', 'readMeta', 'saveCheckpoint', 'reshardCheckpoint', 'growCheckpoint'],
    evaluation: ['verifyBin', 'evaluateVerification', 'evaluateIdentification', 'loadBackboneForEval', 'classifyDataset'],
    export: ['exportCheckpoint', 'writeCheckpointCenters', 'OnnxGraphBuilder'],
    serving: ['createServer', 'startServer', 'PlscClient', 'loadClassCenters'],
  };
  for (const [area, names] of Object.entries(byArea)) {
    for (const name of names) assert.ok(exported.has(name), `${area}: ${name} is not exported`);
  }
});

test('no command function, usage text, benchmark helper or protobuf codec is exported', () => {
  const leaked = [...exported].filter(
    (name) => /Command$/.test(name) || /_USAGE$/.test(name) || ['runCommand', 'parseLaunchArgs', 'buildTinyFaceModel', 'encodeModelProto', 'decodeModelProto'].includes(name),
  );
  assert.deepEqual(leaked, []);
});
