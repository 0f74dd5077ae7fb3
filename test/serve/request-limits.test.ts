import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { createServer, type PlscServer } from '../../src/serve/server.js';
import { b64, patternImage, tinyModel } from './fixtures/images.js';

async function post(server: PlscServer, payload: string, contentType = 'application/json'): Promise<{ status: number; message: string }> {
  const response = await server.app.inject({ method: 'POST', url: '/v1/embed', headers: { 'content-type': contentType }, payload });
  const body = JSON.parse(response.body) as { message?: string };
  return { status: response.statusCode, message: body.message ?? '' };
}

/** A flat grey PNG: small to send, but every pixel has to be decoded. */
function greyPng(side: number): Promise<Buffer> {
  return sharp({ create: { width: side, height: side, channels: 3, background: '#808080' } }).png().toBuffer();
}

describe('plsc serve request limits', () => {
  let server: PlscServer;
  let largePng: Buffer;
  before(async () => {
    largePng = await greyPng(1500);
    server = await createServer({
      modelPath: tinyModel(),
      maxImagesPerRequest: 16,
      maxRequestPixels: 40_000_000,
      maxInputPixels: 5_000_000,
      decodeConcurrency: 1,
      maxWaitMs: 1,
    });
  });
  after(async () => {
    await server?.close();
  });

  test('images whose headers add up past the pixel budget get 413 with the numbers, before any decoding', async () => {
    // Only the first 100 bytes of each PNG: the header says 2000x2000, the pixels are missing, so a
    // decode would answer 400; 413 shows the budget was checked from the headers first.
    const header = b64((await greyPng(2000)).subarray(0, 100));
    const result = await post(server, JSON.stringify({ images: Array.from({ length: 12 }, () => header) }));
    assert.equal(result.status, 413, result.message);
    assert.match(result.message, /12 images hold 48000000 pixels in all \(largest images\[0\]: 2000x2000\), over the budget of 40000000 pixels per request/);
    assert.equal(server.queueDepth, 0);
    // Two of them fit the budget and then fail to decode, naming the image.
    const within = await post(server, JSON.stringify({ images: [header, header] }));
    assert.equal(within.status, 400, within.message);
    assert.match(within.message, /images\[[01]\] is not a decodable image/);
    assert.equal(server.info.maxRequestPixels, 40_000_000);
  });

  test('one image over the per-image limit gets 413 naming it and its size', async () => {
    const huge = b64((await greyPng(2500)).subarray(0, 100));
    const result = await post(server, JSON.stringify({ images: [b64(await patternImage(0)), huge] }));
    assert.equal(result.status, 413, result.message);
    assert.match(result.message, /images\[1\] is 2500x2500 = 6250000 pixels, over the limit of 5000000 pixels per image/);
  });

  test('a one-image request sent while a large request decodes waits for at most a turn of it, not for all of it', async () => {
    const large = JSON.stringify({ images: Array.from({ length: 16 }, () => b64(largePng)) });
    const small = JSON.stringify({ images: [b64(await patternImage(1))] });
    const answered: string[] = [];
    const decodedBefore = server.stats().imagesDecoded;
    let decodedWhenSmallAnswered = 0;
    const largeDone = post(server, large).then((result) => {
      answered.push('large');
      return result;
    });
    // Wait until the large request is admitted (its images count in the queue while they decode).
    while (server.queueDepth < 16) await new Promise((resolve) => setImmediate(resolve));
    const smallDone = post(server, small).then((result) => {
      decodedWhenSmallAnswered = server.stats().imagesDecoded - decodedBefore;
      answered.push('small');
      return result;
    });
    const [largeResult, smallResult] = await Promise.all([largeDone, smallDone]);
    assert.equal(largeResult.status, 200, largeResult.message);
    assert.equal(smallResult.status, 200, smallResult.message);
    assert.deepEqual(answered, ['small', 'large']);
    // With one decode slot: the large image decoding when the small request arrived, one more turn
    // of the large request, then the small image; in arrival order it would wait for all 16.
    assert.ok(decodedWhenSmallAnswered <= 8, `${decodedWhenSmallAnswered - 1} of the 16 large images were decoded before the small one`);
    assert.equal(server.stats().imagesDecoded - decodedBefore, 17);
  });

  test('text/plain bodies get 415; __proto__ and constructor.prototype keys get a message that names them', async () => {
    const text = await post(server, '{"images": []}', 'text/plain');
    assert.equal(text.status, 415, text.message);
    assert.match(text.message, /unsupported Content-Type 'text\/plain': send application\/json or an image\/\* body/);
    const refused = [
      ['{"__proto__": {"polluted": true}, "images": []}', /refused key '__proto__' in the JSON body's top-level object: '__proto__' and 'constructor.prototype' keys are refused \(prototype poisoning\)/],
      ['{"images": [], "options": [{"\\u005f_proto__": 1}]}', /refused key '__proto__' in the JSON body at options\[0\]/],
      ['{"images": [], "constructor": {"prototype": {"polluted": true}}}', /refused key 'constructor.prototype' in the JSON body's top-level object/],
    ] as const;
    for (const [payload, message] of refused) {
      const result = await post(server, payload);
      assert.equal(result.status, 400, result.message);
      assert.match(result.message, message);
    }
    // A 'constructor' key without 'prototype' is ordinary data.
    const plain = await post(server, JSON.stringify({ images: [b64(await patternImage(2))], constructor: 'x' }));
    assert.equal(plain.status, 200, plain.message);
    const malformed = await post(server, '{"images": [');
    assert.equal(malformed.status, 400);
    assert.match(malformed.message, /malformed JSON body: /);
    const empty = await post(server, '');
    assert.equal(empty.status, 400);
    assert.match(empty.message, /body is empty: send a JSON object/);
  });
});
