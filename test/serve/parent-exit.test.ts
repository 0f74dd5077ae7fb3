// `plsc serve` started through npm (npx) or with --exit-with-parent shuts down when its parent
// exits: npm exec does not pass SIGTERM on, so killing npx would otherwise leave the server running.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tinyModel } from './fixtures/images.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Running and not a zombie (a re-parented child is reaped by whoever adopted it, not by us). */
function alive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0] !== 'Z';
  } catch {
    return false;
  }
}

/**
 * Start serve under an intermediate parent, SIGKILL the parent once the server listens (or, with
 * `killWhen: 'starting'`, as soon as serveCommand has begun, before the model is loaded),
 * and report what the server did in `waitMs`.
 */
async function killParentOf(
  args: string[],
  env: NodeJS.ProcessEnv,
  waitMs: number,
  killWhen: 'listening' | 'starting' = 'listening',
): Promise<{ exited: boolean; output: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'plsc-serve-parent-'));
  let servePid = 0;
  try {
    const modelPath = join(dir, 'model.onnx');
    await writeFile(modelPath, tinyModel());
    const parentScript = fileURLToPath(new URL('./fixtures/serve-parent.js', import.meta.url));
    const parent = spawn(process.execPath, [parentScript, '--model', modelPath, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let output = '';
    const listening = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start: ${output}`)), 30_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if ((killWhen === 'starting' ? /serve-cli: entered/ : /listening on http/).test(output)) {
          clearTimeout(timer);
          resolve();
        }
      };
      parent.stdout.on('data', onData);
      parent.stderr.on('data', onData);
    });
    await listening;
    servePid = Number(/serve pid (\d+)/.exec(output)![1]);
    parent.kill('SIGKILL');
    const deadline = Date.now() + waitMs;
    while (alive(servePid) && Date.now() < deadline) await sleep(100);
    // The server keeps writing to the pipe it shares with its dead parent; give the last lines a moment.
    await sleep(200);
    return { exited: !alive(servePid), output };
  } finally {
    if (servePid > 0 && alive(servePid)) process.kill(servePid, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

function envWithout(...names: string[]): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of names) delete env[name];
  return env;
}

test('plsc serve --exit-with-parent shuts down cleanly when its parent is killed', async () => {
  const { exited, output } = await killParentOf(['--exit-with-parent'], envWithout('npm_command'), 15_000);
  assert.ok(exited, `server still running 15 s after its parent died:\n${output}`);
  assert.match(output, /plsc serve: parent process \d+ exited: finishing in-flight requests/);
  assert.match(output, /plsc serve: stopped/);
});

test('plsc serve --exit-with-parent also exits when the parent dies while the model is still loading', async () => {
  const { exited, output } = await killParentOf(['--exit-with-parent'], envWithout('npm_command'), 30_000, 'starting');
  assert.ok(exited, `server still running 30 s after its parent died during start-up:\n${output}`);
  assert.match(output, /plsc serve: parent process \d+ exited/);
});

test('plsc serve started by npm (npm_command set, as npx does) exits with its parent; otherwise it stays', async () => {
  const underNpm = await killParentOf([], { ...envWithout('npm_command'), npm_command: 'exec' }, 15_000);
  assert.ok(underNpm.exited, `server still running 15 s after npx died:\n${underNpm.output}`);
  // Without npm and without the flag the server outlives its parent (as under nohup); it is killed afterwards.
  const plain = await killParentOf([], envWithout('npm_command'), 3_000);
  assert.equal(plain.exited, false, plain.output);
});
