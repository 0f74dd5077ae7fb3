// 16-bit class storage outside the head step: the classStorage setting, checkpoints that record the
// dtype, and save/load/resume/reshard across float32, bfloat16 and float16 shards.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Entry,
  Trainer,
  ConfigError,
  resolveConfig,
  loadConfigFile,
  saveCheckpoint,
  checkpointName,
  readMeta,
  readClassRows,
  loadShardInto,
  reshardCheckpoint,
  shardFileName,
  readSafetensorsHeader,
  saveSafetensors,
  loadSafetensors,
  SafetensorsStreamWriter,
  demoTrainConfig,
  DEMO_DEFAULTS,
  tidy,
  ops as F,
  type CheckpointMeta,
  type Tensor,
} from '../../src/index.js';
import { demoCommand, reshardCommand } from '../../src/train/cli.js';
import type { ClassStorage } from '../../src/config/class-storage.js';
import { floatToHalfBits } from '../../src/centers/float16.js';

const work = mkdtempSync(join(tmpdir(), 'plsc-class-storage-'));
after(() => rmSync(work, { recursive: true, force: true }));

const CLASSES = 23;
const EMB = 12;
const STORAGES: ClassStorage[] = ['float32', 'bfloat16', 'float16'];

/** A deterministic float32 master of every class row (weights and momentum). */
function master(seed: number, rows = CLASSES, cols = EMB): Float32Array {
  const out = new Float32Array(rows * cols);
  let state = seed >>> 0;
  for (let i = 0; i < out.length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = (state / 2 ** 32 - 0.5) * 0.2;
  }
  return out;
}

/** float32 -> bfloat16 bits, round to nearest even (the reference the files are checked against). */
function bfloat16Bits(value: number): number {
  const bits = new Uint32Array(new Float32Array([value]).buffer)[0]!;
  return (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
}

function bitsOf(t: Tensor): Uint16Array {
  const bytes = t.bytes();
  return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
}

function expectedBits(values: Float32Array, storage: 'bfloat16' | 'float16'): Uint16Array {
  return Uint16Array.from(values, (v) => (storage === 'bfloat16' ? bfloat16Bits(v) : floatToHalfBits(v)));
}

interface Written {
  dir: string;
  meta: CheckpointMeta;
  weight: Float32Array;
  momentum: Float32Array;
  bias: Float32Array;
}

/**
 * A checkpoint of `shards` shards whose weight and momentum are stored as `storage` (bias float32).
 * Rank 0 saves; the other ranks' shards are written into its temporary directory at the first
 * barrier, as real ranks would, so meta.json records every shard's digest.
 */
function writeCheckpoint(name: string, storage: ClassStorage, shards: number, options: { withBias?: boolean; recordStorage?: boolean } = {}): Written {
  const weight = master(1);
  const momentum = master(2);
  const bias = master(3, CLASSES, 1);
  const names = ['weight', 'weight_momentum', ...(options.withBias ? ['bias', 'bias_momentum'] : [])];
  const base = Math.floor(CLASSES / shards);
  const dir = tidy(() => {
    const shardTensors: Record<string, Tensor>[] = [];
    let offset = 0;
    for (let rank = 0; rank < shards; rank++) {
      const rows = base + (rank < CLASSES % shards ? 1 : 0);
      const slice = (values: Float32Array, cols: number): Tensor => F.tensor(values.slice(offset * cols, (offset + rows) * cols), { shape: cols === 1 ? [rows] : [rows, cols] });
      shardTensors.push({
        weight: slice(weight, EMB).to(storage),
        weight_momentum: slice(momentum, EMB).to(storage),
        ...(options.withBias ? { bias: slice(bias, 1), bias_momentum: slice(bias, 1) } : {}),
      });
      offset += rows;
    }
    const root = join(work, name);
    let barriers = 0;
    const otherRanksWrite = (): void => {
      if (++barriers !== 1) return;
      for (let rank = 1; rank < shards; rank++) {
        saveSafetensors(join(root, `.tmp-${checkpointName(7)}`, shardFileName(rank, shards)), shardTensors[rank]!, { rank: String(rank), worldSize: String(shards) });
      }
    };
    return saveCheckpoint(root, {
      rank: 0,
      shardCount: shards,
      meta: {
        numClasses: CLASSES,
        embeddingSize: EMB,
        step: 7,
        epoch: 1,
        dataOrder: { epoch: 1, position: 0 },
        samplerStep: 7,
        seed: 0,
        backbone: 'none',
        lossType: options.withBias ? 'dist_softmax' : 'dist_arcface',
        shardTensors: names,
        ...(options.recordStorage === false ? {} : { classStorage: storage }),
        config: {},
      },
      backbone: { w: F.zeros([1]) },
      shard: { index: 0, tensors: shardTensors[0]! },
      barrier: otherRanksWrite,
      keepLast: 1,
    });
  });
  return { dir, meta: readMeta(dir), weight, momentum, bias };
}

function rowsOf(values: Float32Array, start: number, count: number, cols = EMB): Float32Array {
  return values.slice(start * cols, (start + count) * cols);
}

test('classStorage: config default, Entry setter, YAML field, and clear errors', () => {
  assert.equal(resolveConfig({}).classStorage, 'float32');
  assert.equal(new Entry().setClassStorage('bfloat16').config().classStorage, 'bfloat16');
  assert.throws(() => new Entry().setClassStorage('int8' as ClassStorage), /classStorage: must be one of float32, bfloat16, float16, got "int8"/);
  assert.throws(() => resolveConfig({ classStorage: 'fp16' }), (err: unknown) => err instanceof ConfigError && err.field === 'classStorage');
  const yaml = join(work, 'storage.yaml');
  writeFileSync(yaml, 'classNum: 100\nclassStorage: float16\n');
  assert.equal(loadConfigFile(yaml).classStorage, 'float16');
  assert.equal(loadConfigFile(yaml, ['classStorage=bfloat16']).classStorage, 'bfloat16');
  assert.throws(() => resolveConfig({ lossType: 'arcface', classStorage: 'bfloat16' }), /classStorage: bfloat16 needs a dist_\* lossType .* got lossType arcface/);
  writeFileSync(yaml, 'classStorage: half\n');
  assert.throws(() => loadConfigFile(yaml), /storage\.yaml: classStorage: must be one of float32, bfloat16, float16, got "half"/);
});

for (const storage of STORAGES) {
  test(`${storage} shards: meta.json records the dtype; rows read and load back bit for bit, for any worker count`, () => {
    const saved = writeCheckpoint(`round-${storage}`, storage, 2, { withBias: true });
    assert.equal(saved.meta.classStorage, storage);
    const header = readSafetensorsHeader(join(saved.dir, shardFileName(1, 2)));
    const dtypes = Object.fromEntries(header.entries.map((e) => [e.name, e.dtype]));
    const st = { float32: 'F32', bfloat16: 'BF16', float16: 'F16' }[storage];
    assert.deepEqual(dtypes, { weight: st, weight_momentum: st, bias: 'F32', bias_momentum: 'F32' });
    tidy(() => {
      const stored = F.tensor(saved.weight, { shape: [CLASSES, EMB] }).to(storage);
      // Rows across the shard boundary (shard 0 holds 12 classes).
      const rows = readClassRows(saved.dir, saved.meta, 9, 7);
      assert.equal(rows.weight!.dtype, storage);
      assert.deepEqual(rows.weight!.bytes(), F.narrow(stored, 0, 9, 7).contiguous().bytes());
      assert.deepEqual(Array.from(rows.bias!.dataSync() as Float32Array), Array.from(rowsOf(saved.bias, 9, 7, 1)));
      // The shard of rank 1 of 3 (classes 8..15), loaded into tensors of the same dtype.
      const targets = { weight: F.zeros([8, EMB], { dtype: storage }), weight_momentum: F.zeros([8, EMB], { dtype: storage }), bias: F.zeros([8]), bias_momentum: F.zeros([8]) };
      loadShardInto(saved.dir, saved.meta, 1, 3, targets);
      assert.deepEqual(targets.weight.bytes(), F.narrow(stored, 0, 8, 8).contiguous().bytes());
      assert.deepEqual(targets.weight_momentum.bytes(), F.narrow(F.tensor(saved.momentum, { shape: [CLASSES, EMB] }).to(storage), 0, 8, 8).contiguous().bytes());
    });
  });
}

test('resume across dtypes: a float32 checkpoint loads into 16-bit tensors rounded to nearest even, and 16-bit widens exactly', () => {
  const fp32 = writeCheckpoint('cross-fp32', 'float32', 2);
  for (const storage of ['bfloat16', 'float16'] as const) {
    tidy(() => {
      const targets = { weight: F.zeros([CLASSES, EMB], { dtype: storage }), weight_momentum: F.zeros([CLASSES, EMB], { dtype: storage }) };
      loadShardInto(fp32.dir, fp32.meta, 0, 1, targets);
      assert.deepEqual(bitsOf(targets.weight), expectedBits(fp32.weight, storage));
      assert.deepEqual(bitsOf(targets.weight_momentum), expectedBits(fp32.momentum, storage));
    });
    const half = writeCheckpoint(`cross-${storage}`, storage, 3);
    tidy(() => {
      const targets = { weight: F.zeros([12, EMB]), weight_momentum: F.zeros([12, EMB]) };
      loadShardInto(half.dir, half.meta, 0, 2, targets);
      const widened = F.tensor(rowsOf(half.weight, 0, 12), { shape: [12, EMB] }).to(storage).to('float32');
      assert.deepEqual(targets.weight.dataSync(), widened.dataSync());
    });
  }
});

test('the streaming writer converts float32 to bfloat16 and float16 rounding to nearest even, ties included', () => {
  // 1 + 2^-8 lies halfway between bfloat16's 1 and 1 + 2^-7: the even one (1) wins; 1 + 3 * 2^-8 goes up.
  const ties = new Float32Array([1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8), 1 + 2 ** -11, 1 + 3 * 2 ** -11, 3.140625, 1e-3]);
  const path = join(work, 'ties.safetensors');
  tidy(() => {
    const writer = new SafetensorsStreamWriter(path, [
      { name: 'b', dtype: 'bfloat16', shape: [ties.length, 1] },
      { name: 'h', dtype: 'float16', shape: [ties.length, 1] },
    ]);
    for (const entry of writer.order) {
      writer.append(entry.name, F.tensor(ties.slice(0, 3), { shape: [3, 1] }));
      writer.append(entry.name, F.tensor(ties.slice(3), { shape: [ties.length - 3, 1] }));
    }
    writer.finish();
    const read = loadSafetensors(path);
    assert.deepEqual(bitsOf(read.b!), expectedBits(ties, 'bfloat16'));
    assert.deepEqual(Array.from(bitsOf(read.b!).slice(0, 3)), [0x3f80, 0x3f82, 0xbf80]);
    assert.deepEqual(bitsOf(read.h!), expectedBits(ties, 'float16'));
    assert.deepEqual(Array.from(bitsOf(read.h!).slice(3, 5)), [0x3c00, 0x3c02]);
  });
});

test('plsc reshard converts storage both ways; bias stays float32; meta and headers agree', async () => {
  const fp32 = writeCheckpoint('reshard-fp32', 'float32', 2, { withBias: true });
  const bf16Dir = join(work, 'reshard-bf16');
  const converted = reshardCheckpoint(fp32.dir, 3, bf16Dir, { storage: 'bfloat16' });
  assert.equal(converted.classStorage, 'bfloat16');
  assert.equal(readMeta(bf16Dir).classStorage, 'bfloat16');
  for (let r = 0; r < 3; r++) {
    const dtypes = Object.fromEntries(readSafetensorsHeader(join(bf16Dir, shardFileName(r, 3))).entries.map((e) => [e.name, e.dtype]));
    assert.deepEqual(dtypes, { weight: 'BF16', weight_momentum: 'BF16', bias: 'F32', bias_momentum: 'F32' });
  }
  tidy(() => {
    const rows = readClassRows(bf16Dir, readMeta(bf16Dir), 0, CLASSES);
    assert.deepEqual(bitsOf(rows.weight!), expectedBits(fp32.weight, 'bfloat16'));
    assert.deepEqual(bitsOf(rows.weight_momentum!), expectedBits(fp32.momentum, 'bfloat16'));
    assert.deepEqual(Array.from(rows.bias!.dataSync() as Float32Array), Array.from(fp32.bias));
  });
  // Back to float32 over 1 worker (through the CLI): the bfloat16 values, widened exactly.
  const backDir = join(work, 'reshard-back');
  const log = console.log;
  const lines: string[] = [];
  console.log = (line: string) => void lines.push(line);
  let code: number;
  try {
    code = await reshardCommand(['--checkpoint', bf16Dir, '--world-size', '1', '--out', backDir, '--storage', 'float32']);
  } finally {
    console.log = log;
  }
  assert.equal(code, 0);
  assert.ok(lines.some((l) => /storage bfloat16 -> float32/.test(l)), lines.join('\n'));
  assert.equal(readMeta(backDir).classStorage, 'float32');
  tidy(() => {
    const back = loadSafetensors(join(backDir, shardFileName(0, 1)));
    const expected = F.tensor(fp32.weight, { shape: [CLASSES, EMB] }).to('bfloat16').to('float32');
    assert.equal(back.weight!.dtype, 'float32');
    assert.deepEqual(back.weight!.dataSync(), expected.dataSync());
  });
  // Without --storage the dtype is kept.
  const kept = reshardCheckpoint(bf16Dir, 2, join(work, 'reshard-kept'));
  assert.equal(kept.classStorage, 'bfloat16');
});

test('plsc reshard --storage rejects an unknown dtype as a usage error', async () => {
  const errors: string[] = [];
  const error = console.error;
  console.error = (line: string) => void errors.push(String(line));
  try {
    const code = await reshardCommand(['--checkpoint', work, '--world-size', '1', '--out', join(work, 'never'), '--storage', 'int8']);
    assert.equal(code, 2);
  } finally {
    console.error = error;
  }
  assert.match(errors.join('\n'), /--storage must be one of float32, bfloat16, float16, got 'int8'/);
});

test('checkpoints from before class storage (no classStorage in meta.json) read as float32', () => {
  const old = writeCheckpoint('legacy', 'float32', 2, { recordStorage: false });
  assert.equal(old.meta.classStorage, undefined);
  tidy(() => {
    const targets = { weight: F.zeros([CLASSES, EMB], { dtype: 'bfloat16' }), weight_momentum: F.zeros([CLASSES, EMB], { dtype: 'bfloat16' }) };
    loadShardInto(old.dir, old.meta, 0, 1, targets);
    assert.deepEqual(bitsOf(targets.weight), expectedBits(old.weight, 'bfloat16'));
  });
});

test('bad checkpoints: a shard dtype that contradicts meta.json, an unknown classStorage, tensors the head lacks', () => {
  const lying = writeCheckpoint('lying', 'bfloat16', 2);
  const metaPath = join(lying.dir, 'meta.json');
  const meta = JSON.parse(readFileSync(metaPath, 'utf8')) as Record<string, unknown>;
  writeFileSync(metaPath, JSON.stringify({ ...meta, classStorage: 'float32' }));
  const targets = (): Record<string, Tensor> => ({ weight: F.zeros([CLASSES, EMB]), weight_momentum: F.zeros([CLASSES, EMB]) });
  tidy(() => {
    assert.throws(() => loadShardInto(lying.dir, readMeta(lying.dir), 0, 1, targets()), /fc-rank-0-of-2\.safetensors: tensor 'weight' is stored as bfloat16 but meta\.json records classStorage float32/);
  });
  writeFileSync(metaPath, JSON.stringify({ ...meta, classStorage: 'float8' }));
  assert.throws(() => readMeta(lying.dir), /meta\.json: classStorage must be float32, bfloat16 or float16, got "float8"/);
  writeFileSync(metaPath, JSON.stringify(meta));
  tidy(() => {
    const withBias = { ...targets(), bias: F.zeros([CLASSES]) };
    assert.throws(() => loadShardInto(lying.dir, readMeta(lying.dir), 0, 1, withBias), /the head needs 'bias', which the checkpoint lacks/);
    assert.throws(() => loadShardInto(lying.dir, readMeta(lying.dir), 0, 1, { weight: F.zeros([CLASSES, EMB]) }), /the checkpoint holds 'weight_momentum', which the head lacks/);
    assert.throws(() => loadShardInto(lying.dir, readMeta(lying.dir), 0, 1, { weight: F.zeros([CLASSES, EMB + 1]), weight_momentum: F.zeros([CLASSES, EMB]) }), /'weight' rows are \[23, 12\], the head's tensor is \[23, 13\]/);
  });
});

test('trainers resume across storage: float32 head from a bfloat16 reshard (widened), bfloat16 head from float32 (rounded); checkpoints record the head\'s storage', async () => {
  const dir = join(work, 'trainer');
  const tinyBackbone = `${fileURLToPath(new URL('./fixtures/tiny-backbone.js', import.meta.url))}#createTinyBackbone`;
  const config = resolveConfig({
    dataset: { type: 'synthetic', numClasses: 30, imagesPerClass: 4, seed: 1 },
    model: tinyBackbone,
    imageSize: 16,
    embSize: 16,
    trainBatchSize: 8,
    trainSteps: 4,
    withTest: false,
    logPeriod: 100,
    checkpointDir: join(dir, 'checkpoints'),
    modelSaveDir: join(dir, 'output'),
  });
  const first = await Trainer.create(config);
  const { lastCheckpoint } = await first.train({ quiet: true, maxStepsThisRun: 2 });
  first.dispose();
  assert.ok(lastCheckpoint !== null);
  const saved = readMeta(lastCheckpoint);
  assert.equal(saved.classStorage, 'float32');
  const bf16 = join(dir, 'bf16');
  reshardCheckpoint(lastCheckpoint, 1, bf16, { storage: 'bfloat16' });
  // Its own checkpoint directory: saving step 2 again must not replace the float32 checkpoint read below.
  const resumed = await Trainer.create({ ...config, checkpointDir: join(dir, 'resumed'), resume: bf16 });
  try {
    assert.equal(resumed.step, 2);
    tidy(() => {
      const expected = readClassRows(lastCheckpoint, saved, 0, 30);
      const state = resumed.head.stateDict();
      for (const name of ['weight', 'weight_momentum']) {
        assert.deepEqual(state[name]!.to('float32').dataSync(), expected[name]!.to('bfloat16').to('float32').dataSync(), name);
      }
    });
    const next = resumed.saveCheckpoint(1);
    assert.equal(readMeta(next).classStorage, 'float32');
  } finally {
    resumed.dispose();
  }
  // And the other way: a bfloat16 head resumes from the float32 checkpoint, rounded to nearest even.
  const narrow = await Trainer.create({ ...config, classStorage: 'bfloat16', checkpointDir: join(dir, 'narrow'), resume: lastCheckpoint });
  try {
    assert.equal(narrow.head.weight.dtype, 'bfloat16');
    tidy(() => {
      const expected = readClassRows(lastCheckpoint, saved, 0, 30);
      const state = narrow.head.stateDict();
      for (const name of ['weight', 'weight_momentum']) {
        assert.deepEqual(bitsOf(state[name]!), expectedBits(expected[name]!.dataSync() as Float32Array, 'bfloat16'), name);
      }
    });
    const losses = await narrow.train({ quiet: true, maxStepsThisRun: 1 });
    assert.ok(Number.isFinite(losses.losses[0]));
    assert.equal(readMeta(losses.lastCheckpoint as string).classStorage, 'bfloat16');
  } finally {
    narrow.dispose();
  }
});

test('plsc demo --storage: the demo config carries it; an unknown dtype is a usage error', async () => {
  assert.equal(demoTrainConfig({ ...DEMO_DEFAULTS, out: join(work, 'demo') }).classStorage, 'float32');
  assert.equal(demoTrainConfig({ ...DEMO_DEFAULTS, out: join(work, 'demo'), classStorage: 'bfloat16' }).classStorage, 'bfloat16');
  const errors: string[] = [];
  const error = console.error;
  console.error = (line: string) => void errors.push(String(line));
  try {
    assert.equal(await demoCommand(['--storage', 'bf16', '--out', join(work, 'demo')]), 2);
  } finally {
    console.error = error;
  }
  assert.match(errors.join('\n'), /--storage must be one of float32, bfloat16, float16, got 'bf16'/);
});
