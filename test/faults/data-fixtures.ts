// Fixtures of the data and config fault tests: small list datasets whose images can be broken in
// chosen ways, tiny training configs, a stderr capture and `plsc` as a child process.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { resolveConfig, type TrainConfig } from '../../src/index.js';

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
export const tinyBackbone = `${fileURLToPath(new URL('../train/fixtures/tiny-backbone.js', import.meta.url))}#createTinyBackbone`;

export function scratch(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-faults-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** An 8x8 PNG whose colour depends on the label and the image number. */
export async function tinyPng(label: number, n: number): Promise<Buffer> {
  const pixels = Buffer.alloc(8 * 8 * 3);
  for (let p = 0; p < 64; p++) {
    pixels[p * 3] = (label * 53) & 255;
    pixels[p * 3 + 1] = (p * 4 + n) & 255;
    pixels[p * 3 + 2] = (label * 97 + 31) & 255;
  }
  return sharp(pixels, { raw: { width: 8, height: 8, channels: 3 } }).png().toBuffer();
}

export interface ListDataset {
  /** The list file. */
  list: string;
  /** Image paths, index = line order. */
  images: string[];
  labels: number[];
}

/** `<dir>/label.txt` with `count` images of `classes` classes under `<dir>/images/` (label = i mod classes). */
export async function makeListDataset(dir: string, count: number, classes: number): Promise<ListDataset> {
  mkdirSync(join(dir, 'images'), { recursive: true });
  const images: string[] = [];
  const labels: number[] = [];
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    const label = i % classes;
    const path = join(dir, 'images', `${i}.png`);
    writeFileSync(path, await tinyPng(label, i));
    images.push(path);
    labels.push(label);
    lines.push(`images/${i}.png ${label}`);
  }
  const list = join(dir, 'label.txt');
  writeFileSync(list, `${lines.join('\n')}\n`);
  return { list, images, labels };
}

/** A tiny training config (fixture CNN, 8x8 images, one worker) on a dataset path. */
export function tinyConfig(dir: string, dataset: TrainConfig['dataset'], overrides: Partial<TrainConfig> = {}): TrainConfig {
  return resolveConfig({
    dataset,
    classNum: 4,
    model: tinyBackbone,
    imageSize: 8,
    embSize: 16,
    trainBatchSize: 8,
    trainSteps: 6,
    lr: 0.5,
    scale: 16,
    withTest: false,
    logPeriod: 1,
    checkpointDir: join(dir, 'checkpoints'),
    modelSaveDir: join(dir, 'output'),
    ...overrides,
  });
}

/** The same settings as tinyConfig, as YAML for `plsc train --config`. */
export function writeTinyYaml(dir: string, datasetPath: string, extra = ''): string {
  const path = join(dir, 'train.yaml');
  writeFileSync(
    path,
    `dataset: { type: list, path: ${datasetPath} }
classNum: 4
model: ${tinyBackbone}
imageSize: 8
embSize: 16
trainBatchSize: 8
trainSteps: 6
lr: 0.5
scale: 16
withTest: false
logPeriod: 1
checkpointDir: ${join(dir, 'checkpoints')}
modelSaveDir: ${join(dir, 'output')}
${extra}`,
  );
  return path;
}

/** Runs `fn` with process.stderr.write captured (where the trainer's log lines go). */
export async function capturingStderr<T>(fn: () => Promise<T>): Promise<{ result: T; stderr: string }> {
  const chunks: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array): boolean => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
    return true;
  }) as typeof process.stderr.write;
  try {
    return { result: await fn(), stderr: chunks.join('') };
  } finally {
    process.stderr.write = write;
  }
}

/** Same as capturingStderr, but a rejection comes back with the output so far. */
export async function capturingFailure(fn: () => Promise<unknown>): Promise<{ error: Error; stderr: string }> {
  let error: unknown;
  const { stderr } = await capturingStderr(async () => {
    try {
      await fn();
    } catch (caught) {
      error = caught;
    }
  });
  if (!(error instanceof Error)) throw new Error(`expected a failure, got ${error === undefined ? 'success' : String(error)}`);
  return { error, stderr };
}

export interface MetricsRecord {
  type?: string;
  step: number;
  epoch: number;
  bad?: number;
  samples?: number;
  first?: Array<{ where: string; reason: string }>;
}

export function readMetrics(path: string): MetricsRecord[] {
  return readFileSync(path, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as MetricsRecord);
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `node bin/plsc.js ...args` with one libtorch thread, killed after `timeoutMs`. */
export function plsc(args: readonly string[], timeoutMs = 120_000): Promise<RunResult> {
  const child = spawn(process.execPath, [join(repoRoot, 'bin', 'plsc.js'), ...args], {
    cwd: repoRoot,
    env: { ...process.env, PLSC_NUM_THREADS: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}
