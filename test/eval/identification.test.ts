import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateIdentification, matmulTransposed, searchTopK, type MatmulFunction } from '../../src/eval/identification.js';
import type { EmbeddingMatrix } from '../../src/eval/verification.js';

function matrix(rows: number[][]): EmbeddingMatrix {
  return { data: Float32Array.from(rows.flat()), rows: rows.length, dim: rows[0]!.length };
}

/** Unit vector at angle a (degrees) in the plane, padded to 3 dims. */
const at = (a: number, scale = 1): number[] => [scale * Math.cos((a * Math.PI) / 180), scale * Math.sin((a * Math.PI) / 180), 0];

// Gallery: angles 0, 10, 20, ... 90 (labels 100..109); norms vary to check cosine normalization.
const gallery = matrix(Array.from({ length: 10 }, (_, i) => at(10 * i, 1 + i)));
const galleryLabels = Array.from({ length: 10 }, (_, i) => 100 + i);

test('cosine top-k in order, independent of gallery chunk and probe block sizes', async () => {
  const probes = matrix([at(21), at(84), at(-30)]);
  const reference = await searchTopK(gallery, probes, 3);
  assert.equal(reference.k, 3);
  assert.deepEqual([...reference.indices], [2, 3, 1, 8, 9, 7, 0, 1, 2]);
  assert.ok(Math.abs(reference.scores[0]! - Math.cos((1 * Math.PI) / 180)) < 1e-6);
  for (const galleryChunkSize of [1, 3, 4, 10, 64]) {
    for (const probeBlockSize of [1, 2, 5]) {
      const r = await searchTopK(gallery, probes, 3, { galleryChunkSize, probeBlockSize });
      assert.deepEqual([...r.indices], [...reference.indices], `chunk ${galleryChunkSize} block ${probeBlockSize}`);
      assert.deepEqual([...r.scores], [...reference.scores]);
    }
  }
});

test('rank-1 and rank-5 accuracy on a constructed gallery', async () => {
  // probe labels: 102 (closest is 102: rank 1), 105 placed at 77 deg (105 is 5th -> rank 5 only),
  // 100 placed near 90 deg (100 is 10th -> missed), 999 has no mate (not counted).
  const probes = matrix([at(19), at(77), at(88), at(40)]);
  const probeLabels = [102, 105, 100, 999];
  const result = await evaluateIdentification(gallery, galleryLabels, probes, probeLabels, { galleryChunkSize: 3 });
  assert.equal(result.probes, 4);
  assert.equal(result.evaluatedProbes, 3);
  assert.equal(result.probesWithoutMate, 1);
  assert.deepEqual(
    result.ranks.map((r) => [r.rank, r.correct]),
    [
      [1, 1],
      [5, 2],
    ],
  );
  assert.equal(result.rank1, 1 / 3);
  assert.equal(result.rank5, 2 / 3);
  const deep = await evaluateIdentification(gallery, galleryLabels, probes, probeLabels, { ranks: [1, 2, 10, 50] });
  assert.deepEqual(deep.ranks.map((r) => r.correct), [1, 1, 3, 3]);
  assert.equal(deep.rank5, null);
});

test('ties go to the lower gallery index, whatever the chunking', async () => {
  // Gallery rows 0..3 are the same direction; only row 3 carries the probe's label.
  const tied = matrix([at(0), at(0, 2), at(0, 3), at(0, 0.5), at(90)]);
  const labels = [1, 2, 3, 7, 7];
  const probe = matrix([at(0)]);
  for (const galleryChunkSize of [1, 2, 3, 5]) {
    const top = await searchTopK(tied, probe, 5, { galleryChunkSize });
    assert.deepEqual([...top.indices], [0, 1, 2, 3, 4], `chunk ${galleryChunkSize}`);
    const r = await evaluateIdentification(tied, labels, probe, [7], { galleryChunkSize, ranks: [1, 3, 4] });
    assert.deepEqual(r.ranks.map((x) => x.correct), [0, 0, 1]);
  }
});

test('k larger than the gallery keeps every row; zero vectors score 0', async () => {
  const small = matrix([at(0), [0, 0, 0]]);
  const top = await searchTopK(small, matrix([at(180)]), 5);
  assert.equal(top.k, 2);
  assert.deepEqual([...top.indices], [1, 0]);
  assert.deepEqual([...top.scores].map((s) => Math.round(s * 1e6) / 1e6), [0, -1]);
});

test('a pluggable matmul gives the same result and sees chunk-sized blocks', async () => {
  const calls: [number, number][] = [];
  const matmul: MatmulFunction = async (a, aRows, b, bRows, dim) => {
    calls.push([aRows, bRows]);
    return Float32Array.from(matmulTransposed(a, aRows, b, bRows, dim));
  };
  const probes = matrix([at(21), at(84), at(-30)]);
  const probeLabels = [102, 108, 100];
  const plain = await evaluateIdentification(gallery, galleryLabels, probes, probeLabels);
  const plugged = await evaluateIdentification(gallery, galleryLabels, probes, probeLabels, { matmul, galleryChunkSize: 4, probeBlockSize: 2 });
  assert.deepEqual(plugged.ranks, plain.ranks);
  assert.deepEqual(calls, [
    [2, 4],
    [1, 4],
    [2, 4],
    [1, 4],
    [2, 2],
    [1, 2],
  ]);
  const wrong: MatmulFunction = () => new Float32Array(1);
  await assert.rejects(searchTopK(gallery, probes, 1, { matmul: wrong }), /matmul returned 1 values, expected 3x10/);
});

test('input validation', async () => {
  await assert.rejects(evaluateIdentification(gallery, [1, 2], matrix([at(0)]), [1]), /gallery labels: 2 labels for 10 embeddings/);
  await assert.rejects(searchTopK(gallery, matrix([[1, 0]]), 1), /dimension 3, probe embeddings 2/);
  await assert.rejects(searchTopK(gallery, matrix([at(0)]), 0), /k must be a positive integer/);
  await assert.rejects(evaluateIdentification(gallery, galleryLabels, matrix([at(0)]), [1.5]), /probe labels: label 0 is 1.5/);
});
