// Shared by the distributed tests: run `plsc` as a real process, find fixtures, check pids.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
export const plscBin = join(repoRoot, 'bin', 'plsc.js');

/** The compiled fixture script `name` (without extension). */
export function fixture(name: string): string {
  return fileURLToPath(new URL(`./fixtures/${name}.js`, import.meta.url));
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface Running {
  child: ChildProcess;
  done: Promise<RunResult>;
}

/** Starts `node bin/plsc.js ...args`; kills it (and fails the run) after timeoutMs. */
export function startPlsc(args: readonly string[], env: Record<string, string> = {}, timeoutMs = 120_000): Running {
  return startNode([plscBin, ...args], env, timeoutMs);
}

/** Starts `node ...args` with extra environment; kills it after timeoutMs. */
export function startNode(args: readonly string[], env: Record<string, string> = {}, timeoutMs = 120_000): Running {
  const started = Date.now();
  const child = spawn(process.execPath, args, { env: { ...process.env, PLSC_NUM_THREADS: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<RunResult>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
  return { child, done };
}

export function runPlsc(args: readonly string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<RunResult> {
  return startPlsc(args, env, timeoutMs).done;
}

/** Lines of a worker's output as the launcher prefixed them: "[rank R] text" → text, for rank R. */
export function linesOf(output: string, rank: number): string[] {
  const prefix = `[rank ${rank}] `;
  return output.split('\n').filter((l) => l.startsWith(prefix)).map((l) => l.slice(prefix.length));
}

/** Pids the workers wrote to dir, by file name without .pid ("0", "1", "0-child", ...). */
export function readPids(dir: string): Map<string, number> {
  const pids = new Map<string, number>();
  for (const name of readdirSync(dir)) {
    if (name.endsWith('.pid')) pids.set(name.slice(0, -4), Number(readFileSync(join(dir, name), 'utf8')));
  }
  return pids;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Waits up to ms for all pids to be gone; returns those still alive. */
export async function survivors(pids: Iterable<number>, ms = 3000): Promise<number[]> {
  const list = [...pids];
  const deadline = Date.now() + ms;
  for (;;) {
    const alive = list.filter(isAlive);
    if (alive.length === 0 || Date.now() > deadline) return alive;
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function waitForOutput(running: Running, pattern: RegExp, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`no ${pattern} in output within ${ms} ms:\n${seen}`)), ms);
    const check = (d: Buffer): void => {
      seen += d.toString();
      if (pattern.test(seen)) {
        clearTimeout(timer);
        resolve();
      }
    };
    running.child.stdout?.on('data', check);
    running.child.stderr?.on('data', check);
  });
}

/** Runs a fixture directly with node (no launcher), without any torchrun variables in its env. */
export function runNodeChecks(script: string, env: Record<string, string>, timeoutMs = 120_000): Promise<RunResult> {
  const clean: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'GROUP_RANK', 'MASTER_ADDR', 'MASTER_PORT'].includes(k)) clean[k] = v;
  }
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script], { env: { ...clean, PLSC_NUM_THREADS: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
}
