// A PyTorch peer kept running for a whole benchmark and asked for one measurement at a time, so
// ours and the peer's samples can alternate: both then see the same machine load, and a ratio
// taken per round stays meaningful on a machine whose speed drifts (a peer run once, before or
// after ours, measured a different machine).
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { benchSourceDir, findTorchPython, peerEnv } from './peer.js';

/** What a session peer prints first: its torch version and thread count. */
export interface PeerHello {
  version: string;
  threads: number;
}

interface Pending {
  resolve: (line: string) => void;
  reject: (err: Error) => void;
}

/**
 * One python process running bench/<script> in its request loop: each request is one JSON line on
 * its stdin, each answer one JSON line on its stdout ({"error": "..."} when it failed).
 */
export class TorchPeerSession {
  private readonly pending: Pending[] = [];
  private stderrTail = '';
  private exited: string | null = null;

  private constructor(
    private readonly script: string,
    private readonly child: ChildProcess,
    private readonly timeoutMs: number,
  ) {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => this.pending.shift()?.resolve(line));
    child.stderr?.on('data', (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-2000);
    });
    child.on('exit', (code, signal) => {
      this.exited ??= `exit ${code ?? signal}`;
      this.failAll(new Error(`PyTorch peer ${this.script} ended (exit ${code ?? signal}): ${this.stderrTail.trim()}`));
    });
    child.on('error', (err) => this.failAll(new Error(`PyTorch peer ${this.script}: ${err.message}`)));
  }

  /**
   * Starts bench/<script> with args (and `extraEnv` over the peer's environment) and waits for its
   * hello line; null when no python has torch.
   */
  static async start(
    script: string,
    args: string[],
    extraEnv: Record<string, string> = {},
    timeoutMs = 300_000,
  ): Promise<{ session: TorchPeerSession; hello: PeerHello } | null> {
    const python = findTorchPython();
    if (python === null) return null;
    const child = spawn(python, [join(benchSourceDir(), script), ...args], { env: { ...peerEnv(), ...extraEnv }, stdio: ['pipe', 'pipe', 'pipe'] });
    const session = new TorchPeerSession(script, child, timeoutMs);
    try {
      const hello = await session.nextLine<PeerHello>();
      return { session, hello };
    } catch (err) {
      session.close();
      throw err;
    }
  }

  /** Sends one request and waits for its answer (rejects on an error answer, exit or timeout). */
  request<T>(request: Record<string, unknown>): Promise<T> {
    if (this.exited !== null) return Promise.reject(new Error(`PyTorch peer ${this.script} already ended (${this.exited})`));
    const answer = this.nextLine<T>();
    this.child.stdin?.write(`${JSON.stringify(request)}\n`);
    return answer;
  }

  /** Ends the peer (closing its stdin ends its loop; a peer that does not leave is killed). */
  close(): void {
    if (this.exited !== null) return;
    this.exited = 'closed';
    this.child.stdin?.end();
    const killer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    killer.unref();
    this.child.once('exit', () => clearTimeout(killer));
  }

  private nextLine<T>(): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`PyTorch peer ${this.script} did not answer within ${this.timeoutMs / 1000} s`));
      }, this.timeoutMs);
      this.pending.push({
        resolve: (line) => {
          clearTimeout(timer);
          let parsed: unknown;
          try {
            parsed = JSON.parse(line);
          } catch {
            reject(new Error(`PyTorch peer ${this.script} printed a line that is not JSON: ${line.slice(0, 200)}`));
            return;
          }
          const error = (parsed as { error?: unknown }).error;
          if (typeof error === 'string') reject(new Error(`PyTorch peer ${this.script}: ${error}`));
          else resolve(parsed as T);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
    });
  }

  private failAll(err: Error): void {
    for (const waiting of this.pending.splice(0)) waiting.reject(err);
  }
}
