// Hosts for the multi-host tests: Linux network namespaces, each with one interface (`mh0`,
// 10.77.0.<i+1>/24) whose peer sits on a bridge in a "switch" namespace, so any host's link can go
// down without touching the others. Every name carries this process's pid and a counter, a sweep
// removes what dead test processes left behind, and destroy() (also run at exit) kills whatever
// still runs in the namespaces before deleting them.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { isAlive, plscBin } from '../distributed/helpers.js';

const PREFIX = 'plscmh';
export const HOST_IFACE = 'mh0';
const SUBNET = '10.77.0';

function ip(args: readonly string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function namespaces(): string[] {
  try {
    return ip(['netns', 'list'])
      .split('\n')
      .map((line) => line.split(' ')[0] as string)
      .filter((name) => name.length > 0);
  } catch {
    return [];
  }
}

/** Kills (SIGKILL) every process in the namespace, then deletes it. Never throws. */
function removeNamespace(name: string): void {
  try {
    for (const pid of ip(['netns', 'pids', name]).split('\n').filter((l) => /^\d+$/.test(l))) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  } catch {
    // no such namespace
  }
  try {
    ip(['netns', 'del', name]);
  } catch {
    // already deleted
  }
}

/** Deletes namespaces that test processes no longer alive left behind (a run killed before its cleanup). */
export function sweepLeftoverNamespaces(): string[] {
  const swept: string[] = [];
  for (const name of namespaces()) {
    const owner = new RegExp(`^${PREFIX}-(\\d+)-`).exec(name);
    if (owner === null || isAlive(Number(owner[1]))) continue;
    removeNamespace(name);
    swept.push(name);
  }
  return swept;
}

/**
 * Why these tests cannot run here (not root, no `ip`, namespaces not permitted), or null. Tries to
 * make and delete one namespace with a veth pair.
 */
export function netnsUnavailable(): string | null {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'network namespaces need root (run the tests as root to include the multi-host cases)';
  const probe = `${PREFIX}-${process.pid}-probe`;
  try {
    ip(['-V']);
  } catch {
    return "the 'ip' command (iproute2) is missing: make deps installs it";
  }
  try {
    ip(['netns', 'add', probe]);
    ip(['link', 'add', 'name', 'probe0', 'netns', probe, 'type', 'veth', 'peer', 'name', 'probe1', 'netns', probe]);
    return null;
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? String(err);
    return `cannot create a network namespace with a veth pair here: ${stderr.trim()}`;
  } finally {
    removeNamespace(probe);
  }
}

export interface HostRun {
  host: Host;
  child: ChildProcess;
  /** Everything the process printed so far (stdout and stderr interleaved as they came). */
  output(): string;
  /** Resolves when the process has exited and its output is read. */
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
  /** Resolves with the output once `pattern` appears in it; rejects after ms or when the process exits first. */
  waitFor(pattern: RegExp, ms: number): Promise<string>;
}

export interface Host {
  index: number;
  namespace: string;
  address: string;
  iface: string;
}

let networkCount = 0;

/** `count` hosts on one bridge. Call destroy() when done (a process exit also does it). */
export class HostNetwork {
  readonly hosts: Host[] = [];
  private readonly switchNamespace: string;
  private readonly runs: HostRun[] = [];
  private readonly logs: WriteStream[] = [];
  private readonly onExit = (): void => this.destroy();
  private destroyed = false;

  constructor(count: number, private readonly logDir: string) {
    const id = `${PREFIX}-${process.pid}-${networkCount++}`;
    this.switchNamespace = `${id}-sw`;
    process.on('exit', this.onExit);
    mkdirSync(logDir, { recursive: true });
    try {
      ip(['netns', 'add', this.switchNamespace]);
      ip(['-n', this.switchNamespace, 'link', 'add', 'br0', 'type', 'bridge']);
      ip(['-n', this.switchNamespace, 'link', 'set', 'br0', 'up']);
      for (let index = 0; index < count; index++) {
        const host: Host = { index, namespace: `${id}-h${index}`, address: `${SUBNET}.${index + 1}`, iface: HOST_IFACE };
        this.hosts.push(host);
        const port = `port${index}`;
        ip(['netns', 'add', host.namespace]);
        ip(['link', 'add', 'name', HOST_IFACE, 'netns', host.namespace, 'type', 'veth', 'peer', 'name', port, 'netns', this.switchNamespace]);
        ip(['-n', this.switchNamespace, 'link', 'set', port, 'master', 'br0']);
        ip(['-n', this.switchNamespace, 'link', 'set', port, 'up']);
        ip(['-n', host.namespace, 'addr', 'add', `${host.address}/24`, 'dev', HOST_IFACE]);
        ip(['-n', host.namespace, 'link', 'set', HOST_IFACE, 'up']);
        ip(['-n', host.namespace, 'link', 'set', 'lo', 'up']);
      }
    } catch (err) {
      this.destroy();
      throw err;
    }
  }

  /** Runs `node bin/plsc.js ...args` inside the host's namespace; SIGKILLed after timeoutMs. */
  startPlsc(host: Host, args: readonly string[], env: Record<string, string>, timeoutMs: number): HostRun {
    const started = Date.now();
    const child = spawn('ip', ['netns', 'exec', host.namespace, process.execPath, plscBin, ...args], {
      env: { ...process.env, PLSC_NUM_THREADS: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const log = createWriteStream(join(this.logDir, `host-${host.index}.log`), { flags: 'a' });
    this.logs.push(log);
    let text = '';
    const watchers = new Set<() => void>();
    const take = (chunk: Buffer): void => {
      text += chunk.toString();
      log.write(chunk);
      for (const watcher of watchers) watcher();
    };
    child.stdout?.on('data', take);
    child.stderr?.on('data', take);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>((resolve) => {
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        for (const watcher of watchers) watcher();
        resolve({ code, signal, ms: Date.now() - started });
      });
    });
    let exited = false;
    void done.then(() => (exited = true));
    const waitFor = (pattern: RegExp, ms: number): Promise<string> =>
      new Promise((resolve, reject) => {
        const deadline = setTimeout(() => finish(new Error(`host ${host.index}: no ${pattern} within ${ms} ms:\n${text}`)), ms);
        const finish = (error: Error | null): void => {
          clearTimeout(deadline);
          watchers.delete(check);
          if (error === null) resolve(text);
          else reject(error);
        };
        const check = (): void => {
          if (pattern.test(text)) finish(null);
          else if (exited || child.exitCode !== null || child.signalCode !== null) {
            finish(new Error(`host ${host.index} exited before ${pattern} appeared:\n${text}`));
          }
        };
        watchers.add(check);
        check();
      });
    const run: HostRun = { host, child, output: () => text, done, waitFor };
    this.runs.push(run);
    return run;
  }

  /** `plsc launch` of one worker per host as node `host.index` of `nnodes`, rank 0's store on hosts[0]. */
  startLauncher(host: Host, launchArgs: readonly string[], command: readonly string[], env: Record<string, string>, timeoutMs: number, port = 29500): HostRun {
    const master = this.hosts[0] as Host;
    return this.startPlsc(
      host,
      ['launch', '--nproc-per-node', '1', '--nnodes', String(this.hosts.length), '--node-rank', String(host.index), '--master-addr', master.address, '--master-port', String(port), ...launchArgs, '--', ...command],
      env,
      timeoutMs,
    );
  }

  /** SIGKILLs the host's launcher (its workers die with it). */
  killLauncher(run: HostRun): void {
    run.child.kill('SIGKILL');
  }

  /** Takes the host's interface down, from inside its namespace. */
  linkDown(host: Host): void {
    ip(['-n', host.namespace, 'link', 'set', host.iface, 'down']);
  }

  /** Brings the host's interface back up (its address stays). */
  linkUp(host: Host): void {
    ip(['-n', host.namespace, 'link', 'set', host.iface, 'up']);
  }

  /** Everything the host's processes printed so far, from its log file (host-<index>.log under logDir). */
  readLog(host: Host): string {
    return readFileSync(join(this.logDir, `host-${host.index}.log`), 'utf8');
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    process.off('exit', this.onExit);
    for (const run of this.runs) if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
    for (const host of this.hosts) removeNamespace(host.namespace);
    removeNamespace(this.switchNamespace);
    for (const log of this.logs) log.end();
  }
}
