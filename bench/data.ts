// Data pipeline throughput: synthetic generation, loader over synthetic raw images, and loader over
// a RecordIO file of 112x112 JPEGs (sharp decode). Usage: node dist/bench/data.js [images]
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRecordIODataset } from '../src/data/convert.js';
import { DataLoader } from '../src/data/loader.js';
import { RecordIOSource } from '../src/data/recordio.js';
import { SyntheticFaces } from '../src/data/synthetic.js';

async function timeLoader(loader: DataLoader): Promise<number> {
  const start = performance.now();
  let images = 0;
  for await (const batch of loader) images += batch.shape[0];
  return images / ((performance.now() - start) / 1000);
}

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 4000);
  const faces = new SyntheticFaces({ numClasses: 1000, imagesPerClass: Math.ceil(count / 1000), size: 112, seed: 1 });
  const out = new Uint8Array(3 * 112 * 112);
  for (let i = 0; i < 200; i++) faces.render(i, out); // warm up the JIT
  let start = performance.now();
  const cpuBefore = process.cpuUsage();
  for (let i = 0; i < count; i++) faces.render((i * 7919) % faces.length, out);
  const generate = count / ((performance.now() - start) / 1000);
  const cpu = process.cpuUsage(cpuBefore);
  // Per CPU-second of this thread: meaningful even when other processes compete for the cores.
  const generatePerCpuSecond = count / ((cpu.user + cpu.system) / 1e6);

  const loaderSynthetic = await timeLoader(new DataLoader(faces, { batchSize: 128, randomFlip: true, seed: 1 }));

  const dir = await mkdtemp(join(tmpdir(), 'plsc-bench-data-'));
  try {
    const small = new SyntheticFaces({ numClasses: 100, imagesPerClass: Math.ceil(count / 100), size: 112, seed: 2 });
    start = performance.now();
    await writeRecordIODataset(small, join(dir, 'train.rec'), { rawEncoding: 'jpeg', concurrency: availableParallelism() * 2 });
    const encode = small.length / ((performance.now() - start) / 1000);
    const rec = await RecordIOSource.open(join(dir, 'train.rec'));
    const loaderRec = await timeLoader(new DataLoader(rec, { batchSize: 128, randomFlip: true, seed: 1 }));
    await rec.close();
    console.log(
      JSON.stringify(
        {
          cpus: availableParallelism(),
          uvThreadpoolSize: process.env.UV_THREADPOOL_SIZE ?? '4 (default)',
          syntheticRenderImagesPerSec: Math.round(generate),
          syntheticRenderImagesPerCpuSec: Math.round(generatePerCpuSecond),
          loaderSyntheticImagesPerSec: Math.round(loaderSynthetic),
          encodeToRecImagesPerSec: Math.round(encode),
          loaderRecJpegImagesPerSec: Math.round(loaderRec),
        },
        null,
        2,
      ),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
