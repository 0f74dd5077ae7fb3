// Bad samples during training: every sample the loader could not read or decode is counted, the
// first few are printed with where they live and why, each epoch ends with a count (log and
// metrics.jsonl), and the run stops with the list once the configured limit is passed.
import type { BadSampleReport, ImageBatch } from '../data/loader.js';

/** How many bad samples are printed as they are met, and listed in errors and metrics records. */
export const BAD_SAMPLES_SHOWN = 10;

export interface BadSampleMonitorOptions {
  /** 'fail': the first bad sample stops the run. 'skip': skip up to the limit. */
  mode: 'fail' | 'skip';
  /** With 'skip': the most bad samples per epoch, as a fraction of the samples a worker reads per epoch. */
  maxFraction: number;
  /** Samples this worker reads in a full epoch. */
  samplesPerEpoch: number;
  /** This worker's rank and the world size (messages name them when there are several). */
  rank: number;
  worldSize: number;
  /** Prints one line (the first bad samples as they are met). */
  print: (line: string) => void;
}

/** One epoch's bad-sample count (summed over the workers when the trainer sums it). */
export interface BadSampleEpochCount {
  epoch: number;
  /** Bad samples skipped; their batch rows were filled with copies of good rows of the same batch. */
  bad: number;
  /** Samples read in this epoch by this run (fewer than a full epoch when it started or stopped mid-epoch). */
  samples: number;
}

/** The run read more bad samples than badSamples/maxBadSampleFraction allow. */
export class TooManyBadSamplesError extends Error {
  override readonly name = 'TooManyBadSamplesError';
  constructor(
    message: string,
    /** The epoch's bad samples so far (the first BAD_SAMPLES_SHOWN). */
    readonly reports: readonly BadSampleReport[],
    /** How many the epoch had when the run stopped. */
    readonly count: number,
  ) {
    super(message);
  }
}

export function formatBadSample(report: BadSampleReport): string {
  return `${report.where}: ${report.reason}`;
}

export class BadSampleMonitor {
  /** Bad samples the epoch may hold before the run stops (0 in 'fail' mode). */
  readonly allowedPerEpoch: number;
  private readonly options: BadSampleMonitorOptions;
  private epoch = -1;
  private epochBad: BadSampleReport[] = [];
  private epochBadCount = 0;
  private epochSamples = 0;
  private printed = 0;
  private total = 0;
  private readonly first: BadSampleReport[] = [];

  constructor(options: BadSampleMonitorOptions) {
    this.options = options;
    this.allowedPerEpoch = options.mode === 'fail' ? 0 : Math.floor(options.maxFraction * options.samplesPerEpoch);
  }

  /** The loader's onSkip: count and (the first few) print one bad sample. */
  readonly record = (report: BadSampleReport): void => {
    this.enterEpoch(report.epoch);
    this.epochBadCount++;
    this.total++;
    if (this.epochBad.length < BAD_SAMPLES_SHOWN) this.epochBad.push(report);
    if (this.first.length < BAD_SAMPLES_SHOWN) this.first.push(report);
    if (this.printed < BAD_SAMPLES_SHOWN) {
      this.printed++;
      const more = this.printed === BAD_SAMPLES_SHOWN ? ' (further bad samples are only counted)' : '';
      const what = this.options.mode === 'skip' ? 'bad sample skipped' : 'bad sample';
      this.options.print(`${what}${this.onRank()}: ${formatBadSample(report)}${more}`);
    }
  };

  /** After each batch: counts its rows and throws TooManyBadSamplesError once the limit is passed. */
  afterBatch(batch: ImageBatch): void {
    this.enterEpoch(batch.epoch);
    // Filled rows are copies standing in for bad samples; they were counted by record().
    this.epochSamples += batch.labels.length;
    if (this.epochBadCount <= this.allowedPerEpoch) return;
    const { mode, maxFraction, samplesPerEpoch } = this.options;
    const why =
      mode === 'fail'
        ? `badSamples is 'fail'`
        : `more than maxBadSampleFraction ${maxFraction} allows (${this.allowedPerEpoch} of the ${samplesPerEpoch} samples ` +
          `${this.options.worldSize > 1 ? `rank ${this.options.rank} reads` : 'read'} per epoch)`;
    const list = this.epochBad.map((r) => `  ${formatBadSample(r)}`);
    if (this.epochBadCount > this.epochBad.length) list.push(`  ... and ${this.epochBadCount - this.epochBad.length} more`);
    const advice =
      mode === 'fail'
        ? `fix or remove them, or set badSamples: skip to skip up to maxBadSampleFraction of them`
        : `fix or remove them (plsc data convert --skip-bad writes a copy without them), or raise maxBadSampleFraction`;
    throw new TooManyBadSamplesError(
      `training stopped: ${this.epochBadCount} bad sample${this.epochBadCount === 1 ? '' : 's'} in epoch ${this.epoch}${this.onRank()}, ${why}:\n${list.join('\n')}\n${advice}`,
      [...this.epochBad],
      this.epochBadCount,
    );
  }

  /** This worker's count for `epoch` (zeros when it read nothing of that epoch). */
  epochCount(epoch: number): BadSampleEpochCount {
    return epoch === this.epoch ? { epoch, bad: this.epochBadCount, samples: this.epochSamples } : { epoch, bad: 0, samples: 0 };
  }

  /** The first bad samples of `epoch` on this worker. */
  epochReports(epoch: number): BadSampleReport[] {
    return epoch === this.epoch ? [...this.epochBad] : [];
  }

  /** Bad samples of the whole run on this worker, and the first few. */
  get totals(): { skipped: number; first: BadSampleReport[] } {
    return { skipped: this.total, first: [...this.first] };
  }

  private enterEpoch(epoch: number): void {
    if (epoch === this.epoch) return;
    this.epoch = epoch;
    this.epochBad = [];
    this.epochBadCount = 0;
    this.epochSamples = 0;
  }

  private onRank(): string {
    return this.options.worldSize > 1 ? ` on rank ${this.options.rank}` : '';
  }
}

/** `epoch 0: 2 of 48 samples were bad and skipped (their rows held copies of good rows of the same batch)` */
export function formatEpochCount(count: BadSampleEpochCount, workers: number): string {
  const over = workers > 1 ? ` over ${workers} workers` : '';
  return (
    `epoch ${count.epoch}: ${count.bad} of ${count.samples} samples read${over} were bad and skipped ` +
    `(their batch rows held copies of good rows of the same batch)`
  );
}
