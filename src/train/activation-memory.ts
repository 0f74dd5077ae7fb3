// Activation memory of a backbone per training sample, measured: peak RSS after a forward + backward
// in train mode at two batch sizes in one fresh process (the allocator reuses the smaller batch's
// memory for the larger one; a fresh process so no earlier peak hides them), divided by the batch
// difference. What `plsc plan` multiplies by the batch.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { configForBackbone } from './config-adapter.js';
import { backboneFromSpec } from '../checkpoint/backbone-spec.js';
import * as F from '../torch/ops.js';
import { tidy } from '../torch/scope.js';
import { manualSeed } from '../torch/native.js';
import { MEASURED_ACTIVATIONS } from './measured-activations.js';
import type { MeasuredActivation } from './activation-record.js';

export type { MeasuredActivation } from './activation-record.js';

export interface ActivationMeasureOptions {
  /** Backbone name or `file.js#factory`. */
  model: string;
  imageSize: number;
  embeddingSize: number;
  /** The two batch sizes (default [1, 3]). */
  batches?: [number, number];
}

function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

function checkBatches([small, large]: [number, number]): void {
  if (!(Number.isInteger(small) && Number.isInteger(large) && small >= 1 && large > small)) {
    throw new RangeError(`batches must be two integers 1 <= a < b, got [${small}, ${large}]`);
  }
}

/**
 * Bytes of activation (and backward temporary) memory per sample of one train-mode step of the
 * backbone, measured in a child process (`plsc plan --measure-activations --in-process`).
 */
export function measureActivationBytesPerSample(options: ActivationMeasureOptions): MeasuredActivation {
  const batches = options.batches ?? [1, 3];
  checkBatches(batches);
  const plsc = fileURLToPath(new URL('../../../bin/plsc.js', import.meta.url));
  const args = ['plan', '--measure-activations', '--in-process', '--json', '--models', options.model, '--image-size', String(options.imageSize), '--emb', String(options.embeddingSize), '--batches', batches.join(',')];
  const run = spawnSync(process.execPath, [plsc, ...args], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`measuring the activation memory of '${options.model}' failed (exit ${run.status ?? run.signal}): ${run.stderr.trim()}`);
  return JSON.parse(run.stdout.trim().split('\n').at(-1) as string) as MeasuredActivation;
}

/** The measurement itself, in this process (meaningful only in a fresh one). */
export async function measureActivationInThisProcess(options: ActivationMeasureOptions): Promise<MeasuredActivation> {
  const batches = options.batches ?? [1, 3];
  checkBatches(batches);
  const [small, large] = batches;
  manualSeed(0);
  const backbone = await backboneFromSpec(configForBackbone({ model: options.model, imageSize: options.imageSize, embeddingSize: options.embeddingSize }));
  try {
    backbone.train();
    const step = (batch: number): number => {
      tidy(() => {
        const input = F.randn([batch, ...backbone.inputShape]);
        F.sum(backbone.forward(input)).backward();
      });
      for (const p of backbone.parameters()) p.grad = null;
      return peakRss();
    };
    step(small); // first touch of the gradient buffers and the engine's workspaces
    const atSmall = step(small);
    const atLarge = step(large);
    return {
      model: options.model,
      imageSize: options.imageSize,
      embeddingSize: options.embeddingSize,
      bytesPerSample: Math.max(0, Math.round((atLarge - atSmall) / (large - small))),
      batches: [small, large],
    };
  } finally {
    backbone.dispose();
  }
}

/** The recorded measurement of a built-in backbone, if any (recorded at one image size). */
export function recordedActivation(model: string): MeasuredActivation | undefined {
  return MEASURED_ACTIVATIONS.find((m) => m.model === model);
}

/** The source text of measured-activations.ts for a set of measurements (`plsc plan --measure-activations --write`). */
export function measuredActivationsSource(measurements: readonly MeasuredActivation[], command: string): string {
  const rows = measurements.map((m) => `  { model: '${m.model}', imageSize: ${m.imageSize}, embeddingSize: ${m.embeddingSize}, bytesPerSample: ${m.bytesPerSample}, batches: [${m.batches[0]}, ${m.batches[1]}] },`);
  return `// Activation memory per training sample of the built-in backbones, as measured on this machine by:
//   ${command}
// (generated; rerun that command to refresh it). plsc plan scales it by the batch and by the pixel
// count when planning another image size.

import type { MeasuredActivation } from './activation-record.js';

export const MEASURED_ACTIVATIONS: readonly MeasuredActivation[] = [
${rows.join('\n')}
];
`;
}
