// `plsc bench serve`: load-tests a local server (a generated tiny CNN or --model) at several
// concurrencies. Prints measurements; exits 1 when any request failed.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError, integerFlag, numberFlag, oneOf, runCommand } from '../src/cli-kit/args.js';
import type { ClassCenters } from '../src/centers/centers.js';
import type { LoadResult } from './serve-load.js';

const BENCH_USAGE = `usage: plsc bench serve [options]

Starts a server on 127.0.0.1 (random port) with a small random-weight IR-style CNN (or --model) and
load-tests it at each concurrency for a fixed duration.

  --concurrency LIST    comma-separated concurrency levels (default 1,4,16)
  --duration S          seconds per level (default 5)
  --warmup S            seconds of warm-up before measuring (default 1)
  --route NAME          embed | verify | inference | classify (default embed)
  --classes N           class centres for --route classify (random, default 100000)
  --model PATH          ONNX model to serve instead of the generated one
  --max-batch N         server max batch (default 32)
  --max-wait-ms MS      server max wait (default 2)
  --threads N           onnxruntime intra-op threads
  --json                one JSON object per concurrency: concurrency, rps, p50_ms, p99_ms, errors, ...`;

async function makeFaceLikeJpeg(size: number): Promise<Buffer> {
  const { default: sharp } = await import('sharp');
  // Smooth gradients plus a little noise compress like a photo rather than like flat colour.
  const pixels = Buffer.alloc(size * size * 3);
  let state = 12345;
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      state = (state * 1103515245 + 12345) >>> 0;
      const noise = (state >>> 24) % 24;
      const i = (y * size + x) * 3;
      pixels[i] = (x * 2 + noise) & 255;
      pixels[i + 1] = (y * 2 + noise) & 255;
      pixels[i + 2] = ((x + y) + noise) & 255;
    }
  return sharp(pixels, { raw: { width: size, height: size, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}

/** `plsc bench serve`: load-test a local server. Returns 1 when any request failed. */
export async function benchServeCommand(argv: string[]): Promise<number> {
  const options = {
    concurrency: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    route: { type: 'string' },
    classes: { type: 'string' },
    model: { type: 'string' },
    'max-batch': { type: 'string' },
    'max-wait-ms': { type: 'string' },
    threads: { type: 'string' },
    json: { type: 'boolean' },
  } as const;
  return runCommand({ name: 'bench serve', usage: BENCH_USAGE, options }, argv, async ({ values }) => {
    const levels = (values.concurrency ?? '1,4,16').split(',').map((item) => integerFlag(item.trim(), 'concurrency') as number);
    const durationS = numberFlag(values.duration, 'duration') ?? 5;
    const warmupS = numberFlag(values.warmup, 'warmup') ?? 1;
    if (!(durationS > 0) || durationS > 600) throw new UsageError(`--duration must be in (0, 600] seconds, got ${durationS}`);
    if (!(warmupS >= 0) || warmupS > 60) throw new UsageError(`--warmup must be in [0, 60] seconds, got ${warmupS}`);
    const load = {
      levels,
      durationS,
      warmupS,
      route: oneOf(values.route, 'route', ['embed', 'verify', 'inference', 'classify'] as const, 'embed'),
      classes: integerFlag(values.classes, 'classes') ?? 100_000,
      modelPath: values.model,
      maxBatch: integerFlag(values['max-batch'], 'max-batch') ?? 32,
      maxWaitMs: numberFlag(values['max-wait-ms'], 'max-wait-ms', { atLeast: 0 }) ?? 2,
      threads: integerFlag(values.threads, 'threads'),
      json: values.json ?? false,
    };
    return benchServe(load);
  });
}

interface BenchServeOptions {
  levels: number[];
  durationS: number;
  warmupS: number;
  route: 'embed' | 'verify' | 'inference' | 'classify';
  classes: number;
  modelPath: string | undefined;
  maxBatch: number;
  maxWaitMs: number;
  threads: number | undefined;
  json: boolean;
}

async function benchServe({ levels, durationS, warmupS, route, classes, maxBatch, maxWaitMs, threads, json, ...given }: BenchServeOptions): Promise<number> {
  const [{ startServer }, { runLoad }, { buildTinyFaceModel }] = await Promise.all([import('../src/serve/server.js'), import('./serve-load.js'), import('./tiny-model.js')]);
  const workDir = await mkdtemp(join(tmpdir(), 'plsc-bench-serve-'));
  let modelPath = given.modelPath;
  let modelLabel = modelPath ?? 'generated IR-style CNN (random weights)';
  if (!modelPath) {
    modelPath = join(workDir, 'tiny.onnx');
    await writeFile(modelPath, buildTinyFaceModel({ inputSize: 112, embeddingDim: 128, width: 8 }));
  }
  const maxConcurrency = Math.max(...levels);
  let centers: ClassCenters | undefined;
  if (route === 'classify') {
    const [{ EmbeddingModel }, { classCentersFromArray }] = await Promise.all([import('../src/serve/model.js'), import('../src/centers/centers.js')]);
    const probe = await EmbeddingModel.load(modelPath);
    const dim = probe.info.embeddingDim;
    await probe.release();
    let state = 1;
    const rows = new Float32Array(classes * dim).map(() => ((state = (state * 1664525 + 1013904223) >>> 0) / 2 ** 32) - 0.5);
    centers = classCentersFromArray(rows, classes, dim);
  }
  const { server, url } = await startServer({
    modelPath,
    ...(centers ? { centers } : {}),
    host: '127.0.0.1',
    port: 0,
    maxBatch,
    maxWaitMs,
    maxQueue: Math.max(256, maxConcurrency * 4),
    ...(threads ? { intraOpThreads: threads } : {}),
  });
  const results: (LoadResult & { mean_batch: number; mean_search_batch?: number })[] = [];
  try {
    const { model } = server.info;
    modelLabel += ` 3x${model.height}x${model.width} -> ${model.embeddingDim}${centers ? `, ${classes} random class centres` : ''}`;
    const image = (await makeFaceLikeJpeg(model.height)).toString('base64');
    const routes = {
      embed: { path: '/v1/embed', payload: { images: [image] } },
      verify: { path: '/v1/verify', payload: { images: [image, image] } },
      classify: { path: '/v1/classify', payload: { images: [image], k: 5 } },
      inference: { path: '/FaceClassifyService/inference', payload: { base64_string: [image] } },
    };
    const { path, payload } = routes[route];
    const load = { url: `${url}${path}`, method: 'POST' as const, body: Buffer.from(JSON.stringify(payload)), headers: { 'content-type': 'application/json' } };
    if (!json) {
      console.log(`plsc bench serve: ${modelLabel}; POST ${path} (one ${model.height}x${model.width} JPEG per image); ${durationS} s per level; max batch ${maxBatch}, max wait ${maxWaitMs} ms`);
      console.log(`concurrency      req/s   p50 ms   p99 ms   errors   mean batch${route === 'classify' ? '   queries/search' : ''}`);
    }
    if (warmupS > 0) await runLoad({ ...load, concurrency: maxConcurrency, durationMs: warmupS * 1000 });
    for (const concurrency of levels) {
      const before = server.stats();
      const result = await runLoad({ ...load, concurrency, durationMs: durationS * 1000 });
      const after = server.stats();
      const batches = after.batches - before.batches;
      const passes = after.searchPasses - before.searchPasses;
      const ratio = (total: number, count: number): number => (count > 0 ? Math.round((total / count) * 100) / 100 : 0);
      const row = {
        ...result,
        mean_batch: ratio(after.images - before.images, batches),
        ...(route === 'classify' ? { mean_search_batch: ratio(after.searchQueries - before.searchQueries, passes) } : {}),
      };
      results.push(row);
      if (json) console.log(JSON.stringify({ route: path, ...row }));
      else {
        console.log(
          `${String(concurrency).padStart(11)}  ${row.rps.toFixed(1).padStart(9)}  ${row.p50_ms.toFixed(2).padStart(7)}  ${row.p99_ms.toFixed(2).padStart(7)}  ${String(row.errors).padStart(7)}  ${row.mean_batch.toFixed(2).padStart(11)}` +
            (row.mean_search_batch !== undefined ? row.mean_search_batch.toFixed(2).padStart(17) : ''),
        );
      }
    }
  } finally {
    await server.close();
    await rm(workDir, { recursive: true, force: true });
  }
  return results.some((row) => row.errors > 0) ? 1 : 0;
}
