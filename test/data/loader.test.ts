import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DataLoader, type ImageBatch } from '../../src/data/loader.js';
import { FeatureLoader } from '../../src/data/feature-loader.js';
import { ListFileSource } from '../../src/data/list-file.js';
import { ShardedSampler } from '../../src/data/sampler.js';
import { BadSampleError, type SampleSource, type SamplePayload } from '../../src/data/source.js';
import { SyntheticFaces, SyntheticFeatures } from '../../src/data/synthetic.js';
import { collect, gradientPixels, encodePixels, makeTempDir } from './helpers.js';

const SIZE = 16;

function faces(numClasses = 6, imagesPerClass = 5, seed = 1): SyntheticFaces {
  return new SyntheticFaces({ numClasses, imagesPerClass, size: SIZE, seed });
}

function allIndices(batches: ImageBatch[]): number[] {
  return batches.flatMap((b) => [...b.indices]);
}

test('sampler: shards are disjoint and cover the epoch (pad wraps around, drop truncates)', () => {
  for (const n of [12, 13, 17]) {
    for (const world of [1, 2, 3, 4]) {
      const pad = Array.from({ length: world }, (_, rank) => new ShardedSampler(n, { seed: 9, rank, worldSize: world }).rankIndices({ epoch: 2, position: 0 }));
      for (const shard of pad) assert.equal(shard.length, Math.ceil(n / world));
      const seen = pad.flatMap((s) => [...s]);
      assert.deepEqual([...new Set(seen)].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i), `pad n=${n} w=${world}`);
      assert.equal(seen.length - n, Math.ceil(n / world) * world - n); // only the padding repeats
      const drop = Array.from({ length: world }, (_, rank) =>
        new ShardedSampler(n, { seed: 9, rank, worldSize: world, shardPadding: 'drop' }).rankIndices({ epoch: 2, position: 0 }),
      );
      const dropped = drop.flatMap((s) => [...s]);
      for (const shard of drop) assert.equal(shard.length, Math.floor(n / world));
      assert.equal(new Set(dropped).size, dropped.length, 'drop shards are disjoint');
    }
  }
});

test('sampler: permutation depends on seed and epoch; shuffle off is identity order', () => {
  const s = new ShardedSampler(50, { seed: 1 });
  assert.deepEqual(s.permutation(0), new ShardedSampler(50, { seed: 1 }).permutation(0));
  assert.notDeepEqual([...s.permutation(0)], [...s.permutation(1)]);
  assert.notDeepEqual([...s.permutation(0)], [...new ShardedSampler(50, { seed: 2 }).permutation(0)]);
  assert.deepEqual([...new ShardedSampler(5, { shuffle: false }).rankIndices({ epoch: 3, position: 0 })], [0, 1, 2, 3, 4]);
  assert.throws(() => new ShardedSampler(10, { rank: 2, worldSize: 2 }), /rank/);
  assert.throws(() => s.rankIndices({ epoch: -1, position: 0 }), /epoch/);
});

test('loader: batches are NCHW uint8 with labels; same seed gives the same data, other seeds and epochs differ', async () => {
  const source = faces();
  const run = async (seed: number, epochs: number): Promise<ImageBatch[][]> => {
    const loader = new DataLoader(source, { batchSize: 4, imageSize: SIZE, seed, randomFlip: true });
    const out: ImageBatch[][] = [];
    for (let e = 0; e < epochs; e++) out.push(await collect(loader));
    assert.deepEqual(loader.state, { epoch: epochs, position: 0 });
    return out;
  };
  const first = await run(3, 2);
  const again = await run(3, 2);
  assert.equal(first[0]!.length, Math.ceil(30 / 4));
  const batch = first[0]![0]!;
  assert.deepEqual(batch.shape, [4, 3, SIZE, SIZE]);
  assert.equal(batch.images.length, 4 * 3 * SIZE * SIZE);
  assert.deepEqual([...batch.labels], [...batch.indices].map((i) => source.label(i)));
  assert.deepEqual(first[0]!.at(-1)!.shape[0], 2); // 30 = 7*4 + 2
  for (let e = 0; e < 2; e++) {
    for (let b = 0; b < first[e]!.length; b++) {
      assert.deepEqual(again[e]![b]!.indices, first[e]![b]!.indices);
      assert.deepEqual(again[e]![b]!.images, first[e]![b]!.images);
    }
  }
  assert.deepEqual(allIndices(first[0]!).sort((a, b) => a - b), Array.from({ length: 30 }, (_, i) => i));
  assert.notDeepEqual(allIndices(first[0]!), allIndices(first[1]!));
  const other = await run(4, 1);
  assert.notDeepEqual(allIndices(other[0]!), allIndices(first[0]!));
});

test('loader: ranks read disjoint shards whose union is the epoch', async () => {
  const source = faces(5, 5); // 25 samples, 3 ranks: 9 each with 2 padded repeats
  const perRank: number[][] = [];
  for (let rank = 0; rank < 3; rank++) {
    const loader = new DataLoader(source, { batchSize: 4, imageSize: SIZE, seed: 8, rank, worldSize: 3 });
    perRank.push(allIndices(await collect(loader)));
  }
  for (const indices of perRank) assert.equal(indices.length, 9);
  const union = new Set(perRank.flat());
  assert.equal(union.size, 25);
  // Without padding the shards are strictly disjoint.
  const dropShards: number[][] = [];
  for (let rank = 0; rank < 3; rank++) {
    const loader = new DataLoader(source, { batchSize: 4, imageSize: SIZE, seed: 8, rank, worldSize: 3, shardPadding: 'drop' });
    dropShards.push(allIndices(await collect(loader)));
  }
  const flat = dropShards.flat();
  assert.equal(flat.length, 24);
  assert.equal(new Set(flat).size, 24);
});

test('loader: resuming from a saved state reproduces the uninterrupted order exactly', async () => {
  const source = faces(7, 3); // 21 samples
  const options = { batchSize: 3, imageSize: SIZE, seed: 21, rank: 1, worldSize: 2, randomFlip: true } as const;
  const straight = new DataLoader(source, options);
  const reference = [...(await collect(straight)), ...(await collect(straight))];

  const first = new DataLoader(source, options);
  const got: ImageBatch[] = [];
  for await (const batch of first) {
    got.push(batch);
    if (got.length === 2) break;
  }
  const saved = JSON.parse(JSON.stringify(first.state)) as { epoch: number; position: number };
  assert.deepEqual(saved, { epoch: 0, position: 2 * 3 * 2 });
  const resumed = new DataLoader(source, { ...options, state: saved });
  got.push(...(await collect(resumed)), ...(await collect(resumed)));
  assert.equal(got.length, reference.length);
  for (let b = 0; b < reference.length; b++) {
    assert.deepEqual(got[b]!.indices, reference[b]!.indices, `batch ${b}`);
    assert.deepEqual(got[b]!.images, reference[b]!.images, `batch ${b}`);
    assert.deepEqual(got[b]!.labels, reference[b]!.labels);
    assert.equal(got[b]!.epoch, reference[b]!.epoch);
  }
  // Breaking right after the last batch of an epoch leaves the state at the next epoch.
  const l = new DataLoader(source, options);
  let n = 0;
  for await (const _ of l) if (++n === l.batchesPerEpoch) break;
  assert.deepEqual(l.state, { epoch: 1, position: 0 });
});

test('loader: a position saved with one world size resumes on another without losing samples', async () => {
  const source = faces(4, 6); // 24 samples
  const consumed: number[] = [];
  let state = { epoch: 0, position: 0 };
  for (let rank = 0; rank < 2; rank++) {
    const loader = new DataLoader(source, { batchSize: 2, imageSize: SIZE, seed: 5, rank, worldSize: 2 });
    let n = 0;
    for await (const batch of loader) {
      consumed.push(...batch.indices);
      if (++n === 3) break;
    }
    state = loader.state;
  }
  assert.deepEqual(state, { epoch: 0, position: 12 });
  const single = new DataLoader(source, { batchSize: 5, imageSize: SIZE, seed: 5, state });
  const rest = allIndices(await collect(single));
  assert.equal(rest.length, 12);
  assert.deepEqual([...consumed, ...rest].sort((a, b) => a - b), Array.from({ length: 24 }, (_, i) => i));
});

test('loader: random flip mirrors about half of the images, deterministically', async () => {
  const source = faces(4, 8);
  const plain = await collect(new DataLoader(source, { batchSize: 32, imageSize: SIZE, seed: 2 }));
  const flipped = await collect(new DataLoader(source, { batchSize: 32, imageSize: SIZE, seed: 2, randomFlip: true }));
  const stride = 3 * SIZE * SIZE;
  let mirrored = 0;
  for (let row = 0; row < 32; row++) {
    const a = plain[0]!.images.subarray(row * stride, (row + 1) * stride);
    const b = flipped[0]!.images.subarray(row * stride, (row + 1) * stride);
    if (Buffer.compare(a, b) === 0) continue;
    for (let r = 0; r < 3 * SIZE; r++) {
      for (let x = 0; x < SIZE; x++) assert.equal(b[r * SIZE + x], a[r * SIZE + SIZE - 1 - x]);
    }
    mirrored++;
  }
  assert.ok(mirrored >= 8 && mirrored <= 24, `${mirrored} of 32 mirrored`);
});

/** Wraps a source and makes chosen indices fail like a corrupt image would. */
class FaultySource implements SampleSource {
  readonly reads: number[] = [];
  constructor(
    private readonly inner: SampleSource,
    private readonly bad: Set<number>,
    readonly numClasses = inner.numClasses,
  ) {}
  get length(): number {
    return this.inner.length;
  }
  label(index: number): number {
    return this.inner.label(index);
  }
  describe(index: number): string {
    return `fake record ${index}`;
  }
  async read(index: number): Promise<SamplePayload> {
    this.reads.push(index);
    if (this.bad.has(index)) return { kind: 'encoded', bytes: Buffer.from('corrupt bytes') };
    return this.inner.read(index);
  }
}

test('loader: corrupt samples are fatal by default and name the record', async () => {
  const source = new FaultySource(faces(), new Set([4]));
  const loader = new DataLoader(source, { batchSize: 5, imageSize: SIZE, shuffle: false });
  await assert.rejects(collect(loader), (error: unknown) => {
    assert.ok(error instanceof BadSampleError);
    assert.equal(error.index, 4);
    assert.match(error.message, /bad sample 4 \(fake record 4\)/);
    return true;
  });
  assert.deepEqual(loader.state, { epoch: 0, position: 0 });
});

test('loader: skip keeps batch shapes by filling from good rows, or shrinks; stats count skips', async () => {
  const inner = faces();
  const bad = new Set([1, 3, 11]);
  const reports: number[] = [];
  const loader = new DataLoader(new FaultySource(inner, bad), {
    batchSize: 5,
    imageSize: SIZE,
    shuffle: false,
    onBadSample: 'skip',
    onSkip: (r) => reports.push(r.index),
  });
  const batches = await collect(loader);
  assert.ok(batches.every((b) => b.shape[0] === 5 && b.labels.length === 5));
  assert.equal(batches[0]!.filledRows, 2);
  const firstIndices = [...batches[0]!.indices];
  assert.ok(firstIndices.every((i) => !bad.has(i)));
  const stride = 3 * SIZE * SIZE;
  assert.deepEqual(batches[0]!.images.subarray(stride, 2 * stride), batches[0]!.images.subarray(0, stride)); // row 1 filled from row 0
  assert.equal(loader.stats.skipped, 3);
  assert.deepEqual(loader.stats.badSamples.map((r) => r.index), [1, 3, 11]);
  assert.match(loader.stats.badSamples[0]!.where, /fake record 1/);
  assert.deepEqual(reports, [1, 3, 11]);

  const shrinking = new DataLoader(new FaultySource(inner, bad), { batchSize: 5, imageSize: SIZE, shuffle: false, onBadSample: 'skip', fillSkipped: false });
  const small = await collect(shrinking);
  assert.deepEqual(small.map((b) => b.shape[0]), [3, 5, 4, 5, 5, 5]);
  assert.deepEqual([...small[0]!.indices], [0, 2, 4]);
  assert.deepEqual([...small[0]!.labels], [0, 0, 0]);
  assert.equal(small[0]!.images.length, 3 * stride);
  assert.equal(shrinking.stats.skipped, 3);
});

test('loader: real corrupt and missing files from a list file, skip vs error', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const good = await encodePixels(gradientPixels(20, 20), 20, 20, 'jpeg');
    await writeFile(join(dir, 'a.jpg'), good);
    await writeFile(join(dir, 'b.jpg'), good.subarray(0, good.length >> 1)); // truncated JPEG
    await writeFile(join(dir, 'c.jpg'), good);
    await writeFile(join(dir, 'label.txt'), 'a.jpg 0\nb.jpg 1\nmissing.jpg 1\nc.jpg 0\n');
    const source = await ListFileSource.open(join(dir, 'label.txt'));
    await assert.rejects(collect(new DataLoader(source, { batchSize: 4, imageSize: SIZE, shuffle: false })), /label\.txt line 2 \(.*b\.jpg\)/);
    const loader = new DataLoader(source, { batchSize: 4, imageSize: SIZE, shuffle: false, onBadSample: 'skip', fillSkipped: false });
    const batches = await collect(loader);
    assert.deepEqual([...batches[0]!.indices], [0, 3]);
    assert.equal(loader.stats.skipped, 2);
    assert.match(loader.stats.badSamples[1]!.where, /label\.txt line 3 \(.*missing\.jpg\)/);
    assert.match(loader.stats.badSamples[1]!.reason, /image file missing/);
  } finally {
    await cleanup();
  }
});

test('loader: a label outside [0, numClasses) from a source is fatal even with skip', async () => {
  const loader = new DataLoader(new FaultySource(faces(), new Set(), 3), { batchSize: 8, imageSize: SIZE, shuffle: false, onBadSample: 'skip' });
  await assert.rejects(collect(loader), /fake record \d+: label \d out of range \[0, 3\)/);
});

test('loader: prefetching stays within the configured number of batches ahead', async () => {
  const source = new FaultySource(faces(8, 4), new Set());
  const loader = new DataLoader(source, { batchSize: 4, imageSize: SIZE, prefetchBatches: 1, concurrency: 2, shuffle: false });
  let consumed = 0;
  for await (const batch of loader) {
    consumed += batch.labels.length;
    await new Promise((resolve) => setTimeout(resolve, 20)); // slow consumer: the producer must not run away
    assert.ok(source.reads.length <= consumed + 4, `read ${source.reads.length} with ${consumed} consumed`);
  }
  assert.equal(source.reads.length, 32);
});

test('loader: dropLastBatch, batchesPerEpoch and argument validation', async () => {
  const loader = new DataLoader(faces(), { batchSize: 4, imageSize: SIZE, dropLastBatch: true });
  assert.equal(loader.batchesPerEpoch, 7);
  const batches = await collect(loader);
  assert.equal(batches.length, 7);
  assert.ok(batches.every((b) => b.shape[0] === 4));
  assert.throws(() => new DataLoader(faces(), { batchSize: 0 }), /batchSize/);
  assert.throws(() => loader.setState({ epoch: 0, position: -1 }), /position/);
  const iterator = loader[Symbol.asyncIterator]();
  await iterator.next();
  await assert.rejects(loader[Symbol.asyncIterator]().next(), /already being iterated/);
  await iterator.return(undefined);
});

test('loader: output size differing from the source size resizes raw images', async () => {
  const source = new SyntheticFaces({ numClasses: 2, imagesPerClass: 2, size: 24, seed: 1 });
  const [batch] = await collect(new DataLoader(source, { batchSize: 4, imageSize: [12, 20] }));
  assert.deepEqual(batch!.shape, [4, 3, 12, 20]);
});

test('FeatureLoader: sharding, determinism and resume follow the same state rules', async () => {
  const source = new SyntheticFeatures({ numClasses: 5, samplesPerClass: 4, dim: 8, seed: 1 });
  const options = { batchSize: 3, seed: 4, rank: 0, worldSize: 2 } as const;
  const reference = await collect(new FeatureLoader(source, options));
  assert.equal(reference.length, 4);
  assert.deepEqual(reference[0]!.shape, [3, 8]);
  const partial = new FeatureLoader(source, options);
  const first: typeof reference = [];
  for await (const b of partial) {
    first.push(b);
    break;
  }
  const rest = await collect(new FeatureLoader(source, { ...options, state: partial.state }));
  const joined = [...first, ...rest];
  assert.deepEqual(joined.map((b) => [...b.indices]), reference.map((b) => [...b.indices]));
  assert.deepEqual(joined[3]!.features, reference[3]!.features);
  const other = await collect(new FeatureLoader(source, { ...options, rank: 1 }));
  const union = new Set([...reference, ...other].flatMap((b) => [...b.indices]));
  assert.equal(union.size, 20);
});

test('loader: the in-place render path (readChwInto) matches the read() path, flips included', async () => {
  const source = faces(3, 4);
  const options = { batchSize: 6, imageSize: SIZE, seed: 13, randomFlip: true } as const;
  const fast = await collect(new DataLoader(source, options));
  const slow = await collect(new DataLoader(new FaultySource(source, new Set()), options));
  assert.equal(fast.length, slow.length);
  for (let b = 0; b < fast.length; b++) {
    assert.deepEqual(fast[b]!.indices, slow[b]!.indices);
    assert.deepEqual(fast[b]!.images, slow[b]!.images);
  }
});
