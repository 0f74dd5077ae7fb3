// Shared by the fault tests: tiny training configs on the synthetic dataset, processes of a
// launcher's tree, and waiting for output. Process running and pid checks come from
// test/distributed/helpers.ts.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Running } from '../distributed/helpers.js';

export const faultyBackbone = `${fileURLToPath(new URL('./fixtures/faulty-backbone.js', import.meta.url))}#createFaultyBackbone`;

/** A tiny dist_arcface run on synthetic identities with the faulty fixture backbone; `extra` is more YAML. */
export function writeTinyConfig(dir: string, extra = '', trainSteps = 100000): string {
  const path = join(dir, 'tiny.yaml');
  writeFileSync(
    path,
    `dataset:
  type: synthetic
  numClasses: 40
  imagesPerClass: 4
  seed: 3
lossType: dist_arcface
model: ${faultyBackbone}
imageSize: 16
embSize: 16
trainBatchSize: 4
trainSteps: ${trainSteps}
lr: 0.1
scale: 16
withTest: false
logPeriod: 1
checkpointDir: ${join(dir, 'checkpoints')}
modelSaveDir: ${join(dir, 'output')}
${extra}`,
  );
  return path;
}

/** The mean loss of the first three and of the last three steps of a run's metrics.jsonl. */
export function firstAndLastLoss(outputDir: string, steps: number): { first: number; last: number } {
  const losses = new Map<number, number>();
  for (const line of readFileSync(join(outputDir, 'metrics.jsonl'), 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    const record = JSON.parse(line) as { step?: unknown; loss?: unknown };
    if (typeof record.step === 'number' && typeof record.loss === 'number') losses.set(record.step, record.loss);
  }
  const meanAt = (stepsAt: number[]): number => stepsAt.reduce((sum, s) => sum + (losses.get(s) ?? Number.NaN), 0) / stepsAt.length;
  return { first: meanAt([1, 2, 3]), last: meanAt([steps - 2, steps - 1, steps]) };
}

/** Pids of every process below `root` (children, grandchildren, ...), from /proc. */
export function descendants(root: number): number[] {
  const parents = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // "pid (comm) state ppid ...": comm may hold spaces, so split after its closing parenthesis.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parents.set(Number(name), Number(fields[1]));
    } catch {
      // gone meanwhile
    }
  }
  const found: number[] = [];
  const frontier = [root];
  while (frontier.length > 0) {
    const parent = frontier.pop() as number;
    for (const [pid, ppid] of parents) {
      if (ppid === parent && !found.includes(pid)) {
        found.push(pid);
        frontier.push(pid);
      }
    }
  }
  return found;
}

/** Resolves with everything printed so far once `pattern` appears in the output (rejects after ms). */
export function outputMatching(running: Running, pattern: RegExp, ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`no ${pattern} in the output within ${ms} ms:\n${seen}`)), ms);
    const check = (d: Buffer): void => {
      seen += d.toString();
      if (pattern.test(seen)) {
        clearTimeout(timer);
        resolve(seen);
      }
    };
    running.child.stdout?.on('data', check);
    running.child.stderr?.on('data', check);
  });
}

/** The step-XXXXXXXX checkpoints in dir, as step numbers. */
export function checkpointSteps(dir: string): number[] {
  try {
    return readdirSync(dir)
      .filter((n) => /^step-\d{8}$/.test(n))
      .map((n) => Number(n.slice(5)))
      .sort((a, b) => a - b);
  } catch {
    return [];
  }
}
