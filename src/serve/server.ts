// `plsc serve`: HTTP serving of an exported embedding model on Fastify + onnxruntime-node.
// createServer loads the model, builds the batchers and registers the plugins (src/serve/plugins):
// metrics (GET /metrics), auth (bearer token), routes (POST /v1/embed, /v1/verify, /v1/classify,
// the PLSC-compatible /FaceClassifyService/inference) and health (GET /healthz). See docs/serve.md.
import { availableParallelism } from 'node:os';
import { STATUS_CODES } from 'node:http';
import sharp from 'sharp';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { DynamicBatcher, OverloadedError } from './batcher.js';
import { loadClassCenters, type ClassCenters, type ClassMatch } from '../centers/centers.js';
import { CenterSearchEngine } from '../centers/center-search.js';
import { EmbeddingModel, type EmbeddingModelInfo } from './model.js';
import { FairDecodeQueue } from './decode-queue.js';
import { parseJsonBody } from './json-body.js';
import { ImagePipeline } from './image-pipeline.js';
import { ServeMetrics, metricsPlugin } from './plugins/metrics.js';
import { authPlugin } from './plugins/auth.js';
import { routesPlugin } from './plugins/routes.js';
import { healthPlugin } from './plugins/health.js';
import { positiveInteger as checkPositiveInteger } from '../util/validate.js';

export interface ServeOptions {
  /** Path to the exported ONNX model ([N, 3, H, W] float32 -> [N, D]), or its bytes. */
  modelPath: string | Uint8Array;
  /** safetensors file with a [C, D] 'centers' tensor (F32/F16) enabling /v1/classify. */
  centersPath?: string;
  /** Already-loaded class centres (alternative to centersPath). */
  centers?: ClassCenters;
  /** Bind address (default 127.0.0.1: loopback only). */
  host?: string;
  /** TCP port (default 8866; 0 picks a free one). */
  port?: number;
  /** Cosine-similarity threshold for /v1/verify's `same` (default 0.3). */
  threshold?: number;
  /** Most images per model run (default 32). */
  maxBatch?: number;
  /** Longest wait for a batch to fill, in milliseconds (default 5). */
  maxWaitMs?: number;
  /** Most images admitted and not yet running before requests get 503 (default 256). */
  maxQueue?: number;
  /** Most images in one request (default 64; also capped by maxQueue). */
  maxImagesPerRequest?: number;
  /** Largest request body in bytes (default 16 MiB); larger bodies get 413. */
  bodyLimit?: number;
  /** When set, every route except /healthz requires `Authorization: Bearer <token>`. */
  token?: string;
  /** Largest k accepted by /v1/classify (default 100, and at most the number of classes). */
  maxK?: number;
  /** Class-centre rows scored per chunk during classification (default 32768). */
  searchChunkRows?: number;
  /** onnxruntime intra-op threads per session (default: onnxruntime's choice). */
  intraOpThreads?: number;
  /** Model input [height, width] when the ONNX input shape leaves them symbolic. */
  inputSize?: readonly [number, number];
  /** Refuse images above this many pixels before decoding them fully (default 40 M). */
  maxInputPixels?: number;
  /** Most pixels (sum of width x height read from the image headers) in one request (default 100 M); more gets 413 before decoding. */
  maxRequestPixels?: number;
  /** Images decoded at the same time, taken from the waiting requests in turn (default: CPU cores, at most 4). */
  decodeConcurrency?: number;
  /** On close(), connections still open after this many ms are cut (default 30000). */
  shutdownGraceMs?: number;
  /** Fastify request logging (default off). */
  logger?: boolean;
}

export interface ServerInfo {
  model: EmbeddingModelInfo;
  /** Number of classes available to /v1/classify, or null when classification is off. */
  classes: number | null;
  threshold: number;
  maxBatch: number;
  maxWaitMs: number;
  maxQueue: number;
  maxImagesPerRequest: number;
  maxK: number;
  maxRequestPixels: number;
  decodeConcurrency: number;
}

export interface PlscServer {
  readonly app: FastifyInstance;
  readonly info: ServerInfo;
  /** Images admitted and not yet handed to the model. */
  readonly queueDepth: number;
  /**
   * Model runs and images embedded so far (mean batch size = images / batches), and passes over the
   * class centres and the /v1/classify queries they answered, and images decoded.
   */
  stats(): { batches: number; images: number; searchPasses: number; searchQueries: number; imagesDecoded: number };
  /** Start listening on host:port; resolves to the base URL (e.g. http://127.0.0.1:8866). */
  listen(): Promise<string>;
  /** Stop accepting requests, finish the in-flight ones, then release the model. Idempotent. */
  close(): Promise<void>;
}

function positiveInteger(value: number | undefined, fallback: number, name: string): number {
  return checkPositiveInteger(value ?? fallback, name, (field, problem) => new Error(`serve: ${field} ${problem}`));
}

/** Load the model (and centres) and build the HTTP app; call listen() to accept connections. */
export async function createServer(options: ServeOptions): Promise<PlscServer> {
  // Every request brings new images, so sharp's operation cache would only hold memory.
  sharp.cache(false);
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 8866;
  const threshold = options.threshold ?? 0.3;
  if (!Number.isFinite(threshold) || threshold < -1 || threshold > 1) throw new Error(`serve: threshold must be a cosine in [-1, 1], got ${threshold}`);
  const maxBatch = positiveInteger(options.maxBatch, 32, 'maxBatch');
  const maxQueue = positiveInteger(options.maxQueue, 256, 'maxQueue');
  const maxWaitMs = options.maxWaitMs ?? 5;
  if (!Number.isFinite(maxWaitMs) || maxWaitMs < 0) throw new Error(`serve: maxWaitMs must be >= 0, got ${maxWaitMs}`);
  const maxImagesPerRequest = Math.min(positiveInteger(options.maxImagesPerRequest, 64, 'maxImagesPerRequest'), maxQueue);
  const bodyLimit = positiveInteger(options.bodyLimit, 16 * 1024 * 1024, 'bodyLimit');
  const maxRequestPixels = positiveInteger(options.maxRequestPixels, 100_000_000, 'maxRequestPixels');
  // sharp decodes on libuv's thread pool (4 threads by default); more decodes at once only queue there.
  const decodeQueue = new FairDecodeQueue(positiveInteger(options.decodeConcurrency, Math.min(availableParallelism(), 4), 'decodeConcurrency'));
  if (options.token !== undefined && options.token.length === 0) throw new Error('serve: token must not be empty');

  const model = await EmbeddingModel.load(options.modelPath, {
    ...(options.intraOpThreads ? { intraOpThreads: options.intraOpThreads } : {}),
    ...(options.inputSize ? { inputSize: options.inputSize } : {}),
  });
  let search: CenterSearchEngine | undefined;
  try {
    const centers = options.centers ?? (options.centersPath ? await loadClassCenters(options.centersPath) : undefined);
    if (centers) {
      if (centers.dim !== model.info.embeddingDim) {
        throw new Error(`serve: class centres have dim ${centers.dim} but the model embeds to ${model.info.embeddingDim}`);
      }
      search = await CenterSearchEngine.create(centers, {
        ...(options.searchChunkRows ? { chunkRows: options.searchChunkRows } : {}),
        ...(options.intraOpThreads ? { intraOpThreads: options.intraOpThreads } : {}),
      });
    }
  } catch (error) {
    await model.release();
    throw error;
  }
  const classes = search ? search.centers.count : null;
  const maxK = Math.min(positiveInteger(options.maxK, 100, 'maxK'), classes ?? Infinity);
  const geometry = { height: model.info.height, width: model.info.width, ...(options.maxInputPixels ? { maxInputPixels: options.maxInputPixels } : {}) };

  const decodeWaiting = (): number => decodeQueue.waiting;
  const metrics = new ServeMetrics({ queueDepth: () => batcher.queueDepth, decodeWaiting });
  const batcher = new DynamicBatcher<Float32Array, Float32Array>((inputs) => model.embed(inputs), {
    maxBatch,
    maxWaitMs,
    maxQueue,
    onBatch: (size, seconds) => metrics.recordModelRun(size, seconds),
  });

  // Concurrent /v1/classify requests share one pass over the class centres (reading C x D values
  // dominates a search of a few queries): queries queue like images, and one search with the
  // largest k of the batch answers them all (each keeps its own k best, best first).
  const searchEngine = search;
  const searchBatcher =
    searchEngine &&
    new DynamicBatcher<{ query: Float32Array; k: number }, ClassMatch[]>(
      async (items) => {
        const widest = Math.max(...items.map((item) => item.k));
        const matches = await searchEngine.search(items.map((item) => item.query), widest);
        return matches.map((list, i) => list.slice(0, items[i]!.k));
      },
      { maxBatch, maxWaitMs, maxQueue, onBatch: (size) => metrics.recordSearchPass(size) },
    );

  let draining = false;
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit,
    requestTimeout: 60_000,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });

  // Bodies are JSON or raw images: without a text/plain parser Fastify answers 415 for text, and our
  // JSON parser names a refused '__proto__' key instead of calling the body invalid.
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit }, (_request, body, done) => {
    try {
      done(null, parseJsonBody(body as string));
    } catch (error) {
      done(error as Error, undefined);
    }
  });
  // Raw image bodies (one image per request) for /v1/embed and /v1/classify.
  app.addContentTypeParser(/^\s*(image\/[\w.+-]+|application\/octet-stream)\s*(;.*)?$/i, { parseAs: 'buffer', bodyLimit }, (_request, body, done) => done(null, body));

  // While draining, answer with Connection: close so keep-alive clients let go once their
  // in-flight request is done (otherwise close() would wait for their idle sockets).
  app.addHook('onSend', async (_request, reply, payload) => {
    if (draining) reply.header('connection', 'close');
    return payload;
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    let status = typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
    let message = error.message;
    if (error instanceof OverloadedError) metrics.overloadRejections.inc();
    if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') message = `unsupported Content-Type '${request.headers['content-type'] ?? ''}': send application/json or an image/* body`;
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') message = `request body is larger than the limit of ${bodyLimit} bytes`;
    if (error.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || error instanceof SyntaxError) {
      status = 400;
      message = `malformed JSON body: ${error.message}`;
    }
    if (status >= 500 && !(error instanceof OverloadedError)) {
      request.log.error({ err: error }, 'request failed');
      message = 'internal error while handling the request';
    }
    return reply.code(status).send({ statusCode: status, error: STATUS_CODES[status] ?? 'Error', message });
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `no route ${request.method} ${request.url.split('?')[0]}` }));

  // Metrics first: its onRequest hook counts a request in flight before auth may refuse it.
  await app.register(metricsPlugin, { metrics });
  if (options.token !== undefined) await app.register(authPlugin, { token: options.token });
  const pipeline = new ImagePipeline(batcher, decodeQueue, { geometry, maxRequestPixels, decoded: metrics.imagesDecoded });
  await app.register(routesPlugin, { pipeline, search: searchBatcher ?? null, embeddingDim: model.info.embeddingDim, threshold, maxImagesPerRequest, maxK });
  await app.register(healthPlugin, { model: model.info, classes, queueDepth: () => batcher.queueDepth, draining: () => draining });

  const info: ServerInfo = { model: model.info, classes, threshold, maxBatch, maxWaitMs, maxQueue, maxImagesPerRequest, maxK, maxRequestPixels, decodeConcurrency: decodeQueue.concurrency };
  let closing: Promise<void> | undefined;
  return {
    app,
    info,
    get queueDepth() {
      return batcher.queueDepth;
    },
    stats() {
      return metrics.totals();
    },
    async listen() {
      return app.listen({ host, port });
    },
    close() {
      closing ??= (async () => {
        draining = true;
        const forceClose = setTimeout(() => app.server.closeAllConnections(), options.shutdownGraceMs ?? 30_000);
        forceClose.unref();
        // Sockets that finish their last request after close() began become idle; cut those too.
        const sweepIdle = setInterval(() => app.server.closeIdleConnections(), 50);
        sweepIdle.unref();
        try {
          await app.close();
          await batcher.idle();
          await searchBatcher?.idle();
        } finally {
          clearTimeout(forceClose);
          clearInterval(sweepIdle);
          await model.release();
          await search?.release();
        }
      })();
      return closing;
    },
  };
}

/** createServer + listen. */
export async function startServer(options: ServeOptions): Promise<{ server: PlscServer; url: string }> {
  const server = await createServer(options);
  try {
    return { server, url: await server.listen() };
  } catch (error) {
    await server.close();
    throw error;
  }
}
