// `plsc serve` and `plsc bench serve`.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError, integerFlag, numberFlag, oneOf, required, runCommand } from '../cli/args.js';
import type { LoadResult } from './load.js';
import { startedByNpm, watchParent } from './parent-watch.js';
import type { ServeOptions } from './server.js';
import type { ClassCenters } from '../centers/centers.js';

const SERVE_USAGE = `usage: plsc serve --model model.onnx [options]

  --model PATH          exported ONNX model, input [N,3,H,W] float32, output [N,D]   (required)
  --centers PATH        safetensors with a [C,D] 'centers' tensor (F32/F16): enables /v1/classify
  --host ADDR           bind address (default 127.0.0.1; use 0.0.0.0 only behind a token or proxy)
  --port N              TCP port (default 8866; 0 picks a free port)
  --threshold COS       cosine threshold for /v1/verify (default 0.3)
  --max-batch N         images per model run (default 32)
  --max-wait-ms MS      longest wait for a batch to fill (default 5)
  --max-queue N         queued images before answering 503 (default 256)
  --max-images N        images per request (default 64)
  --max-k N             largest k for /v1/classify (default 100)
  --max-request-pixels N  pixels (width x height from the image headers, summed) per request
                        before 413 (default 100000000)
  --decode-concurrency N  images decoded at once, taken from waiting requests in turn
                        (default: CPU cores, at most 4)
  --body-limit SIZE     request body limit, bytes or with k/m suffix (default 16m)
  --token-file PATH     require "Authorization: Bearer <token>" (token read from the file);
                        the PLSC_SERVE_TOKEN environment variable works too
  --threads N           onnxruntime intra-op threads
  --input-size HxW      model input size when the ONNX shape leaves it symbolic
  --log                 log every request (JSON lines)
  --exit-with-parent    shut down when the process that started plsc serve exits
                        (on by default when started through npm/npx)

SIGTERM/SIGINT stop accepting connections, finish in-flight requests, then exit. For a service,
run node_modules/.bin/plsc or node bin/plsc.js: npx does not pass SIGTERM on to the server.`;

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

function sizeFlag(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const match = /^(\d+)([kKmM]?)$/.exec(value.trim());
  if (!match) throw new UsageError(`--${name} must be a byte count like 1048576, 512k or 16m, got '${value}'`);
  const unit = match[2]!.toLowerCase();
  return Number(match[1]) * (unit === 'k' ? 1024 : unit === 'm' ? 1024 * 1024 : 1);
}

/** `plsc serve`: run until SIGTERM/SIGINT, then shut down gracefully. Returns the exit code. */
export async function serveCommand(argv: string[]): Promise<number> {
  const options = {
    model: { type: 'string' },
    centers: { type: 'string' },
    host: { type: 'string' },
    port: { type: 'string' },
    threshold: { type: 'string' },
    'max-batch': { type: 'string' },
    'max-wait-ms': { type: 'string' },
    'max-queue': { type: 'string' },
    'max-images': { type: 'string' },
    'max-k': { type: 'string' },
    'max-request-pixels': { type: 'string' },
    'decode-concurrency': { type: 'string' },
    'body-limit': { type: 'string' },
    'token-file': { type: 'string' },
    threads: { type: 'string' },
    'input-size': { type: 'string' },
    log: { type: 'boolean' },
    'exit-with-parent': { type: 'boolean' },
  } as const;
  // Read before the model loads, so a parent that exits during start-up is noticed too.
  const parentAtStart = process.ppid;
  return runCommand({ name: 'serve', usage: SERVE_USAGE, options }, argv, async ({ values }) => {
    const modelPath = required(values.model, 'model');
    let token = process.env.PLSC_SERVE_TOKEN || undefined;
    if (values['token-file']) token = (await readFile(values['token-file'], 'utf8')).trim();
    let inputSize: [number, number] | undefined;
    if (values['input-size']) {
      const match = /^(\d+)x(\d+)$/.exec(values['input-size']);
      if (!match) throw new UsageError(`--input-size must look like 112x112, got '${values['input-size']}'`);
      inputSize = [Number(match[1]), Number(match[2])];
    }
    const port = integerFlag(values.port, 'port', 0);
    if (port !== undefined && port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`);
    const entries: Partial<ServeOptions> = {
      centersPath: values.centers,
      host: values.host,
      port,
      threshold: numberFlag(values.threshold, 'threshold'),
      maxBatch: integerFlag(values['max-batch'], 'max-batch'),
      maxWaitMs: numberFlag(values['max-wait-ms'], 'max-wait-ms', { atLeast: 0 }),
      maxQueue: integerFlag(values['max-queue'], 'max-queue'),
      maxImagesPerRequest: integerFlag(values['max-images'], 'max-images'),
      maxK: integerFlag(values['max-k'], 'max-k'),
      maxRequestPixels: integerFlag(values['max-request-pixels'], 'max-request-pixels'),
      decodeConcurrency: integerFlag(values['decode-concurrency'], 'decode-concurrency'),
      bodyLimit: sizeFlag(values['body-limit'], 'body-limit'),
      token,
      intraOpThreads: integerFlag(values.threads, 'threads'),
      inputSize,
      logger: values.log ?? false,
    };
    const serveOptions: ServeOptions = { modelPath, ...Object.fromEntries(Object.entries(entries).filter(([, value]) => value !== undefined)) };
    return serve(serveOptions, values['exit-with-parent'] === true || startedByNpm() ? parentAtStart : null);
  });
}

/** `exitWithParent`: the pid whose exit shuts the server down, or null to outlive the parent. */
async function serve(options: ServeOptions, exitWithParent: number | null): Promise<number> {
  // Loaded here so that usage errors and --help answer without loading onnxruntime and sharp.
  const { startServer } = await import('./server.js');
  const { server, url } = await startServer(options);
  const { model, classes } = server.info;
  console.log(
    `plsc serve: listening on ${url} (model ${options.modelPath}: 3x${model.height}x${model.width} -> ${model.embeddingDim}` +
      `${classes !== null ? `, ${classes} classes` : ''}; max batch ${server.info.maxBatch}, max wait ${server.info.maxWaitMs} ms, max queue ${server.info.maxQueue}` +
      `${options.token ? ', bearer token required' : ''})`,
  );
  const host = options.host ?? '127.0.0.1';
  if (!options.token && host !== '127.0.0.1' && host !== '::1' && host !== 'localhost') {
    console.error(`plsc serve: warning: listening on ${host} without a token; anyone who can reach this port can use the model`);
  }
  await new Promise<void>((resolve, reject) => {
    let stopWatchingParent = (): void => {};
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      stopWatchingParent();
      console.error(`plsc serve: ${signal}: finishing in-flight requests (send it again to exit at once)`);
      process.once(signal, () => process.exit(130));
      server.close().then(resolve, reject);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    if (exitWithParent !== null) {
      stopWatchingParent = watchParent((parent) => {
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
        console.error(`plsc serve: parent process ${parent} exited: finishing in-flight requests`);
        server.close().then(resolve, reject);
      }, 1000, exitWithParent);
    }
  });
  console.error('plsc serve: stopped');
  return 0;
}

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
  const [{ startServer }, { runLoad }, { buildTinyFaceModel }] = await Promise.all([import('./server.js'), import('./load.js'), import('./tiny-model.js')]);
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
    const [{ EmbeddingModel }, { classCentersFromArray }] = await Promise.all([import('./model.js'), import('../centers/centers.js')]);
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
