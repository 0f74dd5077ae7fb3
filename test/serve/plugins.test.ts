// createServer is built from Fastify plugins (metrics, auth, routes, health): the metrics and auth
// hooks cover every route of the server, a route a library user adds to server.app included.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from '../../src/serve/server.js';
import { tinyModel } from './fixtures/images.js';

test('a route added to server.app is behind the bearer token and counted in /metrics', async () => {
  const server = await createServer({ modelPath: tinyModel(), token: 's3cret', maxWaitMs: 0 });
  try {
    server.app.get('/v1/version', async () => ({ version: 'test' }));
    const refused = await server.app.inject({ method: 'GET', url: '/v1/version' });
    assert.equal(refused.statusCode, 401);
    assert.match(refused.body, /missing Authorization: Bearer/);
    const allowed = await server.app.inject({ method: 'GET', url: '/v1/version', headers: { authorization: 'Bearer s3cret' } });
    assert.equal(allowed.statusCode, 200);
    assert.deepEqual(JSON.parse(allowed.body), { version: 'test' });
    const metrics = await server.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer s3cret' } });
    assert.match(metrics.body, /^plsc_http_requests_total\{route="\/v1\/version",method="GET",status="401"\} 1$/m);
    assert.match(metrics.body, /^plsc_http_requests_total\{route="\/v1\/version",method="GET",status="200"\} 1$/m);
    // The scrape itself is in flight while /metrics renders.
    assert.match(metrics.body, /^plsc_requests_in_flight 1$/m);
  } finally {
    await server.close();
  }
});

test('the metric families keep their order: HTTP, model runs, queue, decoding, search, in flight', async () => {
  const server = await createServer({ modelPath: tinyModel(), maxWaitMs: 0 });
  try {
    const metrics = await server.app.inject({ method: 'GET', url: '/metrics' });
    const families = [...metrics.body.matchAll(/^# TYPE (\S+)/gm)].map((match) => match[1]);
    assert.deepEqual(families, [
      'plsc_http_requests_total',
      'plsc_http_request_duration_seconds',
      'plsc_batch_size',
      'plsc_inference_duration_seconds',
      'plsc_images_embedded_total',
      'plsc_overload_rejections_total',
      'plsc_queue_depth',
      'plsc_images_decoded_total',
      'plsc_decode_waiting',
      'plsc_search_batch_size',
      'plsc_requests_in_flight',
    ]);
  } finally {
    await server.close();
  }
});
