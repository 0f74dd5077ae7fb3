/**
 * Training progress for rank 0: a live one-line progress bar on a terminal, plain log lines
 * every `logPeriod` steps otherwise, and (optionally) a JSON-lines metrics file that
 * `writeTrainingReport` turns into an HTML report.
 *
 * Metrics file records (one JSON object per line):
 *   {"step":200,"epoch":0,"loss":12.3,"lr":0.1,"img_per_s":345.6,"accuracy":0.12,"time":"<ISO>"}
 *   {"type":"validation","step":2000,"epoch":1,"results":[{"target":"lfw","accuracy":0.99,"std":0.003,"xnorm":22.1}],"time":"<ISO>"}
 *   {"type":"bad_samples","step":2400,"epoch":1,"bad":2,"samples":5000,"first":[{"where":"file ... line 7","reason":"..."}],"time":"<ISO>"}
 *   {"type":"classification","step":2000,"epoch":1,"results":[{"target":"holdout","images":500,"top1":0.81,"top5":0.95}],"time":"<ISO>"}
 * Training records carry no "type" field. Non-finite numbers (a NaN loss) are written as null.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { withDiskErrors } from './disk.js';
import { dirname, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { nonNegativeInteger, positiveInteger } from '../util/validate.js';

/** What the reporter writes to: process.stderr, or anything with a write(string) method. */
export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  /** Terminal width; the bar is kept one column narrower so it never wraps. */
  columns?: number;
}

export interface ProgressReporterOptions {
  /** Step count of the whole run (the last update has step === totalSteps). */
  totalSteps: number;
  /** Steps already done before this process started (resume). Default 0. */
  startStep?: number;
  /** Plain log lines and metrics records every this many steps. Default 100. */
  logPeriod?: number;
  /** Default process.stderr. */
  stream?: ProgressStream;
  /** Draw a live bar instead of log lines. Default stream.isTTY. */
  isTTY?: boolean;
  /** Append JSON-lines metrics here (parent folders are created). */
  metricsPath?: string;
  /** Monotonic clock in milliseconds (for tests). Default performance.now. */
  now?: () => number;
  /** Wall clock for the records' "time" field (for tests). Default () => new Date(). */
  date?: () => Date;
  /** Shortest interval between bar redraws in milliseconds. Default 100 (at most ~10 redraws a second). */
  redrawIntervalMs?: number;
}

export interface ProgressUpdate {
  /** Global steps completed, counting from the start of the run (1 after the first step). */
  step: number;
  loss: number;
  lr: number;
  imagesPerSecond: number;
  /** Training-batch accuracy when the trainer computes it. */
  accuracy?: number | null;
  epoch: number;
}

export interface ValidationResult {
  /** Validation set name: lfw, cfp_fp, agedb_30, ... */
  target: string;
  accuracy: number;
  std: number;
  xnorm: number;
}

/** Training record of the metrics file. */
export interface TrainMetricsRecord {
  step: number;
  epoch: number;
  loss: number | null;
  lr: number | null;
  img_per_s: number | null;
  accuracy: number | null;
  time: string;
}

/** Validation record of the metrics file. */
export interface ValidationMetricsRecord {
  type: 'validation';
  step: number;
  epoch: number | null;
  results: Array<{ target: string; accuracy: number | null; std: number | null; xnorm: number | null }>;
  time: string;
}

/** Bad-sample record of the metrics file: one per epoch that had bad samples (counts summed over the workers). */
export interface BadSamplesMetricsRecord {
  type: 'bad_samples';
  step: number;
  epoch: number;
  /** Samples skipped because they could not be read or decoded. */
  bad: number;
  /** Samples read in that epoch by this run. */
  samples: number;
  /** The first bad samples rank 0 met: where they live and why they failed. */
  first: Array<{ where: string; reason: string }>;
  time: string;
}

/** Classification accuracy of one held-out dataset (valDatasets). */
export interface ClassificationValidationResult {
  target: string;
  images: number;
  top1: number;
  top5: number;
}

/** Classification record of the metrics file. */
export interface ClassificationMetricsRecord {
  type: 'classification';
  step: number;
  epoch: number | null;
  results: Array<{ target: string; images: number; top1: number | null; top5: number | null }>;
  time: string;
}

/** Human duration: 45s, 2m10s, 1h05m, 3d04h; '?' when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  const minutes = Math.round(s / 60);
  if (minutes < 24 * 60) return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
  const hours = Math.round(s / 3600);
  return `${Math.floor(hours / 24)}d${String(hours % 24).padStart(2, '0')}h`;
}

function formatLoss(loss: number): string {
  return Number.isFinite(loss) ? loss.toFixed(3) : String(loss).toLowerCase();
}

/** 0.1000 for ordinary rates; 2.50e-5 once four decimals would hide the value. */
export function formatLearningRate(lr: number): string {
  if (!Number.isFinite(lr)) return String(lr).toLowerCase();
  return lr === 0 || Math.abs(lr) >= 1e-3 ? lr.toFixed(4) : lr.toExponential(2);
}

function finiteOrNull(value: number | null | undefined): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/** Weight of the newest step time in the smoothed step time (per step). */
const SMOOTHING = 0.05;

export class ProgressReporter {
  /** Steps of the whole run; a time-budgeted run updates it with setTotalSteps as estimates improve. */
  totalSteps: number;
  readonly startStep: number;
  readonly logPeriod: number;
  readonly isTTY: boolean;
  readonly metricsPath: string | undefined;
  private readonly stream: ProgressStream;
  private readonly now: () => number;
  private readonly date: () => Date;
  private readonly redrawIntervalMs: number;
  private readonly startedAt: number;
  private lastTime: number;
  private lastStep: number;
  // Bias-corrected exponential moving average of seconds per step.
  private stepTimeSum = 0;
  private stepTimeWeight = 0;
  private latest: ProgressUpdate | undefined;
  private latestClassification: ClassificationValidationResult | undefined;
  private lastLoggedStep = -1;
  private lastDrawAt = Number.NEGATIVE_INFINITY;
  private barVisible = false;
  private metricsDirReady = false;
  private finished = false;

  constructor(options: ProgressReporterOptions) {
    const { totalSteps, startStep = 0, logPeriod = 100 } = options;
    positiveInteger(totalSteps, 'ProgressReporter: totalSteps');
    nonNegativeInteger(startStep, 'ProgressReporter: startStep');
    positiveInteger(logPeriod, 'ProgressReporter: logPeriod');
    if (startStep > totalSteps) throw new RangeError(`ProgressReporter: startStep ${startStep} is past totalSteps ${totalSteps}`);
    this.totalSteps = totalSteps;
    this.startStep = startStep;
    this.logPeriod = logPeriod;
    this.stream = options.stream ?? process.stderr;
    this.isTTY = options.isTTY ?? this.stream.isTTY === true;
    this.metricsPath = options.metricsPath === undefined ? undefined : resolve(options.metricsPath);
    this.now = options.now ?? (() => performance.now());
    this.date = options.date ?? (() => new Date());
    this.redrawIntervalMs = options.redrawIntervalMs ?? 100;
    this.startedAt = this.now();
    this.lastTime = this.startedAt;
    this.lastStep = startStep;
  }

  /** Smoothed seconds per step, or NaN before the first timed step. */
  get secondsPerStep(): number {
    return this.stepTimeWeight > 0 ? this.stepTimeSum / this.stepTimeWeight : Number.NaN;
  }

  /** Estimated seconds left after `step`, or NaN before the first timed step. */
  etaSeconds(step = this.latest?.step ?? this.startStep): number {
    return Math.max(0, this.totalSteps - step) * this.secondsPerStep;
  }

  /** Record one step. Call on every step; output is throttled/periodic. */
  update(progress: ProgressUpdate): void {
    const { step } = progress;
    nonNegativeInteger(step, 'ProgressReporter.update: step');
    const time = this.now();
    const advanced = step - this.lastStep;
    if (advanced > 0) {
      const perStep = (time - this.lastTime) / 1000 / advanced;
      const keep = Math.pow(1 - SMOOTHING, advanced);
      this.stepTimeSum = this.stepTimeSum * keep + (1 - keep) * perStep;
      this.stepTimeWeight = this.stepTimeWeight * keep + (1 - keep);
    }
    this.lastTime = time;
    this.lastStep = step;
    this.latest = { ...progress };

    const boundary = step % this.logPeriod === 0 || step === this.totalSteps;
    if (boundary && step !== this.lastLoggedStep) {
      this.lastLoggedStep = step;
      this.appendMetrics({
        step,
        epoch: progress.epoch,
        loss: finiteOrNull(progress.loss),
        lr: finiteOrNull(progress.lr),
        img_per_s: finiteOrNull(progress.imagesPerSecond),
        accuracy: finiteOrNull(progress.accuracy),
        time: this.date().toISOString(),
      } satisfies TrainMetricsRecord);
      if (!this.isTTY) this.stream.write(this.plainLine(progress) + '\n');
    }
    if (this.isTTY && (time - this.lastDrawAt >= this.redrawIntervalMs || step >= this.totalSteps)) {
      this.lastDrawAt = time;
      this.drawBar();
    }
  }

  /** Print a message as its own line (above the bar on a terminal). */
  log(message: string): void {
    if (this.isTTY && this.barVisible) {
      this.stream.write(`\r\x1b[K${message}\n`);
      this.drawBar();
    } else {
      this.stream.write(message + '\n');
    }
  }

  /** A new estimate of the run's total steps (trainTime budgets). */
  setTotalSteps(totalSteps: number): void {
    positiveInteger(totalSteps, 'ProgressReporter: totalSteps');
    this.totalSteps = totalSteps;
  }

  /** Print held-out classification accuracy, append a classification record, and show top-1 in later progress lines. */
  logClassification(step: number, results: readonly ClassificationValidationResult[]): void {
    const parts = results.map((r) => `${r.target} top-1 ${r.top1.toFixed(4)} top-5 ${r.top5.toFixed(4)} (${r.images} images)`);
    this.log(`val step ${step}/${this.totalSteps}: ${parts.join(' | ')}`);
    this.latestClassification = results[0];
    this.appendMetrics({
      type: 'classification',
      step,
      epoch: this.latest?.epoch ?? null,
      results: results.map((r) => ({ target: r.target, images: r.images, top1: finiteOrNull(r.top1), top5: finiteOrNull(r.top5) })),
      time: this.date().toISOString(),
    } satisfies ClassificationMetricsRecord);
  }

  /** Print validation results and append a validation record to the metrics file. */
  logValidation(step: number, results: readonly ValidationResult[]): void {
    const parts = results.map(
      (r) => `${r.target} acc ${r.accuracy.toFixed(4)} ±${r.std.toFixed(4)} xnorm ${Number.isFinite(r.xnorm) ? r.xnorm.toFixed(2) : String(r.xnorm)}`,
    );
    this.log(`val step ${step}/${this.totalSteps}: ${parts.length > 0 ? parts.join(' | ') : 'no targets'}`);
    this.appendMetrics({
      type: 'validation',
      step,
      epoch: this.latest?.epoch ?? null,
      results: results.map((r) => ({ target: r.target, accuracy: finiteOrNull(r.accuracy), std: finiteOrNull(r.std), xnorm: finiteOrNull(r.xnorm) })),
      time: this.date().toISOString(),
    } satisfies ValidationMetricsRecord);
  }

  /** Print an epoch's bad-sample count and append a bad_samples record to the metrics file. */
  logBadSamples(message: string, count: { step: number; epoch: number; bad: number; samples: number; first: ReadonlyArray<{ where: string; reason: string }> }): void {
    this.log(message);
    this.appendMetrics({
      type: 'bad_samples',
      step: count.step,
      epoch: count.epoch,
      bad: count.bad,
      samples: count.samples,
      first: count.first.map(({ where, reason }) => ({ where, reason })),
      time: this.date().toISOString(),
    } satisfies BadSamplesMetricsRecord);
  }

  /** Final state: last bar (then a newline) on a terminal, the last step's line if not yet logged, and a summary. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    const latest = this.latest;
    if (this.isTTY) {
      if (latest !== undefined) this.drawBar();
      if (this.barVisible) this.stream.write('\n');
      this.barVisible = false;
    } else if (latest !== undefined && latest.step !== this.lastLoggedStep) {
      this.stream.write(this.plainLine(latest) + '\n');
    }
    const steps = (latest?.step ?? this.startStep) - this.startStep;
    this.stream.write(`finished ${steps} step${steps === 1 ? '' : 's'} in ${formatDuration((this.now() - this.startedAt) / 1000)}\n`);
  }

  /** `step 200/1000 epoch 0 loss 12.345 lr 0.1000 acc 0.12 img/s 345.6 eta 2m10s` */
  plainLine(progress: ProgressUpdate): string {
    const parts = [
      `step ${progress.step}/${this.totalSteps}`,
      `epoch ${progress.epoch}`,
      `loss ${formatLoss(progress.loss)}`,
      `lr ${formatLearningRate(progress.lr)}`,
    ];
    if (typeof progress.accuracy === 'number') parts.push(`acc ${progress.accuracy.toFixed(2)}`);
    if (this.latestClassification) parts.push(`${this.latestClassification.target} top-1 ${this.latestClassification.top1.toFixed(3)}`);
    parts.push(`img/s ${progress.imagesPerSecond.toFixed(1)}`, `eta ${formatDuration(this.etaSeconds(progress.step))}`);
    return parts.join(' ');
  }

  private drawBar(): void {
    const latest = this.latest;
    if (latest === undefined) return;
    const { step } = latest;
    const fraction = Math.min(1, Math.max(0, step / this.totalSteps));
    const width = Math.max(20, this.stream.columns ?? 80) - 1;
    const head = `${String(step).padStart(String(this.totalSteps).length)}/${this.totalSteps} ${(fraction * 100).toFixed(0).padStart(3)}%`;
    const tailParts = [`loss ${formatLoss(latest.loss)}`, `lr ${formatLearningRate(latest.lr)}`];
    if (typeof latest.accuracy === 'number') tailParts.push(`acc ${latest.accuracy.toFixed(2)}`);
    if (this.latestClassification) tailParts.push(`${this.latestClassification.target} top-1 ${this.latestClassification.top1.toFixed(3)}`);
    tailParts.push(`${latest.imagesPerSecond.toFixed(1)} img/s`, `eta ${formatDuration(this.etaSeconds(step))}`);
    const tail = tailParts.join(' ');
    const barWidth = Math.min(30, width - head.length - tail.length - 4);
    let line: string;
    if (barWidth >= 5) {
      const filled = Math.round(fraction * barWidth);
      line = `${head} [${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}] ${tail}`;
    } else {
      line = `${head} ${tail}`;
    }
    if (line.length > width) line = line.slice(0, width);
    this.stream.write(`\r${line}\x1b[K`);
    this.barVisible = true;
  }

  private appendMetrics(record: TrainMetricsRecord | ValidationMetricsRecord | BadSamplesMetricsRecord | ClassificationMetricsRecord): void {
    if (this.metricsPath === undefined) return;
    if (!this.metricsDirReady) {
      mkdirSync(dirname(this.metricsPath), { recursive: true });
      this.metricsDirReady = true;
    }
    // Synchronous on purpose: a crash right after a step still leaves its record on disk.
    const metricsPath = this.metricsPath;
    withDiskErrors(metricsPath, 'append to', () => appendFileSync(metricsPath, JSON.stringify(record) + '\n'));
  }
}
