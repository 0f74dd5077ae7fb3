// Class storage streams: loading a float32 checkpoint into bfloat16 tensors, resharding it to
// bfloat16, exporting centres from bfloat16 shards and from a bfloat16 tensor each grow the peak RSS
// by far less than one float32 copy of the shard. Each runs in its own process on a checkpoint
// whose weight is 128 MiB in float32; a control that loads the file whole shows the measurement
// sees a full-size copy.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  SafetensorsStreamWriter,
  manualSeed,
  readMeta,
  readSafetensorsHeader,
  saveCheckpoint,
  checkpointName,
  shardFileName,
  tidy,
  ops as F,
} from '../../src/index.js';

const CLASSES = 262_144;
const EMB = 128;
const FLOAT32_SHARD_BYTES = CLASSES * EMB * 4;
const MiB = 1 << 20;

const work = mkdtempSync(join(tmpdir(), 'plsc-storage-stream-'));
after(() => rmSync(work, { recursive: true, force: true }));
const worker = fileURLToPath(new URL('./fixtures/storage-stream-worker.js', import.meta.url));

/**
 * A one-shard float32 checkpoint (weight and weight_momentum). The shard is streamed a tile at a
 * time into the checkpoint's temporary directory at the first barrier, where a shard-owning rank
 * writes it, so saveCheckpoint records its digest.
 */
function writeLargeCheckpoint(): string {
  manualSeed(5);
  const root = join(work, 'checkpoints');
  let barriers = 0;
  const writeShard = (): void => {
    if (++barriers !== 1) return;
    const writer = new SafetensorsStreamWriter(join(root, `.tmp-${checkpointName(1)}`, shardFileName(0, 1)), [
      { name: 'weight', dtype: 'float32', shape: [CLASSES, EMB] },
      { name: 'weight_momentum', dtype: 'float32', shape: [CLASSES, EMB] },
    ]);
    for (const entry of writer.order) {
      for (let first = 0; first < CLASSES; first += 32_768) tidy(() => writer.append(entry.name, F.mul(F.randn([32_768, EMB]), 0.05)));
    }
    writer.finish();
  };
  return tidy(() =>
    saveCheckpoint(root, {
      rank: 0,
      shardCount: 1,
      meta: {
        numClasses: CLASSES,
        embeddingSize: EMB,
        step: 1,
        epoch: 0,
        dataOrder: { epoch: 0, position: 0 },
        samplerStep: 1,
        seed: 5,
        backbone: 'none',
        lossType: 'dist_arcface',
        shardTensors: ['weight', 'weight_momentum'],
        classStorage: 'float32',
        config: {},
      },
      backbone: { w: F.zeros([1]) },
      shard: null,
      barrier: writeShard,
      keepLast: 1,
    }),
  );
}

interface Measured {
  mode: string;
  baselineBytes: number;
  peakBytes: number;
}

function measure(mode: string, dir: string, out: string): number {
  const stdout = execFileSync(process.execPath, [worker, mode, dir, out], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
  const result = JSON.parse(stdout.trim().split('\n').at(-1) as string) as Measured;
  assert.equal(result.mode, mode);
  return result.peakBytes - result.baselineBytes;
}

test('load, reshard and centre export of a large shard never hold a float32 copy of it', (t) => {
  const fp32 = writeLargeCheckpoint();
  const limit = FLOAT32_SHARD_BYTES / 2;
  const report = (name: string, growth: number): string => {
    const line = `${name}: peak RSS grew ${(growth / MiB).toFixed(1)} MiB (a float32 copy of the shard: ${FLOAT32_SHARD_BYTES / MiB} MiB)`;
    t.diagnostic(line);
    return line;
  };

  const whole = measure('whole', fp32, '');
  assert.ok(whole >= 0.9 * FLOAT32_SHARD_BYTES, `control: ${report('whole-file load', whole)}`);

  const load = measure('load', fp32, '');
  assert.ok(load < limit, report('float32 checkpoint -> bfloat16 tensors', load));

  const bf16 = join(work, 'bf16');
  const reshard = measure('reshard', fp32, bf16);
  assert.ok(reshard < limit, report('reshard to bfloat16', reshard));
  const meta = readMeta(bf16);
  assert.equal(meta.classStorage, 'bfloat16');
  assert.deepEqual(readSafetensorsHeader(join(bf16, shardFileName(1, 2))).entries.map((e) => [e.name, e.dtype, e.shape[0]]), [
    ['weight', 'BF16', CLASSES / 2],
    ['weight_momentum', 'BF16', CLASSES / 2],
  ]);

  const centersPath = join(work, 'centers.safetensors');
  const centers = measure('centers', bf16, centersPath);
  assert.ok(centers < limit, report('centres of bfloat16 shards', centers));
  assert.ok(statSync(centersPath).size > FLOAT32_SHARD_BYTES);

  const exported = measure('export-centers', bf16, join(work, 'exported.safetensors'));
  assert.ok(exported < limit, report('exportCenters of a bfloat16 tensor', exported));
});
