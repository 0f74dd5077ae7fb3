// PlscClient: a small typed client for `plsc serve` over fetch (Node >= 18 or browsers).

/** An encoded image (JPEG/PNG/... bytes) or a string that is already base64. */
export type PlscImage = Uint8Array | string;

export interface PlscClientOptions {
  /** Server base URL, e.g. http://127.0.0.1:8866 */
  baseUrl: string;
  /** Bearer token when the server was started with one. */
  token?: string;
  /** Per-request timeout in milliseconds (default 30000). */
  timeoutMs?: number;
  /** fetch implementation (default: globalThis.fetch). */
  fetch?: typeof fetch;
}

export interface PlscVerifyResult {
  /** Cosine similarity of the two embeddings. */
  similarity: number;
  /** similarity >= threshold. */
  same: boolean;
  threshold: number;
}

export interface PlscClassMatch {
  /** Class index (row of the class-centre matrix). */
  class: number;
  /** Cosine similarity to the class centre. */
  score: number;
}

export interface PlscHealth {
  status: 'ok' | 'draining';
  model: { input: [number, number, number]; embeddingDim: number };
  classes: number | null;
  queueDepth: number;
}

/** A non-2xx answer; `status` is the HTTP status and `message` the server's explanation. */
export class PlscHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: unknown,
  ) {
    super(message);
    this.name = 'PlscHttpError';
  }
}

function toBase64(image: PlscImage): string {
  if (typeof image === 'string') return image;
  if (typeof Buffer !== 'undefined') return Buffer.from(image.buffer, image.byteOffset, image.byteLength).toString('base64');
  let binary = '';
  for (let i = 0; i < image.length; i += 0x8000) binary += String.fromCharCode(...image.subarray(i, i + 0x8000));
  return btoa(binary);
}

export class PlscClient {
  private readonly baseUrl: string;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly options: PlscClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== 'function') throw new Error('PlscClient: no fetch implementation available; pass options.fetch');
    this.fetchImpl = fetchImpl;
  }

  private async request<T>(method: 'GET' | 'POST', path: string, body?: unknown, accept: number[] = []): Promise<T> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.options.token !== undefined) headers.authorization = `Bearer ${this.options.token}`;
    const response = await this.fetchImpl(`${this.baseUrl}${path}`, {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(this.options.timeoutMs ?? 30_000),
    });
    const text = await response.text();
    const isJson = (response.headers.get('content-type') ?? '').includes('application/json');
    let parsed: unknown = text;
    if (isJson) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (!response.ok && !accept.includes(response.status)) {
      const message = typeof parsed === 'object' && parsed !== null && 'message' in parsed ? String((parsed as { message: unknown }).message) : text.slice(0, 200);
      throw new PlscHttpError(response.status, `${method} ${path}: ${response.status} ${message}`, parsed);
    }
    return parsed as T;
  }

  /** Raw embeddings (as the model outputs them), or L2-normalized with { normalize: true }. */
  async embed(images: readonly PlscImage[], options: { normalize?: boolean } = {}): Promise<number[][]> {
    const result = await this.request<{ embeddings: number[][] }>('POST', '/v1/embed', { images: images.map(toBase64), normalize: options.normalize ?? false });
    return result.embeddings;
  }

  /** Compare two face images at the server's threshold. */
  verify(first: PlscImage, second: PlscImage): Promise<PlscVerifyResult> {
    return this.request<PlscVerifyResult>('POST', '/v1/verify', { images: [toBase64(first), toBase64(second)] });
  }

  /** Top-k classes per image, best first. */
  async classify(images: readonly PlscImage[], k = 5): Promise<PlscClassMatch[][]> {
    const result = await this.request<{ results: PlscClassMatch[][] }>('POST', '/v1/classify', { images: images.map(toBase64), k });
    return result.results;
  }

  /** /healthz; resolves (with status 'draining') while the server shuts down. */
  health(): Promise<PlscHealth> {
    return this.request<PlscHealth>('GET', '/healthz', undefined, [503]);
  }

  /** Prometheus metrics text. */
  metrics(): Promise<string> {
    return this.request<string>('GET', '/metrics');
  }
}
