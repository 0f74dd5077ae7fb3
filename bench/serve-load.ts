// A closed-loop HTTP load generator for `plsc bench serve`: `concurrency` workers each send one
// request at a time over keep-alive connections for a fixed duration and record latencies.
import http from 'node:http';

export interface LoadOptions {
  /** Full URL of the route under test. */
  url: string;
  method?: 'GET' | 'POST';
  body?: Buffer;
  headers?: Record<string, string>;
  concurrency: number;
  durationMs: number;
  /** Per-request timeout (default 30000 ms); a timeout counts as an error. */
  timeoutMs?: number;
}

export interface LoadResult {
  concurrency: number;
  /** Completed requests (successes and errors). */
  requests: number;
  /** Non-2xx answers, timeouts and socket errors. */
  errors: number;
  /** Completed 2xx requests per second. */
  rps: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  duration_s: number;
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: readonly number[], fraction: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1));
  return sorted[rank]!;
}

function once(agent: http.Agent, options: LoadOptions): Promise<boolean> {
  const url = new URL(options.url);
  return new Promise((resolve) => {
    const request = http.request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        path: `${url.pathname}${url.search}`,
        method: options.method ?? 'POST',
        headers: { ...(options.body ? { 'content-length': String(options.body.length) } : {}), ...options.headers },
        timeout: options.timeoutMs ?? 30_000,
      },
      (response) => {
        response.on('data', () => {});
        response.on('end', () => resolve((response.statusCode ?? 0) >= 200 && (response.statusCode ?? 0) < 300));
        response.on('error', () => resolve(false));
      },
    );
    request.on('timeout', () => request.destroy(new Error('timeout')));
    request.on('error', () => resolve(false));
    request.end(options.body);
  });
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency });
  const latencies: number[] = [];
  let errors = 0;
  const started = performance.now();
  const deadline = started + options.durationMs;
  const worker = async () => {
    while (performance.now() < deadline) {
      const begin = performance.now();
      const ok = await once(agent, options);
      latencies.push(performance.now() - begin);
      if (!ok) errors += 1;
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const round = (value: number) => Math.round(value * 100) / 100;
  return {
    concurrency: options.concurrency,
    requests: latencies.length,
    errors,
    rps: round((latencies.length - errors) / seconds),
    p50_ms: round(percentile(latencies, 0.5)),
    p99_ms: round(percentile(latencies, 0.99)),
    max_ms: round(latencies[latencies.length - 1] ?? NaN),
    duration_s: round(seconds),
  };
}
