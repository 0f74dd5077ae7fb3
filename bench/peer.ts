// Runs a PyTorch peer script (bench/*.py) with the first python that can import torch.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { injectedThreadEnv } from '../src/torch/native.js';

const candidates = ['python3', '/usr/bin/python3', 'python'];
let cachedPython: string | null | undefined;

/** The python interpreter that has torch, or null (the peer is then reported as absent). */
export function findTorchPython(): string | null {
  if (cachedPython !== undefined) return cachedPython;
  cachedPython = null;
  for (const python of candidates) {
    const probe = spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' });
    if (probe.status === 0) {
      cachedPython = python;
      break;
    }
  }
  return cachedPython;
}

export function benchSourceDir(): string {
  // Compiled to dist/bench/peer.js; the .py scripts stay in bench/ at the package root.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'bench', 'torch_engine.py'))) return join(dir, 'bench');
    dir = resolve(dir, '..');
  }
  throw new Error('bench/*.py scripts not found next to the package');
}

/**
 * The environment a peer runs in: ours, less the thread-pool waiting settings plsc itself added
 * (src/torch/native.ts), so PyTorch runs as its users run it unless they set them too.
 */
export function peerEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONUNBUFFERED: '1' };
  for (const name of injectedThreadEnv) delete env[name];
  return env;
}

/** Runs bench/<script> with args; returns its last stdout line parsed as JSON, or null without torch. */
export function runTorchPeer<T>(script: string, args: string[], timeoutMs = 600_000): T | null {
  const python = findTorchPython();
  if (python === null) return null;
  const result = spawnSync(python, [join(benchSourceDir(), script), ...args], {
    encoding: 'utf8',
    timeout: timeoutMs,
    env: peerEnv(),
    maxBuffer: 64 << 20,
  });
  if (result.status !== 0) {
    throw new Error(`PyTorch peer ${script} failed (exit ${result.status ?? result.signal}): ${result.stderr.trim().slice(-2000)}`);
  }
  const lines = result.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1] as string) as T;
}

export function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Median wall time in ms of fn over `repeats` runs after `warmup` runs. */
export function medianMs(fn: () => void, warmup: number, repeats: number): number {
  for (let i = 0; i < warmup; i++) fn();
  const samples: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const start = process.hrtime.bigint();
    fn();
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return median(samples);
}
