// Prometheus metrics of `plsc serve`: the instruments (HTTP requests, model runs, class-centre
// searches, image decoding) and the plugin that counts every request and answers GET /metrics.
import { MetricsRegistry, type MetricCounter, type MetricHistogram } from '../metrics.js';
import { rootLevel } from './root-level.js';

const SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/** Live values the gauges read when /metrics is scraped. */
export interface ServeMetricsSources {
  /** Images admitted and waiting for a model run. */
  queueDepth: () => number;
  /** Images of admitted requests waiting for a decode slot. */
  decodeWaiting: () => number;
}

export class ServeMetrics {
  readonly registry = new MetricsRegistry();
  readonly requestsTotal: MetricCounter;
  readonly requestSeconds: MetricHistogram;
  readonly overloadRejections: MetricCounter;
  readonly imagesDecoded: MetricCounter;
  private readonly batchSize: MetricHistogram;
  private readonly inferenceSeconds: MetricHistogram;
  private readonly imagesEmbedded: MetricCounter;
  private readonly searchBatchSize: MetricHistogram;
  /** HTTP requests being handled. */
  requestsInFlight = 0;

  constructor(sources: ServeMetricsSources) {
    const metrics = this.registry;
    this.requestsTotal = metrics.counter('plsc_http_requests_total', 'HTTP requests by route, method and status code.', ['route', 'method', 'status']);
    this.requestSeconds = metrics.histogram(
      'plsc_http_request_duration_seconds',
      'HTTP request latency in seconds by route.',
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      ['route'],
    );
    this.batchSize = metrics.histogram('plsc_batch_size', 'Images per model run.', SIZE_BUCKETS);
    this.inferenceSeconds = metrics.histogram('plsc_inference_duration_seconds', 'Model run time in seconds.', [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]);
    this.imagesEmbedded = metrics.counter('plsc_images_embedded_total', 'Images run through the model.');
    this.overloadRejections = metrics.counter('plsc_overload_rejections_total', 'Requests refused with 503 because the queue was full.');
    metrics.gauge('plsc_queue_depth', 'Images admitted and waiting for a model run.', sources.queueDepth);
    this.imagesDecoded = metrics.counter('plsc_images_decoded_total', 'Images decoded to model input.');
    metrics.gauge('plsc_decode_waiting', 'Images of admitted requests waiting for a decode slot.', sources.decodeWaiting);
    this.searchBatchSize = metrics.histogram('plsc_search_batch_size', 'Queries per pass over the class centres.', SIZE_BUCKETS);
    metrics.gauge('plsc_requests_in_flight', 'HTTP requests being handled.', () => this.requestsInFlight);
  }

  recordModelRun(images: number, seconds: number): void {
    this.batchSize.observe({}, images);
    this.inferenceSeconds.observe({}, seconds);
    this.imagesEmbedded.inc({}, images);
  }

  recordSearchPass(queries: number): void {
    this.searchBatchSize.observe({}, queries);
  }

  /** Model runs and the images they embedded, passes over the class centres and their queries, images decoded. */
  totals(): { batches: number; images: number; searchPasses: number; searchQueries: number; imagesDecoded: number } {
    const { count, sum } = this.batchSize.snapshot();
    const searches = this.searchBatchSize.snapshot();
    return { batches: count, images: sum, searchPasses: searches.count, searchQueries: searches.sum, imagesDecoded: this.imagesDecoded.get() };
  }
}

export interface MetricsPluginOptions {
  metrics: ServeMetrics;
}

export const metricsPlugin = rootLevel<MetricsPluginOptions>('plsc-metrics', async (app, { metrics }) => {
  app.addHook('onRequest', async (_request, reply) => {
    metrics.requestsInFlight += 1;
    reply.raw.once('close', () => (metrics.requestsInFlight -= 1));
  });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.requestsTotal.inc({ route, method: request.method, status: String(reply.statusCode) });
    metrics.requestSeconds.observe({ route }, reply.elapsedTime / 1000);
  });
  app.get('/metrics', async (_request, reply) => reply.header('content-type', 'text/plain; version=0.0.4; charset=utf-8').send(metrics.registry.render()));
});
