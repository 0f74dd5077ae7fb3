// The model's routes: POST /v1/embed, /v1/verify, /v1/classify (with class centres) and PLSC's
// /FaceClassifyService/inference. Bodies are JSON with base64 images, or one raw image.
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { DynamicBatcher } from '../batcher.js';
import type { ClassMatch } from '../../centers/centers.js';
import type { ImagePipeline } from '../image-pipeline.js';
import { BadInputError, decodeBase64Image } from '../preprocess.js';

export interface RoutesOptions {
  pipeline: ImagePipeline;
  /** Queries to the class centres; null when classification is off (/v1/classify answers 404). */
  search: DynamicBatcher<{ query: Float32Array; k: number }, ClassMatch[]> | null;
  embeddingDim: number;
  /** Cosine similarity at or above which /v1/verify calls two faces the same. */
  threshold: number;
  maxImagesPerRequest: number;
  maxK: number;
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

function booleanOption(value: unknown, name: string): boolean {
  if (value === undefined) return false;
  if (typeof value === 'boolean') return value;
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new BadInputError(`'${name}' must be a boolean, got ${JSON.stringify(value)}`);
}

export const routesPlugin: FastifyPluginAsync<RoutesOptions> = async (app, options) => {
  const { pipeline, search, threshold, maxImagesPerRequest, maxK } = options;

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

  app.post('/v1/embed', async (request) => {
    const { images, body } = collectImages(request, 'images');
    const query = request.query as Record<string, unknown>;
    const normalize = booleanOption(body.normalize ?? query.normalize, 'normalize');
    const embeddings = await pipeline.embed(images, 'images', Buffer.isBuffer(request.body));
    return {
      embeddings: embeddings.map((vector) => Array.from(normalize ? l2Normalize(vector) : vector)),
      dim: options.embeddingDim,
      normalized: normalize,
    };
  });

  app.post('/v1/verify', async (request) => {
    if (Buffer.isBuffer(request.body)) throw new BadInputError("verify needs two images: send JSON {\"images\": [\"<base64>\", \"<base64>\"]}");
    const { images } = collectImages(request, 'images');
    if (images.length !== 2) throw new BadInputError(`verify needs exactly 2 images, got ${images.length}`);
    const [first, second] = await pipeline.embed(images, 'images', false);
    const similarity = cosine(first!, second!);
    return { similarity, same: similarity >= threshold, threshold };
  });

  app.post('/v1/classify', async (request, reply) => {
    if (!search) {
      return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: 'classification is disabled: start the server with class centres (--centers centers.safetensors)' });
    }
    const { images, body } = collectImages(request, 'images');
    const query = request.query as Record<string, unknown>;
    const kValue = body.k ?? (query.k !== undefined ? Number(query.k) : 5);
    if (typeof kValue !== 'number' || !Number.isInteger(kValue) || kValue < 1 || kValue > maxK) {
      throw new BadInputError(`'k' must be an integer in 1..${maxK}, got ${JSON.stringify(body.k ?? query.k)}`);
    }
    const embeddings = await pipeline.embed(images, 'images', Buffer.isBuffer(request.body));
    const matches: ClassMatch[][] = await search.run(embeddings.map((query) => ({ query, k: kValue })));
    return { k: kValue, results: matches.map((list) => list.map(({ index, score }) => ({ class: index, score }))) };
  });

  app.post('/FaceClassifyService/inference', async (request) => {
    if (Buffer.isBuffer(request.body)) throw new BadInputError('send JSON {"base64_string": ["<base64>", ...]}');
    const { images } = collectImages(request, 'base64_string');
    const embeddings = await pipeline.embed(images, 'base64_string', false);
    return { instance: embeddings.map((vector) => ({ embedding: Array.from(vector) })) };
  });
};
