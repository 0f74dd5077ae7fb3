import { positiveInteger } from '../util/validate.js';
// Smoothed training speed: images per second and seconds per step over the last `window` steps,
// so one slow step (a data stall, a GC) does not swing the progress line.

export class ThroughputMeter {
  private readonly images: number[] = [];
  private readonly seconds: number[] = [];

  constructor(readonly window = 20) {
    positiveInteger(window, 'ThroughputMeter: window');
  }

  /** One step: the images it took (all workers) and its duration in seconds. */
  record(images: number, seconds: number): void {
    this.images.push(images);
    this.seconds.push(Math.max(seconds, 1e-9));
    if (this.images.length > this.window) {
      this.images.shift();
      this.seconds.shift();
    }
  }

  /** Steps in the window. */
  get steps(): number {
    return this.images.length;
  }

  /** Images per second over the window (NaN before the first step). */
  get imagesPerSecond(): number {
    if (this.images.length === 0) return Number.NaN;
    return this.images.reduce((a, b) => a + b, 0) / this.seconds.reduce((a, b) => a + b, 0);
  }

  /** Median step duration in the window: robust to the odd slow step (NaN before the first step). */
  get medianSecondsPerStep(): number {
    if (this.seconds.length === 0) return Number.NaN;
    const sorted = [...this.seconds].sort((a, b) => a - b);
    const middle = sorted.length >> 1;
    return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
  }
}
