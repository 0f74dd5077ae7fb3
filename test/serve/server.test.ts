import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type PlscServer } from '../../src/serve/server.js';
import { EmbeddingModel } from '../../src/serve/model.js';
import { classCentersFromArray } from '../../src/centers/centers.js';
import { decodeImageToTensor } from '../../src/serve/preprocess.js';
import { b64, patternImage, solidPng, tinyModel } from './fixtures/images.js';

interface InjectResult {
  status: number;
  json: Record<string, unknown>;
  text: string;
  headers: Record<string, unknown>;
}

async function call(server: PlscServer, method: 'GET' | 'POST', url: string, payload?: unknown, headers: Record<string, string> = {}): Promise<InjectResult> {
  const response = await server.app.inject({
    method,
    url,
    headers,
    ...(payload !== undefined ? { payload: payload as string } : {}),
  });
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(response.body) as Record<string, unknown>;
  } catch {
    // not JSON (metrics)
  }
  return { status: response.statusCode, json, text: response.body, headers: response.headers };
}

function norm(vector: number[]): number {
  return Math.sqrt(vector.reduce((sum, v) => sum + v * v, 0));
}

function assertBadRequest(result: InjectResult, pattern: RegExp, status = 400): void {
  assert.equal(result.status, status, result.text);
  assert.equal(result.json.statusCode, status);
  assert.match(String(result.json.message), pattern);
}

describe('plsc serve routes', () => {
  let server: PlscServer;
  let images: Buffer[];
  let reference: EmbeddingModel;
  const classCount = 50;
  before(async () => {
    images = await Promise.all([0, 1, 2, 3].map((seed) => patternImage(seed)));
    // Class centres: class 10 + i is image i's own embedding, the rest random.
    reference = await EmbeddingModel.load(tinyModel());
    const dim = reference.info.embeddingDim;
    const tensors = await Promise.all(images.map((image, i) => decodeImageToTensor(image, `image ${i}`, { height: 32, width: 32 })));
    const embeddings = await reference.embed(tensors);
    const rows = new Float32Array(classCount * dim).map((_, i) => Math.sin(i * 12.9898) * 0.5);
    embeddings.forEach((embedding, i) => rows.set(embedding, (10 + i) * dim));
    server = await createServer({
      modelPath: tinyModel(),
      centers: classCentersFromArray(rows, classCount, dim),
      searchChunkRows: 16,
      maxK: 20,
      maxImagesPerRequest: 4,
      bodyLimit: 64 * 1024,
      maxWaitMs: 1,
    });
  });
  after(async () => {
    await server?.close();
    await reference?.release();
  });

  test('POST /v1/embed returns raw embeddings equal to the model run on the preprocessed image', async () => {
    const result = await call(server, 'POST', '/v1/embed', { images: [b64(images[0]!), b64(images[1]!)] });
    assert.equal(result.status, 200, result.text);
    const embeddings = result.json.embeddings as number[][];
    assert.equal(embeddings.length, 2);
    assert.equal(result.json.dim, 16);
    assert.equal(result.json.normalized, false);
    const expected = await reference.embed([await decodeImageToTensor(images[0]!, 'x', { height: 32, width: 32 })]);
    embeddings[0]!.forEach((value, i) => assert.ok(Math.abs(value - expected[0]![i]!) < 1e-5));
    assert.notDeepEqual(embeddings[0], embeddings[1]);
  });

  test('POST /v1/embed with normalize: true returns unit vectors in the raw direction', async () => {
    const raw = (await call(server, 'POST', '/v1/embed', { images: [b64(images[2]!)] })).json.embeddings as number[][];
    const result = await call(server, 'POST', '/v1/embed', { images: [b64(images[2]!)], normalize: true });
    assert.equal(result.json.normalized, true);
    const unit = (result.json.embeddings as number[][])[0]!;
    assert.ok(Math.abs(norm(unit) - 1) < 1e-5);
    const scale = norm(raw[0]!);
    unit.forEach((value, i) => assert.ok(Math.abs(value * scale - raw[0]![i]!) < 1e-4));
  });

  test('POST /v1/embed accepts a raw image body and data: URLs', async () => {
    const json = (await call(server, 'POST', '/v1/embed', { images: [b64(images[1]!)] })).json.embeddings as number[][];
    const raw = await call(server, 'POST', '/v1/embed?normalize=false', images[1]!, { 'content-type': 'image/jpeg' });
    assert.equal(raw.status, 200, raw.text);
    assert.deepEqual(raw.json.embeddings, json);
    const dataUrl = await call(server, 'POST', '/v1/embed', { images: [`data:image/jpeg;base64,${b64(images[1]!)}`] });
    assert.deepEqual(dataUrl.json.embeddings, json);
    const octet = await call(server, 'POST', '/v1/embed?normalize=true', images[1]!, { 'content-type': 'application/octet-stream' });
    assert.equal(octet.json.normalized, true);
    const withParameters = await call(server, 'POST', '/v1/embed', images[1]!, { 'content-type': 'Image/JPEG; charset=binary' });
    assert.deepEqual(withParameters.json.embeddings, json);
  });

  test('POST /v1/verify compares two images at the configured threshold', async () => {
    const same = await call(server, 'POST', '/v1/verify', { images: [b64(images[0]!), b64(images[0]!)] });
    assert.equal(same.status, 200, same.text);
    assert.ok(Math.abs((same.json.similarity as number) - 1) < 1e-5);
    assert.equal(same.json.same, true);
    assert.equal(same.json.threshold, 0.3);
    const different = await call(server, 'POST', '/v1/verify', { images: [b64(images[0]!), b64(images[3]!)] });
    const embeddings = (await call(server, 'POST', '/v1/embed', { images: [b64(images[0]!), b64(images[3]!)], normalize: true })).json.embeddings as number[][];
    const cosine = embeddings[0]!.reduce((sum, v, i) => sum + v * embeddings[1]![i]!, 0);
    assert.ok(Math.abs((different.json.similarity as number) - cosine) < 1e-5);
    assert.equal(different.json.same, cosine >= 0.3);
  });

  test('POST /v1/classify returns the planted class first, best first, k entries', async () => {
    const result = await call(server, 'POST', '/v1/classify', { images: images.map(b64), k: 3 });
    assert.equal(result.status, 200, result.text);
    assert.equal(result.json.k, 3);
    const lists = result.json.results as { class: number; score: number }[][];
    assert.equal(lists.length, 4);
    lists.forEach((list, i) => {
      assert.equal(list.length, 3);
      assert.equal(list[0]!.class, 10 + i);
      assert.ok(Math.abs(list[0]!.score - 1) < 1e-5);
      assert.ok(list[0]!.score >= list[1]!.score && list[1]!.score >= list[2]!.score);
    });
    const defaultK = await call(server, 'POST', '/v1/classify?k=2', images[0]!, { 'content-type': 'image/jpeg' });
    assert.equal((defaultK.json.results as unknown[][])[0]!.length, 2);
  });

  test('concurrent /v1/classify requests share one pass over the centres, each with its own k', async () => {
    const dim = reference.info.embeddingDim;
    const rows = new Float32Array(classCount * dim).map((_, i) => Math.cos(i * 7.31) * 0.5);
    const waiting = await createServer({ modelPath: tinyModel(), centers: classCentersFromArray(rows, classCount, dim), maxK: 20, maxWaitMs: 300, maxBatch: 8 });
    try {
      const ks = [1, 4, 2, 7];
      const together = await Promise.all(ks.map((k, i) => call(waiting, 'POST', '/v1/classify', { images: [b64(images[i]!)], k })));
      const metrics = (await call(waiting, 'GET', '/metrics')).text;
      assert.equal(Number(/^plsc_search_batch_size_count (\d+)$/m.exec(metrics)?.[1]), 1, metrics);
      assert.equal(Number(/^plsc_search_batch_size_sum (\d+)$/m.exec(metrics)?.[1]), 4);
      const { searchPasses, searchQueries } = waiting.stats();
      assert.deepEqual({ searchPasses, searchQueries }, { searchPasses: 1, searchQueries: 4 });
      for (const [i, k] of ks.entries()) {
        assert.equal(together[i]!.status, 200, together[i]!.text);
        const alone = await call(waiting, 'POST', '/v1/classify', { images: [b64(images[i]!)], k });
        // Batched GEMMs round differently in the last bits; the classes and their order are the same.
        const [batched] = together[i]!.json.results as { class: number; score: number }[][];
        const [single] = alone.json.results as { class: number; score: number }[][];
        assert.equal(together[i]!.json.k, k);
        assert.deepEqual(batched!.map((m) => m.class), single!.map((m) => m.class));
        batched!.forEach((m, j) => assert.ok(Math.abs(m.score - single![j]!.score) < 1e-5));
        assert.equal(batched!.length, k);
      }
    } finally {
      await waiting.close();
    }
  });

  test('POST /FaceClassifyService/inference answers in the PLSC format', async () => {
    const result = await call(server, 'POST', '/FaceClassifyService/inference', { base64_string: [b64(images[0]!), b64(images[1]!)] });
    assert.equal(result.status, 200, result.text);
    const instance = result.json.instance as { embedding: number[] }[];
    const embed = (await call(server, 'POST', '/v1/embed', { images: [b64(images[0]!), b64(images[1]!)] })).json.embeddings as number[][];
    assert.deepEqual(instance.map((item) => item.embedding), embed);
    const single = await call(server, 'POST', '/FaceClassifyService/inference', { base64_string: b64(images[0]!) });
    assert.equal((single.json.instance as unknown[]).length, 1);
  });

  test('GET /healthz reports the model and classes', async () => {
    const result = await call(server, 'GET', '/healthz');
    assert.equal(result.status, 200);
    assert.deepEqual(result.json, { status: 'ok', model: { input: [3, 32, 32], embeddingDim: 16 }, classes: classCount, queueDepth: 0 });
  });

  test('bad inputs get 4xx with a message naming the problem', async () => {
    const png = await solidPng(8, 8, 3, [1, 2, 3]);
    const json = { 'content-type': 'application/json' };
    assertBadRequest(await call(server, 'POST', '/v1/embed', '{"images": [', json), /malformed JSON/);
    assertBadRequest(await call(server, 'POST', '/v1/embed', '', json), /body is empty/);
    assertBadRequest(await call(server, 'POST', '/v1/embed', '[1, 2]', json), /JSON object like \{"images"/);
    assertBadRequest(await call(server, 'POST', '/v1/embed', '"text"', json), /JSON object like/);
    assertBadRequest(await call(server, 'POST', '/v1/embed', { pictures: [] }), /missing 'images'/);
    assertBadRequest(await call(server, 'POST', '/v1/embed', { images: 'abc' }), /'images' must be an array/);
    assertBadRequest(await call(server, 'POST', '/v1/embed', { images: [] }), /'images' is empty/);
    assertBadRequest(await call(server, 'POST', '/v1/embed', { images: Array(5).fill(b64(png)) }), /has 5 images; at most 4 per request/);
    assertBadRequest(await call(server, 'POST', '/v1/embed', { images: [b64(png), 42] }), /images\[1\] must be a base64 string, got number/);
    assertBadRequest(await call(server, 'POST', '/v1/embed', { images: [b64(png), '%%%not base64%%%'] }), /images\[1\] is not valid base64/);
    assertBadRequest(await call(server, 'POST', '/v1/embed', { images: [''] }), /images\[0\] is empty/);
    assertBadRequest(await call(server, 'POST', '/v1/embed', { images: [Buffer.from('definitely not an image').toString('base64')] }), /images\[0\] is not a decodable image/);
    assertBadRequest(await call(server, 'POST', '/v1/embed', { images: [b64(png.subarray(0, 40))] }), /images\[0\] is not a decodable image/);
    assertBadRequest(await call(server, 'POST', '/v1/embed', Buffer.from('GIF89a-garbage'), { 'content-type': 'image/gif' }), /request body is not a decodable image/);
    const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32"><rect width="32" height="32" fill="red"/></svg>';
    assertBadRequest(await call(server, 'POST', '/v1/embed', { images: [Buffer.from(svg).toString('base64')] }), /images\[0\] is svg; send a raster image/);
    assertBadRequest(await call(server, 'POST', '/v1/embed', { images: [b64(png)], normalize: 'yes' }), /'normalize' must be a boolean/);
    assertBadRequest(await call(server, 'POST', '/v1/embed', 'x=1', { 'content-type': 'application/x-www-form-urlencoded' }), /unsupported Content-Type/, 415);
    assertBadRequest(await call(server, 'POST', '/v1/embed', { images: ['A'.repeat(70 * 1024)] }), /larger than the limit of 65536 bytes/, 413);
    assertBadRequest(await call(server, 'POST', '/v1/verify', { images: [b64(png)] }), /exactly 2 images, got 1/);
    assertBadRequest(await call(server, 'POST', '/v1/verify', { images: [b64(png), b64(png), b64(png)] }), /exactly 2 images, got 3/);
    assertBadRequest(await call(server, 'POST', '/v1/verify', png, { 'content-type': 'image/png' }), /verify needs two images/);
    for (const k of [0, 21, 2.5, '3', -1]) {
      assertBadRequest(await call(server, 'POST', '/v1/classify', { images: [b64(png)], k }), /'k' must be an integer in 1\.\.20/);
    }
    assertBadRequest(await call(server, 'POST', '/v1/classify?k=abc', png, { 'content-type': 'image/png' }), /'k' must be an integer/);
    assertBadRequest(await call(server, 'POST', '/FaceClassifyService/inference', { images: [b64(png)] }), /missing 'base64_string'/);
    assertBadRequest(await call(server, 'POST', '/v1/embed', '{"__proto__": {"polluted": true}, "images": []}', json), /refused key '__proto__'/);
    assertBadRequest(await call(server, 'GET', '/v1/nothing'), /no route GET \/v1\/nothing/, 404);
    assertBadRequest(await call(server, 'GET', '/v1/embed'), /no route GET \/v1\/embed/, 404);
    // The server is still healthy and answering after all of that.
    assert.equal((await call(server, 'POST', '/v1/embed', { images: [b64(png)] })).status, 200);
    assert.equal(server.queueDepth, 0);
  });

  test('images of other sizes, grayscale and RGBA are converted to RGB at the model size', async () => {
    const gray = await decodeImageToTensor(await solidPng(7, 9, 1, [200]), 'gray', { height: 32, width: 32 });
    assert.equal(gray.length, 3 * 32 * 32);
    for (const value of [gray[0], gray[1024], gray[2048]]) assert.ok(Math.abs(value! - (200 - 127.5) / 128) < 1e-6);
    const rgba = await decodeImageToTensor(await solidPng(32, 32, 4, [255, 0, 64, 10]), 'rgba', { height: 32, width: 32 });
    assert.ok(Math.abs(rgba[5]! - (255 - 127.5) / 128) < 1e-6);
    assert.ok(Math.abs(rgba[1024 + 5]! - (0 - 127.5) / 128) < 1e-6);
    assert.ok(Math.abs(rgba[2048 + 5]! - (64 - 127.5) / 128) < 1e-6);
    const big = await call(server, 'POST', '/v1/embed', { images: [b64(await patternImage(1, { width: 150, height: 130 }))] });
    assert.equal(big.status, 200, big.text);
    // Pixel-count limit (decompression bombs) is enforced before decoding the pixels.
    await assert.rejects(
      decodeImageToTensor(await solidPng(40, 40, 3, [0, 0, 0]), 'images[0]', { height: 32, width: 32, maxInputPixels: 1000 }),
      /images\[0\] is not a decodable image \(Input image exceeds pixel limit\)/,
    );
  });

  test('GET /metrics exposes request counters, latency and batch-size histograms and queue depth', async () => {
    const result = await call(server, 'GET', '/metrics');
    assert.equal(result.status, 200);
    assert.match(String(result.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    assert.match(result.text, /^plsc_http_requests_total\{route="\/v1\/embed",method="POST",status="200"\} \d+$/m);
    assert.match(result.text, /^plsc_http_requests_total\{route="\/v1\/embed",method="POST",status="400"\} \d+$/m);
    assert.match(result.text, /^plsc_http_requests_total\{route="\/v1\/embed",method="POST",status="413"\} \d+$/m);
    assert.match(result.text, /^plsc_http_requests_total\{route="unmatched",method="GET",status="404"\} \d+$/m);
    assert.match(result.text, /^plsc_http_request_duration_seconds_bucket\{route="\/v1\/verify",le="\+Inf"\} \d+$/m);
    assert.match(result.text, /^plsc_batch_size_bucket\{le="1"\} \d+$/m);
    assert.match(result.text, /^plsc_batch_size_count \d+$/m);
    assert.match(result.text, /^plsc_queue_depth 0$/m);
  });
});

describe('plsc serve batching, overload and auth', () => {
  test('concurrent requests are embedded in shared batches (batch-size metric)', async () => {
    const server = await createServer({ modelPath: tinyModel(), maxBatch: 8, maxWaitMs: 2000 });
    try {
      const image = b64(await patternImage(7));
      const responses = await Promise.all(Array.from({ length: 8 }, () => call(server, 'POST', '/v1/embed', { images: [image] })));
      assert.deepEqual(responses.map((r) => r.status), Array(8).fill(200));
      const metrics = (await call(server, 'GET', '/metrics')).text;
      const count = Number(/^plsc_batch_size_count (\d+)$/m.exec(metrics)![1]);
      const sum = Number(/^plsc_batch_size_sum (\d+)$/m.exec(metrics)![1]);
      const upToOne = Number(/^plsc_batch_size_bucket\{le="1"\} (\d+)$/m.exec(metrics)![1]);
      // 8 images reached the batcher within its 2 s window, so a full batch of 8 ran at once
      // (count counts runs; the warm-up probe at load time is not a batch).
      assert.equal(sum, 8);
      assert.equal(count, 1);
      assert.equal(upToOne, 0);
      assert.deepEqual(server.stats(), { batches: 1, images: 8, searchPasses: 0, searchQueries: 0, imagesDecoded: 8 });
    } finally {
      await server.close();
    }
  });

  test('requests beyond maxQueue get 503 while admitted ones still complete', async () => {
    const server = await createServer({ modelPath: tinyModel(), maxBatch: 64, maxWaitMs: 300, maxQueue: 2 });
    try {
      const image = b64(await patternImage(2));
      const admitted = [call(server, 'POST', '/v1/embed', { images: [image] }), call(server, 'POST', '/v1/embed', { images: [image] })];
      while (server.queueDepth < 2) await new Promise((resolve) => setTimeout(resolve, 2));
      const refused = await call(server, 'POST', '/v1/embed', { images: [image] });
      assertBadRequest(refused, /overloaded: 2 images queued, limit 2/, 503);
      assert.deepEqual((await Promise.all(admitted)).map((r) => r.status), [200, 200]);
      assert.equal(server.info.maxImagesPerRequest, 2);
      assertBadRequest(await call(server, 'POST', '/v1/embed', { images: [image, image, image] }), /at most 2 per request/);
      const metrics = (await call(server, 'GET', '/metrics')).text;
      assert.match(metrics, /^plsc_http_requests_total\{route="\/v1\/embed",method="POST",status="503"\} 1$/m);
      assert.match(metrics, /^plsc_overload_rejections_total 1$/m);
      assert.equal((await call(server, 'POST', '/v1/embed', { images: [image] })).status, 200);
    } finally {
      await server.close();
    }
  });

  test('a bearer token is required on every route except /healthz', async () => {
    const server = await createServer({ modelPath: tinyModel(), token: 's3cret', maxWaitMs: 0 });
    try {
      const body = { images: [b64(await patternImage(1))] };
      const missing = await call(server, 'POST', '/v1/embed', body);
      assertBadRequest(missing, /missing Authorization: Bearer/, 401);
      assert.equal(missing.headers['www-authenticate'], 'Bearer');
      assertBadRequest(await call(server, 'POST', '/v1/embed', body, { authorization: 'Bearer wrong' }), /invalid bearer token/, 401);
      assertBadRequest(await call(server, 'POST', '/v1/embed', body, { authorization: 'Basic czNjcmV0' }), /missing Authorization/, 401);
      assertBadRequest(await call(server, 'GET', '/metrics'), /Bearer/, 401);
      assert.equal((await call(server, 'POST', '/v1/embed', body, { authorization: 'Bearer s3cret' })).status, 200);
      assert.equal((await call(server, 'GET', '/metrics', undefined, { authorization: 'bearer s3cret' })).status, 200);
      assert.equal((await call(server, 'GET', '/healthz')).status, 200);
    } finally {
      await server.close();
    }
  });

  test('classification is off without centres; bad options and mismatched centres are refused at startup', async () => {
    const server = await createServer({ modelPath: tinyModel() });
    try {
      assertBadRequest(await call(server, 'POST', '/v1/classify', { images: ['AAAA'] }), /classification is disabled/, 404);
      assert.equal((await call(server, 'GET', '/healthz')).json.classes, null);
    } finally {
      await server.close();
    }
    await assert.rejects(createServer({ modelPath: tinyModel(), centers: classCentersFromArray(new Float32Array(8), 2, 4) }), /centres have dim 4 but the model embeds to 16/);
    await assert.rejects(createServer({ modelPath: tinyModel(), maxBatch: 0 }), /maxBatch must be a positive integer/);
    await assert.rejects(createServer({ modelPath: tinyModel(), threshold: 2 }), /threshold must be a cosine/);
    await assert.rejects(createServer({ modelPath: tinyModel(), maxRequestPixels: 0 }), /maxRequestPixels must be a positive integer/);
    await assert.rejects(createServer({ modelPath: tinyModel(), decodeConcurrency: 1.5 }), /decodeConcurrency must be a positive integer/);
    await assert.rejects(createServer({ modelPath: '/nonexistent/model.onnx' }), /model \/nonexistent\/model.onnx: onnxruntime could not load it/);
    await assert.rejects(createServer({ modelPath: tinyModel(), centersPath: '/nonexistent/c.safetensors' }), /cannot open/);
  });
});
