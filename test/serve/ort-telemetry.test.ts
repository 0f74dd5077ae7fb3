import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'ort-session.js');
const telemetryFile = /^mat-debug-\d+\.log$|\.ses$/;

/** Runs one onnxruntime session in a child with its own empty TMPDIR: what it left there, and the telemetry setting it ran with. */
async function runSession(mode: 'plsc' | 'bare'): Promise<{ left: string[]; telemetrySetting: string }> {
  const temp = await mkdtemp(join(tmpdir(), 'plsc-ort-tmp-'));
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: temp };
    delete env.ORT_DISABLE_TELEMETRY;
    const { stdout } = await promisify(execFile)(process.execPath, [fixture, mode], { env });
    const setting = /ORT_DISABLE_TELEMETRY=(\S*)/.exec(stdout);
    assert.ok(setting, `fixture printed no telemetry setting: ${stdout}`);
    return { left: (await readdir(temp)).sort(), telemetrySetting: setting[1]! };
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

test('an onnxruntime session run through plsc runs with telemetry off and leaves no mat-debug-PID.log or .ses in the temp folder', async (t) => {
  const plsc = await runSession('plsc');
  assert.equal(plsc.telemetrySetting, '1', 'plsc must set ORT_DISABLE_TELEMETRY before onnxruntime-node loads');
  assert.deepEqual(plsc.left.filter((name) => telemetryFile.test(name)), [], `plsc's session left: ${plsc.left.join(', ')}`);
  // The cause, for the record: onnxruntime's telemetry client writes these files when nothing turns it
  // off. Whether it does depends on the machine (seen here; not on every CI machine), so it is reported, not asserted.
  const bare = await runSession('bare');
  assert.equal(bare.telemetrySetting, '', 'the bare run must not have telemetry turned off');
  t.diagnostic(`bare onnxruntime left in its temp folder: ${bare.left.join(', ') || 'nothing'}`);
});
