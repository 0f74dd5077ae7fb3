// `plsc serve`: HTTP serving of an exported embedding model on Fastify + onnxruntime-node.
// Routes: POST /v1/embed, /v1/verify, /v1/classify, the PLSC-compatible
// /FaceClassifyService/inference, GET /healthz and /metrics. See docs/serve.md.
import { createHash, timingSafeEqual } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { STATUS_CODES } from 'node:http';
import sharp from 'sharp';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyRequest } from 'fastify';
import { DynamicBatcher, OverloadedError } from './batcher.js';
import { loadClassCenters, type ClassCenters, type ClassMatch } from '../centers/centers.js';
import { CenterSearchEngine } from '../centers/center-search.js';
import { MetricsRegistry } from './metrics.js';
import { EmbeddingModel, type EmbeddingModelInfo } from './model.js';
import { BadInputError, DEFAULT_MAX_INPUT_PIXELS, PayloadTooLargeError, decodeBase64Image, decodeImageToTensor, readImageHeader, type ImageHeader } from './preprocess.js';
import { FairDecodeQueue } from './decode-queue.js';
import { parseJsonBody } from './json-body.js';

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

interface EmbedBody {
  images?: unknown;
  normalize?: unknown;
  k?: unknown;
  base64_string?: unknown;
}

function l2Normalize(vector: Float32Array): Float32Array {
  let sum = 0;
  for (let i = 0; i < vector.length; i++) sum += vector[i]! * vector[i]!;
  const scale = sum > 0 ? 1 / Math.sqrt(sum) : 0;
  return vector.map((value) => value * scale);
}

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let normA = 0;
  let normB = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    normA += a[i]! * a[i]!;
    normB += b[i]! * b[i]!;
  }
  return normA > 0 && normB > 0 ? dot / Math.sqrt(normA * normB) : 0;
}

function positiveInteger(value: number | undefined, fallback: number, name: string): number {
  const result = value ?? fallback;
  if (!Number.isInteger(result) || result < 1) throw new Error(`serve: ${name} must be a positive integer, got ${result}`);
  return result;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
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
  const tokenDigest = options.token !== undefined ? digest(options.token) : undefined;

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

  const metrics = new MetricsRegistry();
  const requestsTotal = metrics.counter('plsc_http_requests_total', 'HTTP requests by route, method and status code.', ['route', 'method', 'status']);
  const requestSeconds = metrics.histogram(
    'plsc_http_request_duration_seconds',
    'HTTP request latency in seconds by route.',
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    ['route'],
  );
  const batchSize = metrics.histogram('plsc_batch_size', 'Images per model run.', [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
  const inferenceSeconds = metrics.histogram('plsc_inference_duration_seconds', 'Model run time in seconds.', [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]);
  const imagesTotal = metrics.counter('plsc_images_embedded_total', 'Images run through the model.');
  const rejectedTotal = metrics.counter('plsc_overload_rejections_total', 'Requests refused with 503 because the queue was full.');

  const batcher = new DynamicBatcher<Float32Array, Float32Array>((inputs) => model.embed(inputs), {
    maxBatch,
    maxWaitMs,
    maxQueue,
    onBatch: (size, seconds) => {
      batchSize.observe({}, size);
      inferenceSeconds.observe({}, seconds);
      imagesTotal.inc({}, size);
    },
  });
  metrics.gauge('plsc_queue_depth', 'Images admitted and waiting for a model run.', () => batcher.queueDepth);
  const decodedTotal = metrics.counter('plsc_images_decoded_total', 'Images decoded to model input.');
  metrics.gauge('plsc_decode_waiting', 'Images of admitted requests waiting for a decode slot.', () => decodeQueue.waiting);

  // Concurrent /v1/classify requests share one pass over the class centres (reading C x D values
  // dominates a search of a few queries): queries queue like images, and one search with the
  // largest k of the batch answers them all (each keeps its own k best, best first).
  const searchQueries = metrics.histogram('plsc_search_batch_size', 'Queries per pass over the class centres.', [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
  const searchEngine = search;
  const searchBatcher =
    searchEngine &&
    new DynamicBatcher<{ query: Float32Array; k: number }, ClassMatch[]>(
      async (items) => {
        const widest = Math.max(...items.map((item) => item.k));
        const matches = await searchEngine.search(items.map((item) => item.query), widest);
        return matches.map((list, i) => list.slice(0, items[i]!.k));
      },
      { maxBatch, maxWaitMs, maxQueue, onBatch: (size) => searchQueries.observe({}, size) },
    );
  let inFlight = 0;
  metrics.gauge('plsc_requests_in_flight', 'HTTP requests being handled.', () => inFlight);

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

  app.addHook('onRequest', async (request, reply) => {
    inFlight += 1;
    reply.raw.once('close', () => (inFlight -= 1));
    if (!tokenDigest || request.url === '/healthz' || request.url.startsWith('/healthz?')) return;
    const header = request.headers.authorization ?? '';
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match || !timingSafeEqual(digest(match[1]!.trim()), tokenDigest)) {
      reply.header('www-authenticate', 'Bearer');
      return reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: match ? 'invalid bearer token' : 'missing Authorization: Bearer <token> header' });
    }
  });
  // While draining, answer with Connection: close so keep-alive clients let go once their
  // in-flight request is done (otherwise close() would wait for their idle sockets).
  app.addHook('onSend', async (_request, reply, payload) => {
    if (draining) reply.header('connection', 'close');
    return payload;
  });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    requestsTotal.inc({ route, method: request.method, status: String(reply.statusCode) });
    requestSeconds.observe({ route }, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    let status = typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
    let message = error.message;
    if (error instanceof OverloadedError) rejectedTotal.inc();
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

  /** Images of a request: a raw image body, or base64 strings under `field` of a JSON object. */
  function collectImages(request: FastifyRequest, field: 'images' | 'base64_string'): { images: Buffer[]; body: EmbedBody } {
    const raw = request.body;
    if (Buffer.isBuffer(raw)) return { images: [raw], body: {} };
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new BadInputError(`body must be a JSON object like {"${field}": ["<base64 image>", ...]}`);
    }
    const body = raw as EmbedBody;
    let list = body[field];
    if (field === 'base64_string' && typeof list === 'string') list = [list];
    if (list === undefined) throw new BadInputError(`body is missing '${field}': an array of base64-encoded images`);
    if (!Array.isArray(list)) throw new BadInputError(`'${field}' must be an array of base64-encoded images`);
    if (list.length === 0) throw new BadInputError(`'${field}' is empty: send at least one image`);
    if (list.length > maxImagesPerRequest) throw new BadInputError(`'${field}' has ${list.length} images; at most ${maxImagesPerRequest} per request`);
    return { images: list.map((item, i) => decodeBase64Image(item, `${field}[${i}]`)), body };
  }

  function checkPixelBudget(headers: ImageHeader[], names: string[]): void {
    const total = headers.reduce((sum, { width, height }) => sum + width * height, 0);
    if (total <= maxRequestPixels) return;
    let largest = 0;
    headers.forEach(({ width, height }, i) => {
      if (width * height > headers[largest]!.width * headers[largest]!.height) largest = i;
    });
    const { width, height } = headers[largest]!;
    throw new PayloadTooLargeError(
      `the request's ${headers.length} image${headers.length === 1 ? '' : 's'} hold ${total} pixels in all (largest ${names[largest]}: ${width}x${height}), ` +
        `over the budget of ${maxRequestPixels} pixels per request; send fewer or smaller images`,
    );
  }

  /** Check the pixel budget from the headers, decode (fairly across requests), queue and embed; returns raw embeddings in request order. */
  async function embedAll(images: Buffer[], field: string, rawBody: boolean): Promise<Float32Array[]> {
    const admission = batcher.admit(images.length);
    const names = images.map((_, i) => (rawBody ? 'request body' : `${field}[${i}]`));
    const decodes = decodeQueue.group();
    let tensors: Float32Array[];
    try {
      const headers = await Promise.all(images.map((bytes, i) => readImageHeader(bytes, names[i]!, geometry.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS)));
      checkPixelBudget(headers, names);
      tensors = await Promise.all(
        images.map((bytes, i) =>
          decodes.run(async () => {
            const tensor = await decodeImageToTensor(bytes, names[i]!, geometry);
            decodedTotal.inc();
            return tensor;
          }),
        ),
      );
    } catch (error) {
      decodes.cancel(error instanceof Error ? error : new Error(String(error)));
      admission.release();
      throw error;
    }
    return admission.submit(tensors);
  }

  function booleanOption(value: unknown, name: string): boolean {
    if (value === undefined) return false;
    if (typeof value === 'boolean') return value;
    if (value === 'true' || value === '1') return true;
    if (value === 'false' || value === '0') return false;
    throw new BadInputError(`'${name}' must be a boolean, got ${JSON.stringify(value)}`);
  }

  app.post('/v1/embed', async (request) => {
    const { images, body } = collectImages(request, 'images');
    const query = request.query as Record<string, unknown>;
    const normalize = booleanOption(body.normalize ?? query.normalize, 'normalize');
    const embeddings = await embedAll(images, 'images', Buffer.isBuffer(request.body));
    return {
      embeddings: embeddings.map((vector) => Array.from(normalize ? l2Normalize(vector) : vector)),
      dim: model.info.embeddingDim,
      normalized: normalize,
    };
  });

  app.post('/v1/verify', async (request) => {
    if (Buffer.isBuffer(request.body)) throw new BadInputError("verify needs two images: send JSON {\"images\": [\"<base64>\", \"<base64>\"]}");
    const { images } = collectImages(request, 'images');
    if (images.length !== 2) throw new BadInputError(`verify needs exactly 2 images, got ${images.length}`);
    const [first, second] = await embedAll(images, 'images', false);
    const similarity = cosine(first!, second!);
    return { similarity, same: similarity >= threshold, threshold };
  });

  app.post('/v1/classify', async (request, reply) => {
    if (!searchBatcher) {
      return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: 'classification is disabled: start the server with class centres (--centers centers.safetensors)' });
    }
    const { images, body } = collectImages(request, 'images');
    const query = request.query as Record<string, unknown>;
    const kValue = body.k ?? (query.k !== undefined ? Number(query.k) : 5);
    if (typeof kValue !== 'number' || !Number.isInteger(kValue) || kValue < 1 || kValue > maxK) {
      throw new BadInputError(`'k' must be an integer in 1..${maxK}, got ${JSON.stringify(body.k ?? query.k)}`);
    }
    const embeddings = await embedAll(images, 'images', Buffer.isBuffer(request.body));
    const matches: ClassMatch[][] = await searchBatcher.run(embeddings.map((query) => ({ query, k: kValue })));
    return { k: kValue, results: matches.map((list) => list.map(({ index, score }) => ({ class: index, score }))) };
  });

  app.post('/FaceClassifyService/inference', async (request) => {
    if (Buffer.isBuffer(request.body)) throw new BadInputError('send JSON {"base64_string": ["<base64>", ...]}');
    const { images } = collectImages(request, 'base64_string');
    const embeddings = await embedAll(images, 'base64_string', false);
    return { instance: embeddings.map((vector) => ({ embedding: Array.from(vector) })) };
  });

  app.get('/healthz', async (_request, reply) => {
    const body = {
      status: draining ? 'draining' : 'ok',
      model: { input: [3, model.info.height, model.info.width], embeddingDim: model.info.embeddingDim },
      classes,
      queueDepth: batcher.queueDepth,
    };
    return reply.code(draining ? 503 : 200).send(body);
  });

  app.get('/metrics', async (_request, reply) => reply.header('content-type', 'text/plain; version=0.0.4; charset=utf-8').send(metrics.render()));

  const info: ServerInfo = { model: model.info, classes, threshold, maxBatch, maxWaitMs, maxQueue, maxImagesPerRequest, maxK, maxRequestPixels, decodeConcurrency: decodeQueue.concurrency };
  let closing: Promise<void> | undefined;
  return {
    app,
    info,
    get queueDepth() {
      return batcher.queueDepth;
    },
    stats() {
      const { count, sum } = batchSize.snapshot();
      const searches = searchQueries.snapshot();
      return { batches: count, images: sum, searchPasses: searches.count, searchQueries: searches.sum, imagesDecoded: decodedTotal.get() };
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
