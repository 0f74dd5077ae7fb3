// Built-in hook (rank 0): when training ends, the progress output's closing line and the HTML
// training report built from metrics.jsonl.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ProgressReporter } from '../progress.js';
import { writeTrainingReport } from '../report.js';
import type { TrainHook } from './train-hook.js';

export class RunReport implements TrainHook {
  /** The training-report.html written, or null. */
  reportPath: string | null = null;

  constructor(
    private readonly progress: ProgressReporter,
    private readonly metricsPath: string | null,
    private readonly outputDir: string,
  ) {}

  async onTrainEnd(): Promise<void> {
    this.progress.finish();
    if (this.metricsPath !== null && existsSync(this.metricsPath)) this.reportPath = await writeTrainingReport(this.metricsPath, join(this.outputDir, 'training-report.html'));
  }
}
