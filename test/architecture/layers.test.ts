// The layer table of docs/architecture.md, checked against every import in src/: a module imports
// only the modules below it that the table names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, posix, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../../src/', import.meta.url));

/** What each module under src/ may import from src/ (itself always). */
const MAY_IMPORT: Record<string, readonly string[]> = {
  util: [],
  'cli-kit': [],
  torch: ['util'],
  onnx: ['util'],
  distributed: ['util', 'torch', 'cli-kit'],
  data: ['util', 'torch'],
  head: ['util', 'torch', 'distributed', 'data'],
  models: ['util', 'torch', 'onnx'],
  centers: ['util', 'torch', 'onnx'],
  config: ['util', 'torch', 'head', 'data'],
  checkpoint: ['util', 'torch', 'head', 'data', 'models', 'config'],
  export: ['util', 'torch', 'onnx', 'models', 'config', 'checkpoint'],
  eval: ['util', 'torch', 'data', 'models', 'centers', 'config', 'checkpoint'],
  train: ['util', 'cli-kit', 'torch', 'distributed', 'data', 'onnx', 'head', 'models', 'centers', 'config', 'checkpoint', 'export', 'eval'],
  serve: ['util', 'torch', 'data', 'onnx', 'models', 'centers', 'config', 'checkpoint', 'export'],
};
/** The commands (src/cli and every area's cli.ts / *-cli.ts) and the package root may import any module. */
const TOP = new Set(['cli', 'index.ts']);
const isCommandFile = (path: string): boolean => /(^|\/|-)cli\.ts$/.test(path);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return name.endsWith('.ts') ? [full] : [];
  });
}

/** Relative specifiers of static imports, re-exports, side-effect imports and import() calls. */
function relativeImports(source: string): string[] {
  const pattern = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)'(\.{1,2}\/[^']+)'/g;
  return [...source.matchAll(pattern)].map((m) => m[1]!);
}

/** src/eval/cli.ts -> eval; src/index.ts -> index.ts. */
function moduleOf(pathInSrc: string): string {
  return pathInSrc.split('/')[0]!;
}

function violations(): string[] {
  const found: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const pathInSrc = relative(SRC, file).split('\\').join('/');
    const from = moduleOf(pathInSrc);
    if (TOP.has(from) || isCommandFile(pathInSrc)) continue;
    const allowed = MAY_IMPORT[from];
    if (allowed === undefined) {
      found.push(`src/${from}/ is not in the layer table (docs/architecture.md and this test)`);
      continue;
    }
    for (const spec of relativeImports(readFileSync(file, 'utf8'))) {
      const target = posix.normalize(posix.join(posix.dirname(pathInSrc), spec));
      if (target.startsWith('../')) {
        found.push(`src/${pathInSrc} imports ${spec}, outside src/`);
        continue;
      }
      const to = moduleOf(target);
      if (to !== from && !allowed.includes(to)) found.push(`src/${pathInSrc} imports src/${target}: ${from} may import ${allowed.join(', ') || 'nothing in src'}`);
    }
  }
  return found;
}

test('every import in src/ follows the layer table (eval, serve, models and data import nothing from train)', () => {
  assert.deepEqual(violations(), []);
});

test('the import reader sees static, side-effect, re-export and dynamic imports', () => {
  const source = [
    "import { a } from './a.js';",
    "import '../onnx/ort-telemetry.js';",
    "export * from './b.js';",
    "const m = await import('../train/trainer.js');",
    "import {\n  c,\n} from '../c/c.js';",
    "import sharp from 'sharp';",
  ].join('\n');
  assert.deepEqual(relativeImports(source), ['./a.js', '../onnx/ort-telemetry.js', './b.js', '../train/trainer.js', '../c/c.js']);
});

test('the table names only modules that exist, so a renamed folder cannot leave a rule that checks nothing', () => {
  const modules = readdirSync(SRC).filter((name) => statSync(join(SRC, name)).isDirectory());
  for (const name of Object.keys(MAY_IMPORT)) assert.ok(modules.includes(name), `src/${name}/ is in the table but not in src/`);
});
