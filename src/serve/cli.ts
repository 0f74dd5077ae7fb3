// `plsc serve` (`plsc bench serve` is in bench/serve.ts).
import { readFile } from 'node:fs/promises';
import { UsageError, integerFlag, numberFlag, required, runCommand } from '../cli-kit/args.js';
import { startedByNpm, watchParent } from './parent-watch.js';
import type { ServeOptions } from './server.js';

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
