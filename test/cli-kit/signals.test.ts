// withStopSignals, in a child process: the first signal aborts the work, a second exits at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const signalsModule = fileURLToPath(new URL('../../src/cli-kit/signals.js', import.meta.url));

test('first SIGINT aborts the work; a second one exits with 130 while the work still runs', async () => {
  // The work notices the abort but keeps going (as a launcher waiting out its workers' grace period).
  const script = `
    import { withStopSignals } from ${JSON.stringify(signalsModule)};
    setInterval(() => {}, 1000);
    await withStopSignals((signal) => new Promise(() => {
      signal.addEventListener('abort', () => console.log('aborted by ' + signal.reason));
      console.log('ready');
    }));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const ready = new Promise<void>((resolve) =>
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('ready')) resolve();
    }),
  );
  await Promise.race([ready, exited.then((code) => assert.fail(`the child exited (${code}) before it was ready: ${out}`))]);
  child.kill('SIGINT');
  const deadline = Date.now() + 20_000;
  while (!out.includes('aborted by SIGINT') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.match(out, /aborted by SIGINT/);
  child.kill('SIGINT');
  assert.equal(await exited, 130);
});
