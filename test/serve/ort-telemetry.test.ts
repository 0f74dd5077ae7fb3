import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'ort-session.js');

/** Files a child running one onnxruntime session leaves in its own empty TMPDIR. */
async function leftInTemp(mode: 'plsc' | 'bare'): Promise<string[]> {
  const temp = await mkdtemp(join(tmpdir(), 'plsc-ort-tmp-'));
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: temp };
    delete env.ORT_DISABLE_TELEMETRY;
    await promisify(execFile)(process.execPath, [fixture, mode], { env });
    return (await readdir(temp)).sort();
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

test('an onnxruntime session run through plsc leaves no mat-debug-PID.log or .ses in the temp folder', async () => {
  // The cause, shown: onnxruntime's telemetry client writes both files when nothing turns it off.
  const bare = await leftInTemp('bare');
  assert.ok(bare.some((name) => /^mat-debug-\d+\.log$/.test(name)), `bare onnxruntime left: ${bare.join(', ')}`);
  assert.deepEqual(await leftInTemp('plsc'), []);
});
