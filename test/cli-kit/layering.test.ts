// Where the command kit and the benchmarks sit: nothing under src/ imports bench/, and the kit
// (src/cli-kit) imports nothing from src/ outside itself, so every area's command can use it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** The repository paths that `file`'s relative imports (static, export-from and dynamic) name. */
function importedPaths(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specifiers = [...text.matchAll(/\bfrom\s+'(\.[^']*)'|\bimport\s*\(\s*'(\.[^']*)'\s*\)|^import\s+'(\.[^']*)'/gm)].map((m) => (m[1] ?? m[2] ?? m[3]) as string);
  return specifiers.map((specifier) => relative(repoRoot, resolve(dirname(file), specifier)));
}

test('the import scan sees static, export-from and dynamic imports', () => {
  const main = importedPaths(join(repoRoot, 'src/cli/commands.ts'));
  assert.ok(main.includes('src/distributed/cli.js') && main.includes('src/cli/info.js'), main.join(', '));
  const env = importedPaths(join(repoRoot, 'src/distributed/env.ts'));
  assert.ok(env.includes('src/cli-kit/failure.js'), env.join(', '));
});

test('no file under src/ imports bench/', () => {
  const offenders = sourceFiles(join(repoRoot, 'src')).flatMap((file) =>
    importedPaths(file).filter((path) => path.startsWith('bench/')).map((path) => `${relative(repoRoot, file)} -> ${path}`),
  );
  assert.deepEqual(offenders, []);
});

test('src/cli-kit imports nothing from src/ outside itself', () => {
  const offenders = sourceFiles(join(repoRoot, 'src/cli-kit')).flatMap((file) =>
    importedPaths(file).filter((path) => !path.startsWith('src/cli-kit/')).map((path) => `${relative(repoRoot, file)} -> ${path}`),
  );
  assert.deepEqual(offenders, []);
});
