import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveConfig } from '../../src/config/train-config.js';
import { configForBackbone, headSettings } from '../../src/train/config-adapter.js';

test('headSettings maps PLSC names to the head options', () => {
  const config = resolveConfig({
    classNum: 1234,
    embSize: 96,
    lossType: 'dist_cosface',
    scale: 30,
    sampleRatio: 0.25,
    headChunkSize: 512,
    classStorage: 'bfloat16',
    calcAcc: true,
    seed: 7,
  });
  const head = headSettings(config);
  assert.equal(head.numClasses, 1234);
  assert.equal(head.embeddingSize, 96);
  assert.equal(head.sampleRate, 0.25);
  assert.equal(head.sharded, true);
  assert.equal(head.chunkSize, 512);
  assert.equal(head.classStorage, 'bfloat16');
  assert.equal(head.computeAccuracy, true);
  assert.equal(head.seed, 7);
  assert.deepEqual([head.margin.s, head.margin.m1, head.margin.m2, head.margin.m3], [30, 1, 0, 0.4]);
});

test('headSettings: a plain loss type is replicated, margins override the defaults, no chunk by default', () => {
  const head = headSettings(resolveConfig({ lossType: 'combined', margins: [1.2, 0.3, 0.1] }));
  assert.equal(head.sharded, false);
  assert.equal(head.chunkSize, undefined);
  assert.deepEqual([head.margin.s, head.margin.m1, head.margin.m2, head.margin.m3], [64, 1.2, 0.3, 0.1]);
});

test('configForBackbone takes library names and gives the config a backbone factory receives', () => {
  const config = configForBackbone({ model: 'mobilefacenet', embeddingSize: 64, imageSize: 96 });
  assert.equal(config.model, 'mobilefacenet');
  assert.equal(config.embSize, 64);
  assert.equal(config.imageSize, 96);
  assert.throws(() => configForBackbone({ model: 'mobilefacenet', embeddingSize: 0, imageSize: 96 }), /embSize: must be a positive integer, got 0/);
});
