// A minimal Prometheus metrics registry (text exposition format 0.0.4): counters, gauges and
// histograms with labels. Enough for /metrics without another dependency.

type LabelValues = Record<string, string>;

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatLabels(names: readonly string[], values: readonly string[], extra?: [string, string]): string {
  const parts = names.map((name, i) => `${name}="${escapeLabelValue(values[i]!)}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

function formatNumber(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

interface Metric {
  render(): string;
}

abstract class LabelledMetric<Series> implements Metric {
  protected readonly series = new Map<string, { values: string[]; data: Series }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {}

  protected seriesFor(labels: LabelValues): Series {
    const values = this.labelNames.map((label) => {
      const value = labels[label];
      if (value === undefined) throw new Error(`metric ${this.name}: missing label '${label}'`);
      return value;
    });
    const key = values.join('\u0000');
    let entry = this.series.get(key);
    if (!entry) {
      entry = { values, data: this.create() };
      this.series.set(key, entry);
    }
    return entry.data;
  }

  protected abstract create(): Series;
  abstract render(): string;
}

export class MetricCounter extends LabelledMetric<{ value: number }> {
  protected create() {
    return { value: 0 };
  }
  inc(labels: LabelValues = {}, amount = 1): void {
    this.seriesFor(labels).value += amount;
  }
  get(labels: LabelValues = {}): number {
    return this.seriesFor(labels).value;
  }
  render(): string {
    if (this.labelNames.length === 0) this.seriesFor({});
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const { values, data } of this.series.values()) lines.push(`${this.name}${formatLabels(this.labelNames, values)} ${formatNumber(data.value)}`);
    return lines.join('\n');
  }
}

/** A gauge whose value is read from a callback at scrape time. */
export class MetricGauge implements Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly read: () => number,
  ) {}
  render(): string {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`, `${this.name} ${formatNumber(this.read())}`].join('\n');
  }
}

interface HistogramSeries {
  counts: number[];
  sum: number;
  count: number;
}

export class MetricHistogram extends LabelledMetric<HistogramSeries> {
  readonly buckets: readonly number[];
  constructor(name: string, help: string, buckets: readonly number[], labelNames: readonly string[] = []) {
    super(name, help, labelNames);
    this.buckets = [...buckets].sort((a, b) => a - b);
  }
  protected create(): HistogramSeries {
    return { counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0 };
  }
  observe(labels: LabelValues, value: number): void {
    const series = this.seriesFor(labels);
    series.sum += value;
    series.count += 1;
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) series.counts[i]! += 1;
  }
  /** Observations so far (count, sum) for one label set. */
  snapshot(labels: LabelValues = {}): { count: number; sum: number } {
    const series = this.seriesFor(labels);
    return { count: series.count, sum: series.sum };
  }
  render(): string {
    if (this.labelNames.length === 0) this.seriesFor({});
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const { values, data } of this.series.values()) {
      this.buckets.forEach((bound, i) => lines.push(`${this.name}_bucket${formatLabels(this.labelNames, values, ['le', formatNumber(bound)])} ${data.counts[i]}`));
      lines.push(`${this.name}_bucket${formatLabels(this.labelNames, values, ['le', '+Inf'])} ${data.count}`);
      lines.push(`${this.name}_sum${formatLabels(this.labelNames, values)} ${formatNumber(data.sum)}`);
      lines.push(`${this.name}_count${formatLabels(this.labelNames, values)} ${data.count}`);
    }
    return lines.join('\n');
  }
}

export class MetricsRegistry {
  private readonly metrics: Metric[] = [];
  counter(name: string, help: string, labelNames: readonly string[] = []): MetricCounter {
    return this.add(new MetricCounter(name, help, labelNames));
  }
  gauge(name: string, help: string, read: () => number): MetricGauge {
    return this.add(new MetricGauge(name, help, read));
  }
  histogram(name: string, help: string, buckets: readonly number[], labelNames: readonly string[] = []): MetricHistogram {
    return this.add(new MetricHistogram(name, help, buckets, labelNames));
  }
  private add<M extends Metric>(metric: M): M {
    this.metrics.push(metric);
    return metric;
  }
  /** Prometheus text exposition (Content-Type: text/plain; version=0.0.4). */
  render(): string {
    return this.metrics.map((metric) => metric.render()).join('\n') + '\n';
  }
}
