import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SyntheticFaces, SyntheticFeatures, gatherFeatures } from '../../src/data/synthetic.js';

test('SyntheticFaces is deterministic in (seed, index) and varies across samples and seeds', async () => {
  const a = new SyntheticFaces({ numClasses: 5, imagesPerClass: 4, seed: 11 });
  const b = new SyntheticFaces({ numClasses: 5, imagesPerClass: 4, seed: 11 });
  const c = new SyntheticFaces({ numClasses: 5, imagesPerClass: 4, seed: 12 });
  assert.equal(a.length, 20);
  assert.equal(a.label(7), 1);
  // Render out of order on one instance to make sure no hidden state leaks between samples.
  const late = a.render(13);
  a.render(2);
  assert.deepEqual(a.render(13), late);
  assert.deepEqual(b.render(13), late);
  assert.notDeepEqual(c.render(13), late);
  assert.notDeepEqual(a.render(12), late); // same class, different sample
  const payload = await a.read(3);
  assert.equal(payload.kind, 'raw');
  if (payload.kind === 'raw') {
    assert.equal(payload.layout, 'chw');
    assert.equal(payload.pixels.length, 3 * 112 * 112);
    assert.deepEqual(payload.pixels, a.render(3));
  }
  const into = new Uint8Array(10 + 3 * 112 * 112);
  a.render(3, into, 10);
  assert.deepEqual(into.subarray(10), a.render(3));
  assert.throws(() => a.render(20), RangeError);
  assert.throws(() => new SyntheticFaces({ numClasses: 0, imagesPerClass: 1 }), /numClasses/);
});

test('SyntheticFaces images use the pixel range and are not flat', () => {
  const faces = new SyntheticFaces({ numClasses: 3, imagesPerClass: 2, size: 64, seed: 2 });
  const image = faces.render(0);
  let min = 255;
  let max = 0;
  for (const v of image) {
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  assert.ok(max - min > 100, `range ${min}..${max}`);
});

test('SyntheticFaces classes are separable: nearest class mean on raw pixels beats chance by far', () => {
  const classes = 10;
  const perClass = 8;
  const faces = new SyntheticFaces({ numClasses: classes, imagesPerClass: perClass, size: 48, seed: 5 });
  const dim = 3 * 48 * 48;
  const train = perClass / 2;
  const means = Array.from({ length: classes }, () => new Float64Array(dim));
  for (let c = 0; c < classes; c++) {
    for (let k = 0; k < train; k++) {
      const image = faces.render(c * perClass + k);
      for (let d = 0; d < dim; d++) means[c]![d]! += image[d]! / train;
    }
  }
  let correct = 0;
  let total = 0;
  for (let c = 0; c < classes; c++) {
    for (let k = train; k < perClass; k++) {
      const image = faces.render(c * perClass + k);
      let best = -1;
      let bestDistance = Infinity;
      for (let m = 0; m < classes; m++) {
        let distance = 0;
        for (let d = 0; d < dim; d++) distance += (image[d]! - means[m]![d]!) ** 2;
        if (distance < bestDistance) {
          bestDistance = distance;
          best = m;
        }
      }
      if (best === c) correct++;
      total++;
    }
  }
  const accuracy = correct / total;
  assert.ok(accuracy >= 0.8, `nearest-class-mean accuracy ${accuracy} (chance ${1 / classes})`);
});

test('SyntheticFeatures: deterministic, unit centroids, nearest centroid recovers labels', () => {
  const features = new SyntheticFeatures({ numClasses: 20, samplesPerClass: 10, dim: 64, seed: 3, noise: 0.5 });
  assert.deepEqual(features.features(17), new SyntheticFeatures({ numClasses: 20, samplesPerClass: 10, dim: 64, seed: 3 }).features(17));
  assert.notDeepEqual(features.features(17), features.features(18));
  const centroid = features.centroid(4);
  assert.ok(Math.abs(Math.hypot(...centroid) - 1) < 1e-5);
  const centroids = Array.from({ length: 20 }, (_, c) => features.centroid(c));
  let correct = 0;
  for (let i = 0; i < features.length; i++) {
    const x = features.features(i);
    let best = -1;
    let bestDot = -Infinity;
    centroids.forEach((ctr, c) => {
      let dot = 0;
      for (let d = 0; d < 64; d++) dot += x[d]! * ctr[d]!;
      if (dot > bestDot) {
        bestDot = dot;
        best = c;
      }
    });
    if (best === features.label(i)) correct++;
  }
  assert.ok(correct / features.length > 0.95, `accuracy ${correct / features.length}`);
  const batch = gatherFeatures(features, [3, 150]);
  assert.deepEqual(batch.shape, [2, 64]);
  assert.deepEqual([...batch.labels], [0, 15]);
  assert.deepEqual(batch.features.subarray(64), features.features(150));
});
