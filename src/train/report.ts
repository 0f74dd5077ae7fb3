/**
 * Training report: reads the JSON-lines metrics file that ProgressReporter writes and renders a
 * self-contained HTML page (inline SVG and CSS, no scripts, nothing fetched) with the loss,
 * learning-rate, validation-accuracy, training-accuracy and throughput curves against the step.
 *
 * A metrics file appended to by a resumed run can repeat steps; a record whose step is not past
 * the previous one replaces everything recorded from that step on (the resumed run wins).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/** A metrics file that cannot be read or holds a malformed line. */
export class MetricsFileError extends Error {
  override readonly name = 'MetricsFileError';
  readonly file: string;
  readonly line: number | undefined;
  constructor(file: string, message: string, line?: number) {
    super(`${file}${line === undefined ? '' : ` line ${line}`}: ${message}`);
    this.file = file;
    this.line = line;
  }
}

export interface TrainPoint {
  step: number;
  epoch: number | null;
  loss: number | null;
  lr: number | null;
  imagesPerSecond: number | null;
  accuracy: number | null;
  time: string | null;
}

export interface ValidationPoint {
  step: number;
  accuracy: number | null;
  std: number | null;
  xnorm: number | null;
}

export interface ClassificationPoint {
  step: number;
  images: number | null;
  top1: number | null;
  top5: number | null;
}

export interface TrainingMetrics {
  /** Training records in step order. */
  train: TrainPoint[];
  /** Validation points per target, in step order; targets in order of first appearance. */
  validation: Map<string, ValidationPoint[]>;
  /** Held-out classification points per dataset (valDatasets), in step order. */
  classification: Map<string, ClassificationPoint[]>;
}

type JsonObject = Record<string, unknown>;

function optionalNumber(record: JsonObject, key: string, fail: (message: string) => never): number | null {
  const value = record[key];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'number' || !Number.isFinite(value)) fail(`"${key}" must be a number or null, got ${JSON.stringify(value)}`);
  return value as number;
}

/** Drop the points at or past `step` (a resumed run re-logs them). */
function truncateFrom<T extends { step: number }>(points: T[], step: number): void {
  if (points.length === 0 || points[points.length - 1]!.step < step) return;
  let keep = points.length;
  while (keep > 0 && points[keep - 1]!.step >= step) keep--;
  points.length = keep;
}

/**
 * The `results` of a validation or classification record, one point per target: each result must be
 * an object with a non-empty "target"; a target's points from this step on are replaced (a resumed run).
 */
function addResultPoints<P extends { step: number }>(
  record: JsonObject,
  kind: string,
  series: Map<string, P[]>,
  step: number,
  fail: (message: string) => never,
  toPoint: (result: JsonObject, failResult: (message: string) => never) => P,
): void {
  const results = record.results;
  if (!Array.isArray(results)) fail(`"results" of a ${kind} record must be an array, got ${JSON.stringify(results)}`);
  (results as unknown[]).forEach((entry, k) => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail(`results[${k}] must be an object, got ${JSON.stringify(entry)}`);
    const result = entry as JsonObject;
    const failResult = (message: string): never => fail(`results[${k}]: ${message}`);
    if (typeof result.target !== 'string' || result.target === '') failResult(`"target" must be a non-empty string, got ${JSON.stringify(result.target)}`);
    const target = result.target as string;
    let points = series.get(target);
    if (points === undefined) series.set(target, (points = []));
    truncateFrom(points, step);
    points.push(toPoint(result, failResult));
  });
}

/** Parse metrics JSON lines; errors name the file (`name`) and line. Blank lines are ignored. */
export function parseTrainingMetrics(text: string, name = '<metrics>'): TrainingMetrics {
  const train: TrainPoint[] = [];
  const validation = new Map<string, ValidationPoint[]>();
  const classification = new Map<string, ClassificationPoint[]>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNumber = i + 1;
    const line = lines[i]!.trim();
    if (line === '') continue;
    const fail = (message: string): never => {
      throw new MetricsFileError(name, message, lineNumber);
    };
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      const shown = line.length > 60 ? `${line.slice(0, 60)}...` : line;
      fail(`not a JSON object (${(error as Error).message}): ${shown}`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(`expected a JSON object, got ${JSON.stringify(value)}`);
    const record = value as JsonObject;
    const step = record.step;
    if (typeof step !== 'number' || !Number.isInteger(step) || step < 0) fail(`"step" must be a non-negative integer, got ${JSON.stringify(step)}`);
    const stepNumber = step as number;
    const type = record.type;
    if (type === undefined || type === 'train') {
      truncateFrom(train, stepNumber);
      const time = record.time;
      train.push({
        step: stepNumber,
        epoch: optionalNumber(record, 'epoch', fail),
        loss: optionalNumber(record, 'loss', fail),
        lr: optionalNumber(record, 'lr', fail),
        imagesPerSecond: optionalNumber(record, 'img_per_s', fail),
        accuracy: optionalNumber(record, 'accuracy', fail),
        time: typeof time === 'string' ? time : null,
      });
    } else if (type === 'validation') {
      addResultPoints(record, 'validation', validation, stepNumber, fail, (result, failResult) => ({
        step: stepNumber,
        accuracy: optionalNumber(result, 'accuracy', failResult),
        std: optionalNumber(result, 'std', failResult),
        xnorm: optionalNumber(result, 'xnorm', failResult),
      }));
    } else if (type === 'bad_samples') {
      // Counted in the log and the file; the report charts training and validation only.
    } else if (type === 'classification') {
      addResultPoints(record, 'classification', classification, stepNumber, fail, (result, failResult) => ({
        step: stepNumber,
        images: optionalNumber(result, 'images', failResult),
        top1: optionalNumber(result, 'top1', failResult),
        top5: optionalNumber(result, 'top5', failResult),
      }));
    } else {
      fail(`unknown record type ${JSON.stringify(type)} (expected "validation", "classification", "bad_samples" or none)`);
    }
  }
  if (train.length === 0 && validation.size === 0 && classification.size === 0) throw new MetricsFileError(name, 'no metrics records (empty file?)');
  return { train, validation, classification };
}

/** Read and parse a metrics file (see parseTrainingMetrics). */
export async function readTrainingMetrics(metricsPath: string): Promise<TrainingMetrics> {
  const path = resolve(metricsPath);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new MetricsFileError(path, `cannot read metrics file: ${(error as Error).message}`);
  }
  return parseTrainingMetrics(text, path);
}

// ---------------------------------------------------------------------------------------------
// SVG charts

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

const WIDTH = 960;
const HEIGHT = 320;
const MARGIN = { left: 78, right: 24, top: 34, bottom: 50 };
/** Points per series beyond which a series is reduced (min and max of each bucket kept). */
const MAX_POINTS = 4000;

interface SeriesSpec {
  name: string;
  color: string;
  /** [step, value]; a null value breaks the line. */
  points: Array<[number, number | null]>;
  /** Draw a marker on every point (validation). */
  markers?: boolean;
  /** Half-height of an error bar per point (same order as points). */
  errors?: Array<number | null>;
  /** Tooltip text per point. */
  labels?: string[];
}

interface ChartSpec {
  id: string;
  title: string;
  yLabel: string;
  series: SeriesSpec[];
  /** Clamp the value axis (accuracy lies in [0, 1]). */
  yClamp?: [number, number];
  /** Start the value axis at zero when all values are positive (learning rate, throughput). */
  includeZero?: boolean;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** Round tick positions (1, 2, 2.5 or 5 times a power of ten) covering [min, max]. */
function niceTicks(min: number, max: number, target = 6): { ticks: number[]; step: number; min: number; max: number } {
  if (!(max > min)) {
    const pad = Math.abs(min) > 0 ? Math.abs(min) * 0.1 : 1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / Math.max(1, target - 1);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = ([1, 2, 2.5, 5, 10].find((m) => m * power >= raw) ?? 10) * power;
  const lo = Math.floor(min / step + 1e-9) * step;
  const hi = Math.ceil(max / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let k = 0; lo + k * step <= hi + step * 1e-9; k++) ticks.push(Number((lo + k * step).toPrecision(12)));
  return { ticks, step, min: lo, max: hi };
}

function formatTick(value: number, step: number): string {
  if (value === 0) return '0';
  const magnitude = Math.max(Math.abs(value), step);
  if (magnitude < 1e-3 || magnitude >= 1e7) return value.toExponential(Math.max(0, Math.min(3, Math.ceil(-Math.log10(step / Math.abs(value)) - 1e-9))));
  // Enough decimals to write the tick step exactly (0.025 -> 3), so ticks never round to look uneven.
  let decimals = 0;
  while (decimals < 8 && Math.abs(Math.round(step * 10 ** decimals) - step * 10 ** decimals) > 1e-6) decimals++;
  return value.toFixed(decimals);
}

function formatStepTick(value: number): string {
  if (Math.abs(value) >= 1e6 && value % 1e5 === 0) return `${value / 1e6}M`;
  if (Math.abs(value) >= 1e4 && value % 100 === 0) return `${value / 1e3}k`;
  return String(value);
}

/** Keep the first, min and max, and last point of each bucket so spikes survive the reduction. */
function reducePoints(points: Array<[number, number | null]>): Array<[number, number | null]> {
  if (points.length <= MAX_POINTS) return points;
  const bucket = Math.ceil(points.length / (MAX_POINTS / 4));
  const out: Array<[number, number | null]> = [];
  for (let start = 0; start < points.length; start += bucket) {
    const end = Math.min(points.length, start + bucket);
    let minIndex = -1;
    let maxIndex = -1;
    let hasGap = false;
    for (let i = start; i < end; i++) {
      const v = points[i]![1];
      if (v === null) {
        hasGap = true;
        continue;
      }
      if (minIndex < 0 || v < points[minIndex]![1]!) minIndex = i;
      if (maxIndex < 0 || v > points[maxIndex]![1]!) maxIndex = i;
    }
    const keep = new Set([start, end - 1]);
    if (minIndex >= 0) keep.add(minIndex);
    if (maxIndex >= 0) keep.add(maxIndex);
    for (const i of [...keep].sort((a, b) => a - b)) out.push(points[i]!);
    if (hasGap && out[out.length - 1]![1] !== null) out.push([points[end - 1]![0], null]);
  }
  return out;
}

/** [min, max] without spreading (metrics files can hold many records). */
function extent(values: readonly number[]): [number, number] {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

function num(value: number): string {
  return Number(value.toFixed(2)).toString();
}

const TITLE_Y = 20;
const LEGEND_ROW = 16;

/** Legend entries packed into rows: the first beside the title, the rest below it (the plot moves down). */
function layoutLegend(spec: ChartSpec, plotW: number): { rows: number[][]; widths: number[] } {
  if (!(spec.series.length > 1 || spec.series.some((s) => s.markers))) return { rows: [], widths: [] };
  const widths = spec.series.map((s) => s.name.length * 7 + 36);
  // rows[0] shares the line with the title (it stays empty when even one entry does not fit there).
  const rows: number[][] = [[]];
  let available = plotW - (spec.title.length * 8.5 + 24);
  let used = 0;
  widths.forEach((w, i) => {
    if (used + w > available && (rows.length === 1 || rows[rows.length - 1]!.length > 0)) {
      rows.push([]);
      available = plotW;
      used = 0;
    }
    rows[rows.length - 1]!.push(i);
    used += w;
  });
  return { rows, widths };
}

function renderChart(spec: ChartSpec): string {
  const values: number[] = [];
  const steps: number[] = [];
  for (const s of spec.series) {
    s.points.forEach(([step, v], i) => {
      steps.push(step);
      if (v === null) return;
      const err = s.errors?.[i] ?? 0;
      values.push(v - err, v + err);
    });
  }
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const legend = layoutLegend(spec, plotW);
  const top = MARGIN.top + Math.max(0, legend.rows.length - 1) * LEGEND_ROW;
  const height = HEIGHT + (top - MARGIN.top);
  const plotH = height - top - MARGIN.bottom;
  const parts: string[] = [];
  parts.push(
    `<svg id="${spec.id}" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${WIDTH} ${height}" width="${WIDTH}" height="${height}" role="img" aria-label="${escapeHtml(spec.title)}">`,
    `<title>${escapeHtml(spec.title)}</title>`,
    `<text class="chart-title" x="${MARGIN.left}" y="${TITLE_Y}">${escapeHtml(spec.title)}</text>`,
  );
  if (values.length === 0) {
    parts.push(`<text class="empty" x="${WIDTH / 2}" y="${height / 2}" text-anchor="middle">no data</text></svg>`);
    return parts.join('\n');
  }
  let [yLo, yHi] = extent(values);
  if (spec.includeZero && yLo > 0) yLo = 0;
  if (yHi > yLo) {
    const pad = (yHi - yLo) * 0.04;
    if (!(spec.includeZero && yLo === 0)) yLo -= pad;
    yHi += pad;
  }
  if (spec.yClamp) {
    yLo = Math.max(spec.yClamp[0], yLo);
    yHi = Math.min(spec.yClamp[1], yHi);
  }
  const yAxis = niceTicks(yLo, yHi, 6);
  if (spec.yClamp) {
    yAxis.min = Math.max(spec.yClamp[0], yAxis.min);
    yAxis.max = Math.min(spec.yClamp[1], yAxis.max);
    yAxis.ticks = yAxis.ticks.filter((t) => t >= yAxis.min - 1e-12 && t <= yAxis.max + 1e-12);
  }
  const [, lastStep] = extent(steps);
  const xAxis = niceTicks(0, lastStep, 8);
  const xOf = (step: number): number => MARGIN.left + ((step - xAxis.min) / (xAxis.max - xAxis.min)) * plotW;
  const yOf = (v: number): number => top + plotH - ((v - yAxis.min) / (yAxis.max - yAxis.min)) * plotH;

  // Grid and axes.
  parts.push('<g class="grid">');
  for (const t of yAxis.ticks) parts.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${num(yOf(t))}" y2="${num(yOf(t))}"/>`);
  for (const t of xAxis.ticks) parts.push(`<line x1="${num(xOf(t))}" x2="${num(xOf(t))}" y1="${top}" y2="${top + plotH}"/>`);
  parts.push('</g>');
  parts.push(`<rect class="frame" x="${MARGIN.left}" y="${top}" width="${plotW}" height="${plotH}"/>`);
  parts.push('<g class="axis y-axis">');
  for (const t of yAxis.ticks) parts.push(`<text x="${MARGIN.left - 8}" y="${num(yOf(t) + 4)}" text-anchor="end">${escapeHtml(formatTick(t, yAxis.step))}</text>`);
  parts.push('</g><g class="axis x-axis">');
  for (const t of xAxis.ticks) parts.push(`<text x="${num(xOf(t))}" y="${top + plotH + 18}" text-anchor="middle">${escapeHtml(formatStepTick(t))}</text>`);
  parts.push('</g>');
  parts.push(`<text class="axis-label" x="${MARGIN.left + plotW / 2}" y="${height - 8}" text-anchor="middle">step</text>`);
  parts.push(
    `<text class="axis-label" transform="translate(18 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeHtml(spec.yLabel)}</text>`,
  );

  // Series.
  parts.push(`<defs><clipPath id="${spec.id}-clip"><rect x="${MARGIN.left}" y="${top}" width="${plotW}" height="${plotH}"/></clipPath></defs>`);
  // Lines and error bars are clipped to the plot; markers are not (a point on the frame stays whole).
  const markers: string[] = [];
  parts.push(`<g clip-path="url(#${spec.id}-clip)">`);
  for (const s of spec.series) {
    const points = s.markers ? s.points : reducePoints(s.points);
    let d = '';
    let pen = false;
    for (const [step, v] of points) {
      if (v === null) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${num(xOf(step))} ${num(yOf(v))}`;
      pen = true;
    }
    parts.push(`<path class="series" data-series="${escapeHtml(s.name)}" d="${d}" fill="none" stroke="${s.color}" stroke-width="1.6" stroke-linejoin="round"/>`);
    if (!s.markers) continue;
    s.points.forEach(([step, v], i) => {
      if (v === null) return;
      const err = s.errors?.[i];
      if (err !== undefined && err !== null && err > 0) {
        parts.push(`<line class="error-bar" x1="${num(xOf(step))}" x2="${num(xOf(step))}" y1="${num(yOf(v - err))}" y2="${num(yOf(v + err))}" stroke="${s.color}"/>`);
      }
      const label = s.labels?.[i];
      markers.push(
        `<circle class="point" data-series="${escapeHtml(s.name)}" cx="${num(xOf(step))}" cy="${num(yOf(v))}" r="3.5" fill="${s.color}">${label === undefined ? '' : `<title>${escapeHtml(label)}</title>`}</circle>`,
      );
    });
  }
  parts.push('</g>', ...markers);

  // Legend: rows right-aligned above the plot, the first level with the title, so it never hides data.
  legend.rows.forEach((row, r) => {
    let x = MARGIN.left + plotW - row.reduce((sum, i) => sum + legend.widths[i]!, 0);
    const y = TITLE_Y - 4 + r * LEGEND_ROW;
    parts.push('<g class="legend">');
    for (const i of row) {
      const s = spec.series[i]!;
      parts.push(`<line x1="${x}" x2="${x + 16}" y1="${y}" y2="${y}" stroke="${s.color}" stroke-width="2.5"/>`);
      if (s.markers) parts.push(`<circle cx="${x + 8}" cy="${y}" r="3.5" fill="${s.color}"/>`);
      parts.push(`<text x="${x + 22}" y="${y + 4}">${escapeHtml(s.name)}</text>`);
      x += legend.widths[i]!;
    }
    parts.push('</g>');
  });
  parts.push('</svg>');
  return parts.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Page

function fmt(value: number | null | undefined, digits: number): string {
  return value === null || value === undefined ? '—' : value.toFixed(digits);
}

function summaryRows(metrics: TrainingMetrics): string[][] {
  const rows: string[][] = [];
  const { train } = metrics;
  if (train.length > 0) {
    const first = train[0]!;
    const last = train[train.length - 1]!;
    rows.push(['training records', `${train.length} (steps ${first.step} to ${last.step})`]);
    if (last.epoch !== null) rows.push(['last epoch', String(last.epoch)]);
    const losses = train.filter((p) => p.loss !== null);
    if (losses.length > 0) {
      const best = losses.reduce((a, b) => (b.loss! < a.loss! ? b : a));
      rows.push(['last loss', `${fmt(last.loss, 4)} (step ${last.step})`], ['lowest loss', `${fmt(best.loss, 4)} (step ${best.step})`]);
    }
    if (last.lr !== null) rows.push(['last learning rate', String(last.lr)]);
    const speeds = train.slice(-10).map((p) => p.imagesPerSecond).filter((v): v is number => v !== null);
    if (speeds.length > 0) rows.push(['throughput (last records)', `${(speeds.reduce((a, b) => a + b, 0) / speeds.length).toFixed(1)} images/s`]);
    if (first.time !== null && last.time !== null) rows.push(['time', `${first.time} to ${last.time}`]);
  }
  for (const [target, points] of metrics.validation) {
    const scored = points.filter((p) => p.accuracy !== null);
    if (scored.length === 0) continue;
    const best = scored.reduce((a, b) => (b.accuracy! > a.accuracy! ? b : a));
    const last = scored[scored.length - 1]!;
    rows.push([
      `${target} accuracy`,
      `best ${fmt(best.accuracy, 4)} ± ${fmt(best.std, 4)} (step ${best.step}); last ${fmt(last.accuracy, 4)} (step ${last.step}); ${scored.length} evaluation${scored.length === 1 ? '' : 's'}`,
    ]);
  }
  for (const [target, points] of metrics.classification) {
    const scored = points.filter((p) => p.top1 !== null);
    if (scored.length === 0) continue;
    const best = scored.reduce((a, b) => (b.top1! > a.top1! ? b : a));
    const last = scored[scored.length - 1]!;
    rows.push([
      `${target} top-1`,
      `best ${fmt(best.top1, 4)} (step ${best.step}); last ${fmt(last.top1, 4)}, top-5 ${fmt(last.top5, 4)} (step ${last.step}); ${last.images ?? '?'} images, ${scored.length} evaluation${scored.length === 1 ? '' : 's'}`,
    ]);
  }
  return rows;
}

const STYLE = `
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto; max-width: 1000px; color: #222; padding: 0 12px; }
h1 { font-size: 22px; margin-bottom: 4px; }
.source { color: #666; font-size: 13px; margin-top: 0; word-break: break-all; }
table.summary { border-collapse: collapse; margin: 12px 0 20px; font-size: 14px; }
table.summary td { padding: 3px 14px 3px 0; vertical-align: top; }
table.summary td:first-child { color: #555; white-space: nowrap; }
section { margin-bottom: 18px; }
svg.chart { max-width: 100%; height: auto; font-size: 12px; background: #fff; }
svg .chart-title { font-size: 15px; font-weight: 600; fill: #222; }
svg .grid line { stroke: #e6e6e6; stroke-width: 1; }
svg .frame { fill: none; stroke: #999; stroke-width: 1; }
svg .axis text { fill: #444; }
svg .axis-label { fill: #333; font-size: 13px; }
svg .legend text { fill: #333; }
svg .error-bar { stroke-width: 1.2; }
svg .empty { fill: #999; font-size: 14px; }
`;

/** The HTML page for parsed metrics. `source` is shown under the title. */
export function renderTrainingReport(metrics: TrainingMetrics, options: { title?: string; source?: string } = {}): string {
  const title = options.title ?? 'Training report';
  const { train } = metrics;
  const charts: string[] = [];
  const trainSeries = (name: string, pick: (p: TrainPoint) => number | null, color: string): SeriesSpec => ({
    name,
    color,
    points: train.map((p) => [p.step, pick(p)] as [number, number | null]),
  });
  if (train.length > 0) {
    charts.push(renderChart({ id: 'loss', title: 'Training loss', yLabel: 'loss', series: [trainSeries('loss', (p) => p.loss, PALETTE[0]!)] }));
    charts.push(renderChart({ id: 'lr', title: 'Learning rate', yLabel: 'learning rate', includeZero: true, series: [trainSeries('lr', (p) => p.lr, PALETTE[3]!)] }));
  }
  const targets = [...metrics.validation.entries()];
  if (targets.length > 0) {
    charts.push(
      renderChart({
        id: 'validation',
        title: 'Validation accuracy',
        yLabel: 'accuracy (bars: ± std over folds)',
        yClamp: [0, 1],
        series: targets.map(([target, points], i) => ({
          name: target,
          color: PALETTE[(i + 1) % PALETTE.length]!,
          markers: true,
          points: points.map((p) => [p.step, p.accuracy] as [number, number | null]),
          errors: points.map((p) => p.std),
          labels: points.map((p) => `${target} step ${p.step}: accuracy ${fmt(p.accuracy, 4)} ± ${fmt(p.std, 4)}, xnorm ${fmt(p.xnorm, 2)}`),
        })),
      }),
    );
  }
  const heldOut = [...metrics.classification.entries()];
  if (heldOut.length > 0) {
    charts.push(
      renderChart({
        id: 'classification',
        title: 'Held-out classification accuracy',
        yLabel: 'accuracy (class centres, cosine)',
        yClamp: [0, 1],
        series: heldOut.flatMap(([target, points], i) =>
          (['top1', 'top5'] as const).map((key, j) => ({
            name: `${target} ${key === 'top1' ? 'top-1' : 'top-5'}`,
            color: PALETTE[(targets.length + 2 * i + j + 1) % PALETTE.length]!,
            markers: true,
            points: points.map((p) => [p.step, p[key]] as [number, number | null]),
            labels: points.map((p) => `${target} step ${p.step}: top-1 ${fmt(p.top1, 4)}, top-5 ${fmt(p.top5, 4)} (${p.images ?? '?'} images)`),
          })),
        ),
      }),
    );
  }
  if (targets.length === 0 && heldOut.length === 0) charts.push('<p class="note">No validation records.</p>');
  if (train.some((p) => p.accuracy !== null)) {
    charts.push(
      renderChart({ id: 'train-accuracy', title: 'Training batch accuracy', yLabel: 'accuracy', yClamp: [0, 1], series: [trainSeries('accuracy', (p) => p.accuracy, PALETTE[2]!)] }),
    );
  }
  if (train.some((p) => p.imagesPerSecond !== null)) {
    charts.push(
      renderChart({ id: 'throughput', title: 'Throughput', yLabel: 'images / s', includeZero: true, series: [trainSeries('images/s', (p) => p.imagesPerSecond, PALETTE[4]!)] }),
    );
  }
  const rows = summaryRows(metrics)
    .map(([k, v]) => `<tr><td>${escapeHtml(k!)}</td><td>${escapeHtml(v!)}</td></tr>`)
    .join('\n');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
${options.source === undefined ? '' : `<p class="source">from ${escapeHtml(options.source)}</p>`}
<table class="summary">
${rows}
</table>
${charts.map((c) => `<section>\n${c}\n</section>`).join('\n')}
</body>
</html>
`;
}

/** Read `metricsPath` (ProgressReporter's JSON lines) and write an HTML report to `outPath`; returns the absolute output path. */
export async function writeTrainingReport(metricsPath: string, outPath: string): Promise<string> {
  const source = resolve(metricsPath);
  const metrics = await readTrainingMetrics(source);
  const out = resolve(outPath);
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, renderTrainingReport(metrics, { source }));
  return out;
}
