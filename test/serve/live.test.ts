// Tests over real loopback sockets: the typed client, graceful shutdown and the CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PlscClient, PlscHttpError } from '../../src/serve/client.js';
import { startServer } from '../../src/serve/server.js';
import { classCentersFromArray } from '../../src/centers/centers.js';
import { b64, patternImage, tinyModel } from './fixtures/images.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('PlscClient talks to a live server on 127.0.0.1 (port 0)', async () => {
  const dim = 16;
  const rows = new Float32Array(40 * dim).map((_, i) => Math.cos(i * 0.37));
  const { server, url } = await startServer({ modelPath: tinyModel(), port: 0, centers: classCentersFromArray(rows, 40, dim), token: 'tok', maxWaitMs: 1 });
  try {
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(new URL(url).port, '8866');
    const client = new PlscClient({ baseUrl: `${url}/`, token: 'tok' });
    const [first, second] = await Promise.all([patternImage(1), patternImage(2)]);
    const health = await client.health();
    assert.equal(health.status, 'ok');
    assert.deepEqual(health.model, { input: [3, 32, 32], embeddingDim: dim });
    assert.equal(health.classes, 40);
    const raw = await client.embed([first!, b64(second!)]);
    assert.equal(raw.length, 2);
    assert.equal(raw[0]!.length, dim);
    const unit = await client.embed([first!], { normalize: true });
    assert.ok(Math.abs(Math.hypot(...unit[0]!) - 1) < 1e-5);
    const verdict = await client.verify(first!, first!);
    assert.ok(Math.abs(verdict.similarity - 1) < 1e-5);
    assert.equal(verdict.same, true);
    const classes = await client.classify([first!, second!], 4);
    assert.equal(classes.length, 2);
    assert.equal(classes[0]!.length, 4);
    assert.ok(classes[0]![0]!.score >= classes[0]![3]!.score);
    assert.match(await client.metrics(), /plsc_http_requests_total\{route="\/v1\/classify",method="POST",status="200"\} 1/);
    await assert.rejects(client.embed(['not base64!']), (error: unknown) => error instanceof PlscHttpError && error.status === 400 && /images\[0\] is not valid base64/.test(error.message));
    await assert.rejects(client.classify([first!], 1000), (error: unknown) => error instanceof PlscHttpError && error.status === 400 && /'k' must be an integer in 1\.\.40/.test(error.message));
    const anonymous = new PlscClient({ baseUrl: url });
    await assert.rejects(anonymous.embed([first!]), (error: unknown) => error instanceof PlscHttpError && error.status === 401);
    assert.equal((await anonymous.health()).status, 'ok');
  } finally {
    await server.close();
  }
});

test('close() finishes an in-flight request, refuses new ones, then releases the model', async () => {
  const { server, url } = await startServer({ modelPath: tinyModel(), port: 0, maxBatch: 64, maxWaitMs: 400 });
  const body = JSON.stringify({ images: [b64(await patternImage(3))] });
  const inFlight = fetch(`${url}/v1/embed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  while (server.queueDepth === 0) await sleep(2);
  const closing = server.close();
  await sleep(20);
  // New connections are refused (or answered 503 while the listener winds down).
  const late = await fetch(`${url}/healthz`).then((r) => r.status, () => 'refused');
  assert.ok(late === 'refused' || late === 503, `late request got ${late}`);
  const response = await inFlight;
  assert.equal(response.status, 200);
  const json = (await response.json()) as { embeddings: number[][] };
  assert.equal(json.embeddings[0]!.length, 16);
  await closing;
  await server.close(); // idempotent
});

async function readLine(stream: NodeJS.ReadableStream, pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  let buffered = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; got: ${buffered}`)), timeoutMs);
    stream.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const match = pattern.exec(buffered);
      if (match) {
        clearTimeout(timer);
        resolve(match);
      }
    });
  });
}

test('plsc serve (CLI) drains an in-flight request on SIGTERM and exits 0', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'plsc-serve-cli-'));
  try {
    const modelPath = join(dir, 'model.onnx');
    await writeFile(modelPath, tinyModel());
    const script = fileURLToPath(new URL('./fixtures/serve-cli.js', import.meta.url));
    const child = spawn(process.execPath, [script, '--model', modelPath, '--port', '0', '--max-wait-ms', '500', '--max-batch', '64'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [, url] = await readLine(child.stdout, /listening on (http:\/\/127\.0\.0\.1:\d+)/, 20_000);
    const body = JSON.stringify({ images: [b64(await patternImage(4))] });
    const inFlight = fetch(`${url}/v1/embed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    for (let depth = 0; depth === 0; ) {
      depth = ((await (await fetch(`${url}/healthz`)).json()) as { queueDepth: number }).queueDepth;
      if (depth === 0) await sleep(5);
    }
    child.kill('SIGTERM');
    const response = await inFlight;
    assert.equal(response.status, 200);
    assert.equal(((await response.json()) as { embeddings: number[][] }).embeddings.length, 1);
    assert.equal(await exited, 0, stderr);
    assert.match(stderr, /SIGTERM: finishing in-flight requests/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('plsc serve (CLI) rejects bad flags with usage and exit code 2', async () => {
  const script = fileURLToPath(new URL('./fixtures/serve-cli.js', import.meta.url));
  for (const args of [['--port', '1'], ['--model', 'm.onnx', '--bogus']]) {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.equal(code, 2, `${args.join(' ')}: ${stderr}`);
    assert.match(stderr, /--model is required|Unknown option '--bogus'/);
  }
});
