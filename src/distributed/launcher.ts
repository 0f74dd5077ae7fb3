// `plsc launch`: starts this node's workers with the torchrun environment, prefixes their output
// with their rank, and fails fast: when one worker exits non-zero or dies from a signal, the others
// get SIGTERM, then SIGKILL after a grace period, and the launch reports which rank failed and how.
// Pure Node: the launcher never loads libtorch.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, type WriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DEFAULT_MASTER_ADDR, DEFAULT_MASTER_PORT, LAUNCHER_PID_VAR, distributedEnvVars, validatePort } from './env.js';
import { blameIn, type Blame } from './fault-report.js';
import { isStackFrame } from '../cli-kit/failure.js';
import { checkNetworkInterface } from './interface.js';
import { parseEndpoint, parseNodeRange, type ElasticSettings } from './elastic-options.js';
import { nonNegativeInteger, positiveInteger } from '../util/validate.js';

export interface LaunchOptions {
  /** Workers on this node. */
  nprocPerNode: number;
  /** Nodes in the job (default 1). */
  nnodes?: number;
  /** This node's index, 0 ≤ nodeRank < nnodes (default 0). */
  nodeRank?: number;
  /** Host of rank 0 (default 127.0.0.1). */
  masterAddr?: string;
  /** Port of rank 0's rendezvous store (default: a free port when single-node, else 29500). */
  masterPort?: number;
  /** Program to run; a .js / .mjs / .cjs file runs under this Node binary. */
  command: string;
  args?: readonly string[];
  /**
   * Network interface for gloo's connections between nodes, passed to the workers as
   * GLOO_SOCKET_IFNAME (default: that variable if set, else the route to the master).
   */
  iface?: string;
  /** Extra environment for the workers (on top of this process's). */
  env?: Readonly<Record<string, string>>;
  /** Time between SIGTERM and SIGKILL when stopping workers (default 5000 ms). */
  gracePeriodMs?: number;
  /**
   * How long the other workers may keep running once one has exited with 0 (default 300 s): then
   * they are stopped and the launch fails, naming them.
   */
  exitGraceMs?: number;
  /**
   * Directory for each worker's complete output (`rank-R.log`, stack traces included). Default: a
   * new `plsc-launch-*` directory under the OS temp dir, removed when every worker succeeded.
   * null: no logs.
   */
  logDir?: string | null;
  /** Receives every output line of every worker (default: printed with a `[rank R]` prefix). */
  onOutput?: (line: WorkerOutputLine) => void;
  /** Aborting stops all workers (forwarding the abort reason when it is a signal name). */
  signal?: AbortSignal;
  /**
   * Times the whole group is started again after a worker failed (default 0, torchrun's
   * --max-restarts). Workers see TORCHELASTIC_RESTART_COUNT and TORCHELASTIC_MAX_RESTARTS.
   */
  maxRestarts?: number;
  /** Told about each restart before it happens (default: a line on stderr). */
  onRestart?: (restart: RestartRecord) => void;
}

/** A restart of the worker group after a failure. */
export interface RestartRecord {
  /** 1 for the first restart. */
  restart: number;
  maxRestarts: number;
  /** The worker whose failure caused it. */
  failure: WorkerOutcome;
  /** The ranks the failed worker's last error blamed, if any. */
  blame: Blame | null;
}

export interface WorkerOutputLine {
  rank: number;
  stream: 'stdout' | 'stderr';
  text: string;
}

export interface WorkerOutcome {
  rank: number;
  localRank: number;
  pid: number | undefined;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** The launcher stopped this worker (after another one failed, or on abort). */
  stoppedByLauncher: boolean;
  /** Set when the worker could not be started at all. */
  spawnError?: string;
}

export interface ExitGraceExpiry {
  /** The worker that exited with 0 first. */
  finishedRank: number;
  /** Workers still running when the grace period ran out (they were stopped). */
  stillRunning: number[];
  graceMs: number;
}

export interface LaunchResult {
  /** The exit code `plsc launch` returns: 0, the failed worker's code, or 128 + signal number. */
  exitCode: number;
  /** The first worker that failed (the cause); null when all succeeded or the launch was aborted. */
  failure: WorkerOutcome | null;
  /** The signal the launch was aborted with, if any. */
  aborted: NodeJS.Signals | null;
  workers: WorkerOutcome[];
  masterAddr: string;
  masterPort: number;
  /**
   * The rank(s) the failed worker's last error names as the cause (a collective they never arrived
   * at, a store host not responding): they failed first, even though another worker exited first.
   */
  blame: Blame | null;
  /** Set when workers were stopped because they outlived --exit-grace after another one finished. */
  exitGrace: ExitGraceExpiry | null;
  /** Where each worker's complete output is (kept after a failure), or null. */
  logDir: string | null;
  /** The restarts that happened before this (last) run of the group, oldest first. */
  restarts: RestartRecord[];
}

/** How a worker ended, in words: "exited with code 3", "was killed by signal SIGKILL". */
export function describeOutcome(outcome: WorkerOutcome): string {
  if (outcome.spawnError !== undefined) return `could not be started: ${outcome.spawnError}`;
  if (outcome.signal !== null) return `was killed by signal ${outcome.signal}`;
  return `exited with code ${outcome.exitCode}`;
}

/** Asks the OS for a free TCP port on `host`. */
export async function findFreePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error(`could not find a free port on ${host}`))));
    });
  });
}

function signalNumber(signal: NodeJS.Signals): number {
  return (osConstants.signals as Record<string, number>)[signal] ?? 1;
}

function resolveCommand(command: string, args: readonly string[]): [string, string[]] {
  if (/\.(m|c)?js$/.test(command)) return [process.execPath, [command, ...args]];
  return [command, [...args]];
}

/** The thread count each worker gets when the user set none: the cores shared among the workers. */
function threadsPerWorker(nproc: number): string {
  return String(Math.max(1, Math.floor(cpus().length / nproc)));
}

const flagError = (flag: string, problem: string): Error => new Error(`${flag} ${problem}`);

/** Checks launch options; throws an error naming the flag. */
export function validateLaunchOptions(options: LaunchOptions): Required<Pick<LaunchOptions, 'nnodes' | 'nodeRank' | 'gracePeriodMs' | 'exitGraceMs'>> {
  const { nprocPerNode } = options;
  const nnodes = options.nnodes ?? 1;
  const nodeRank = options.nodeRank ?? 0;
  const gracePeriodMs = options.gracePeriodMs ?? 5000;
  const exitGraceMs = options.exitGraceMs ?? DEFAULT_EXIT_GRACE_MS;
  positiveInteger(nprocPerNode, '--nproc-per-node', flagError);
  positiveInteger(nnodes, '--nnodes', flagError);
  if (!Number.isInteger(nodeRank) || nodeRank < 0 || nodeRank >= nnodes) {
    throw new Error(`--node-rank must be an integer in [0, ${nnodes}), got ${nodeRank}`);
  }
  if (!(gracePeriodMs >= 0)) throw new Error(`grace period must be >= 0 ms, got ${gracePeriodMs}`);
  if (!(exitGraceMs >= 0)) throw new Error(`--exit-grace must be >= 0 seconds, got ${exitGraceMs / 1000}`);
  if (options.masterPort !== undefined) validatePort(options.masterPort, '--master-port');
  if (options.maxRestarts !== undefined) nonNegativeInteger(options.maxRestarts, '--max-restarts', flagError);
  if (options.command.length === 0) throw new Error('no command to launch (put it after --)');
  const workerIface = options.env?.GLOO_SOCKET_IFNAME ?? process.env.GLOO_SOCKET_IFNAME;
  if (options.iface !== undefined) checkNetworkInterface(options.iface, '--iface');
  else if (workerIface !== undefined && workerIface !== '') checkNetworkInterface(workerIface, 'GLOO_SOCKET_IFNAME');
  return { nnodes, nodeRank, gracePeriodMs, exitGraceMs };
}

/** How long the others may run on after one worker exited with 0, unless --exit-grace says otherwise. */
export const DEFAULT_EXIT_GRACE_MS = 300_000;

/** The warning printed when more workers than cores are started on this node, or null. */
export function oversubscriptionWarning(nprocPerNode: number, cores: number = cpus().length): string | null {
  if (nprocPerNode <= cores) return null;
  return `plsc launch: warning: ${nprocPerNode} workers on ${cores} core${cores === 1 ? '' : 's'}: they will share the CPU and run far slower than ${cores} would (use --nproc-per-node ${cores} or fewer)`;
}

function defaultOutput(line: WorkerOutputLine): void {
  const out = line.stream === 'stdout' ? process.stdout : process.stderr;
  out.write(`[rank ${line.rank}] ${line.text}\n`);
}

/** The line printed for a restart (the default onRestart). */
export function restartMessage(record: RestartRecord): string {
  const f = record.failure;
  const blamed = record.blame !== null && !record.blame.ranks.includes(f.rank) ? ` (its last error blames rank${record.blame.ranks.length > 1 ? 's' : ''} ${record.blame.ranks.join(', ')}: ${record.blame.what})` : '';
  return `plsc launch: rank ${f.rank} (local rank ${f.localRank}${f.pid !== undefined ? `, pid ${f.pid}` : ''}) ${describeOutcome(f)}${blamed}; stopped the group; restart ${record.restart} of ${record.maxRestarts}`;
}

/**
 * Runs nprocPerNode workers of `command` and resolves when all have exited. Never rejects for a
 * worker's failure: the result says who failed and how. With maxRestarts, a failed group is
 * stopped and started again (every worker) while restarts remain.
 */
export async function launch(options: LaunchOptions): Promise<LaunchResult> {
  const { nnodes, nodeRank } = validateLaunchOptions(options);
  const maxRestarts = options.maxRestarts ?? 0;
  const warning = oversubscriptionWarning(options.nprocPerNode);
  if (warning !== null) process.stderr.write(`${warning}\n`);
  const defaultLogDir = options.logDir === undefined;
  const logDir: string | null = defaultLogDir ? mkdtempSync(join(tmpdir(), 'plsc-launch-')) : (options.logDir ?? null);
  if (logDir !== null && !defaultLogDir) mkdirSync(logDir, { recursive: true });
  const masterAddr = options.masterAddr ?? DEFAULT_MASTER_ADDR;
  const restarts: RestartRecord[] = [];
  const onRestart = options.onRestart ?? ((record: RestartRecord) => process.stderr.write(`${restartMessage(record)}\n`));
  for (let restartCount = 0; ; restartCount++) {
    // A single-node group without --master-port gets a fresh port each time (the old one may linger).
    const masterPort = options.masterPort ?? (nnodes === 1 ? await findFreePort(masterAddr) : DEFAULT_MASTER_PORT);
    const nproc = options.nprocPerNode;
    const result = await runGroup(options, {
      rankOffset: nodeRank * nproc,
      worldSize: nnodes * nproc,
      groupRank: nodeRank,
      groupWorldSize: nnodes,
      masterAddr,
      masterPort,
      restartCount,
      maxRestarts,
      logDir,
      env: {},
    });
    const failed = result.failure;
    if (failed === null || result.aborted !== null || restartCount >= maxRestarts || options.signal?.aborted === true) {
      let keptLogDir = logDir;
      if (logDir !== null && defaultLogDir && result.exitCode === 0) {
        rmSync(logDir, { recursive: true, force: true });
        keptLogDir = null;
      }
      return { ...result, logDir: keptLogDir, restarts };
    }
    const record: RestartRecord = { restart: restartCount + 1, maxRestarts, failure: failed, blame: result.blame };
    restarts.push(record);
    onRestart(record);
  }
}

/** Where one run of the worker group places this node's workers. */
export interface GroupPlacement {
  /** Global rank of this node's local rank 0. */
  rankOffset: number;
  worldSize: number;
  groupRank: number;
  groupWorldSize: number;
  masterAddr: string;
  masterPort: number;
  /** TORCHELASTIC_RESTART_COUNT of this run. */
  restartCount: number;
  maxRestarts: number;
  /** Each rank's output is appended to rank-R.log here (null: no logs). */
  logDir: string | null;
  /** More environment for the workers of this run. */
  env: Readonly<Record<string, string>>;
  /** Aborting stops the workers without counting as a failure (another node asked for a new round). */
  stop?: AbortSignal;
}

/** One run of the worker group (no restarts): resolves when every worker has exited. */
export async function runGroup(options: LaunchOptions, place: GroupPlacement): Promise<Omit<LaunchResult, 'restarts'> & { stoppedForRestart: boolean }> {
  const { gracePeriodMs, exitGraceMs } = validateLaunchOptions(options);
  const nproc = options.nprocPerNode;
  const logDir = place.logDir;
  const showTraces = process.env.PLSC_DEBUG === '1';
  const { worldSize, masterAddr, masterPort } = place;
  const onOutput = options.onOutput ?? defaultOutput;
  const [file, args] = resolveCommand(options.command, options.args ?? []);

  const userSetThreads = process.env.PLSC_NUM_THREADS !== undefined || process.env.OMP_NUM_THREADS !== undefined;
  const workers: { outcome: WorkerOutcome; child: ChildProcess | null; done: Promise<void> }[] = [];
  let failure: WorkerOutcome | null = null;
  let aborted: NodeJS.Signals | null = null;
  let stopping = false;
  let killTimer: NodeJS.Timeout | null = null;
  let exitGraceTimer: NodeJS.Timeout | null = null;
  let exitGrace: ExitGraceExpiry | null = null;
  const logs: WriteStream[] = [];
  // Per rank: the ranks its latest error line names as the cause.
  const blames = new Map<number, Blame>();

  const signalGroup = (outcome: WorkerOutcome, signal: NodeJS.Signals): void => {
    if (outcome.pid === undefined) return;
    try {
      // Workers lead their own process group, so whatever they started goes too.
      process.kill(-outcome.pid, signal);
    } catch {
      try {
        process.kill(outcome.pid, signal);
      } catch {
        // already gone
      }
    }
  };

  const running = (): typeof workers => workers.filter((w) => w.outcome.exitCode === null && w.outcome.signal === null && w.outcome.spawnError === undefined);

  const stopAll = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    if (exitGraceTimer !== null) clearTimeout(exitGraceTimer);
    for (const w of running()) {
      w.outcome.stoppedByLauncher = true;
      signalGroup(w.outcome, signal);
      // A stopped (SIGSTOP'd, frozen) worker only acts on the signal once continued.
      signalGroup(w.outcome, 'SIGCONT');
    }
    // SIGINT asks workers to finish their step and save a checkpoint: no deadline (a second
    // SIGINT to the launcher ends everything at once).
    if (signal === 'SIGINT') return;
    killTimer = setTimeout(() => {
      for (const w of running()) signalGroup(w.outcome, 'SIGKILL');
    }, gracePeriodMs);
  };

  const startExitGrace = (finished: WorkerOutcome): void => {
    if (exitGraceTimer !== null || stopping) return;
    exitGraceTimer = setTimeout(() => {
      const stillRunning = running().map((w) => w.outcome.rank);
      if (stillRunning.length === 0 || stopping) return;
      exitGrace = { finishedRank: finished.rank, stillRunning, graceMs: exitGraceMs };
      stopAll('SIGTERM');
    }, exitGraceMs);
  };

  const onAbort = (): void => {
    const reason = options.signal?.reason;
    aborted = typeof reason === 'string' && reason.startsWith('SIG') ? (reason as NodeJS.Signals) : 'SIGTERM';
    stopAll(aborted);
  };
  if (options.signal?.aborted) onAbort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let stoppedForRestart = false;
  const onStop = (): void => {
    if (aborted !== null || failure !== null) return;
    stoppedForRestart = true;
    stopAll('SIGTERM');
  };
  if (place.stop?.aborted) onStop();
  place.stop?.addEventListener('abort', onStop, { once: true });

  for (let localRank = 0; localRank < nproc && aborted === null && !stoppedForRestart; localRank++) {
    const rank = place.rankOffset + localRank;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...options.env,
      ...place.env,
      ...distributedEnvVars({ rank, worldSize, localRank, localWorldSize: nproc, groupRank: place.groupRank, masterAddr, masterPort }),
      GROUP_WORLD_SIZE: String(place.groupWorldSize),
      [LAUNCHER_PID_VAR]: String(process.pid),
      ...(options.iface !== undefined ? { GLOO_SOCKET_IFNAME: options.iface } : {}),
      TORCHELASTIC_RESTART_COUNT: String(place.restartCount),
      TORCHELASTIC_MAX_RESTARTS: String(place.maxRestarts),
    };
    if (!userSetThreads && options.env?.PLSC_NUM_THREADS === undefined) env.PLSC_NUM_THREADS = threadsPerWorker(nproc);
    const outcome: WorkerOutcome = { rank, localRank, pid: undefined, exitCode: null, signal: null, stoppedByLauncher: false };
    const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    outcome.pid = child.pid;
    const log = logDir === null ? null : createWriteStream(join(logDir, `rank-${rank}.log`), { flags: place.restartCount > 0 ? 'a' : 'w' });
    log?.on('error', () => undefined);
    if (place.restartCount > 0) log?.write(`--- restart ${place.restartCount} of ${place.maxRestarts} ---\n`);
    if (log !== null) logs.push(log);
    const streamsClosed: Promise<void>[] = [];
    for (const stream of ['stdout', 'stderr'] as const) {
      const source = child[stream];
      if (source === null) continue;
      const lines = createInterface({ input: source, crlfDelay: Infinity });
      lines.on('line', (text) => {
        log?.write(`${stream === 'stderr' ? 'E ' : '  '}${text}\n`);
        const blame = blameIn(text, rank);
        if (blame !== null) blames.set(rank, blame);
        // Stack traces go to the log file only (to the terminal too with PLSC_DEBUG=1).
        if (showTraces || logDir === null || !isStackFrame(text)) onOutput({ rank, stream, text });
      });
      streamsClosed.push(new Promise((resolve) => lines.once('close', () => resolve())));
    }
    const exited = new Promise<void>((resolve) => {
      const finish = (): void => {
        const failed = outcome.spawnError !== undefined || outcome.signal !== null || (outcome.exitCode ?? 0) !== 0;
        if (failed && !outcome.stoppedByLauncher && failure === null && aborted === null && exitGrace === null && !stoppedForRestart) {
          failure = outcome;
          stopAll('SIGTERM');
        } else if (!failed) {
          startExitGrace(outcome);
        }
        resolve();
      };
      child.once('error', (err) => {
        if (outcome.exitCode !== null || outcome.signal !== null) return;
        outcome.spawnError = err.message;
        finish();
      });
      child.once('exit', (code, signal) => {
        outcome.exitCode = code;
        outcome.signal = signal;
        finish();
      });
    });
    // Output may still be in flight after exit; wait for it, but not for grandchildren that
    // inherited the pipes and outlive the worker.
    const done = exited.then(() =>
      Promise.race([Promise.all(streamsClosed).then(() => undefined), new Promise<void>((r) => setTimeout(r, 2000).unref())]),
    );
    workers.push({ outcome, child, done });
  }

  await Promise.all(workers.map((w) => w.done));
  if (killTimer !== null) clearTimeout(killTimer);
  if (exitGraceTimer !== null) clearTimeout(exitGraceTimer);
  options.signal?.removeEventListener('abort', onAbort);
  place.stop?.removeEventListener('abort', onStop);
  const graceExpired = exitGrace as ExitGraceExpiry | null;
  // Anything a worker left in its process group (it exited, its children may not have).
  if (failure !== null || aborted !== null || graceExpired !== null || stoppedForRestart) for (const w of workers) signalGroup(w.outcome, 'SIGKILL');
  await Promise.all(logs.map((log) => new Promise<void>((resolve) => log.end(() => resolve()))));

  const failed = failure as WorkerOutcome | null;
  let exitCode = 0;
  if (aborted !== null) exitCode = 128 + signalNumber(aborted);
  else if (failed !== null) {
    exitCode = failed.signal !== null ? 128 + signalNumber(failed.signal) : failed.exitCode && failed.exitCode > 0 ? failed.exitCode : 1;
  } else if (graceExpired !== null) exitCode = 1;
  const blame = failed !== null ? (blames.get(failed.rank) ?? null) : null;
  return { exitCode, failure: failed, aborted, workers: workers.map((w) => w.outcome), masterAddr, masterPort, blame, exitGrace: graceExpired, logDir, stoppedForRestart };
}

export interface ParsedLaunchArgs extends LaunchOptions {
  help: boolean;
  /** Set by --rdzv-endpoint (and --nnodes MIN:MAX): an elastic launch (see elastic.ts). */
  elastic?: ElasticSettings;
}

export const LAUNCH_USAGE = `usage: plsc launch --nproc-per-node N [--nnodes M --node-rank K] [--master-addr A] [--master-port P]
                   [--iface NAME] [--grace-period-ms MS] [--exit-grace SECONDS] [--log-dir DIR] [--max-restarts R] -- CMD [ARGS...]

Starts N workers running CMD (a .js file runs under node) with RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR and MASTER_PORT set as torchrun sets them. Worker
output is prefixed with [rank R]. When a worker fails, the others are stopped (SIGTERM, then
SIGKILL after the grace period) and the launch exits non-zero naming the rank that failed first.
Each worker's complete output, stack traces included, goes to DIR/rank-R.log (default: a new
plsc-launch-* directory in the temp dir, kept only when the launch fails); the terminal shows
traces only with PLSC_DEBUG=1. Once a worker has exited with 0, the others get --exit-grace
seconds (default 300) to finish before they are stopped. A first Ctrl-C is passed on to the
workers (plsc train saves a checkpoint and exits 130); a second one ends everything at once.
Single node: the master port defaults to a free port. Several nodes: run one launcher per node
with the same --nnodes, --master-addr and --master-port (default 29500) and its own --node-rank.
--iface NAME binds the workers' gloo connections to that network interface (GLOO_SOCKET_IFNAME;
default: the interface of the route to --master-addr); the launch refuses one that does not exist,
is down or has no address, listing the interfaces there are.

--max-restarts R: after a worker fails, the group is stopped and started again, up to R times
(workers see TORCHELASTIC_RESTART_COUNT and TORCHELASTIC_MAX_RESTARTS; plsc train resumes from the
newest verified checkpoint on a restart); each restart is printed with the rank that failed.

Elastic (torchrun's names): plsc launch --nproc-per-node N --nnodes MIN:MAX --rdzv-endpoint HOST:PORT
  --rdzv-id ID [--rdzv-timeout SECONDS] [--rdzv-last-call SECONDS] --max-restarts R -- CMD ...
on every host, no --node-rank: the launchers meet on a c10d store at HOST:PORT (hosted by the
launcher on HOST), which numbers the nodes and fixes the world size for each round. When a worker
fails or a host is lost, the others start a new round (a restart) without it once --rdzv-last-call
(default 30 s) has passed with at least MIN hosts; a host that arrives later joins at the next
restart. --rdzv-timeout (default 600 s) bounds every wait for MIN hosts or for a new round.`;

function takeInteger(flag: string, value: string | undefined): number {
  if (value === undefined || !/^\d+$/.test(value)) throw new Error(`${flag} needs a non-negative integer, got ${value === undefined ? 'nothing' : JSON.stringify(value)}`);
  return Number(value);
}

/** Parses `plsc launch` arguments (flags as --name value or --name=value, then -- CMD ARGS...). */
export function parseLaunchArgs(argv: readonly string[]): ParsedLaunchArgs {
  const parsed: ParsedLaunchArgs = { nprocPerNode: 0, command: '', args: [], help: false };
  let nprocSeen = false;
  let nodeRange: { minNodes: number; maxNodes: number } | null = null;
  let endpoint: { host: string; port: number } | null = null;
  let rdzvId: string | undefined;
  let rdzvTimeoutMs: number | undefined;
  let rdzvLastCallMs: number | undefined;
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      i++;
      break;
    }
    if (arg === '--help' || arg === '-h') {
      parsed.help = true;
      return parsed;
    }
    if (!arg.startsWith('--')) break;
    const eq = arg.indexOf('=');
    const flag = eq >= 0 ? arg.slice(0, eq) : arg;
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    switch (flag.replace(/_/g, '-')) {
      case '--nproc-per-node':
        parsed.nprocPerNode = takeInteger(flag, value);
        nprocSeen = true;
        break;
      case '--nnodes':
        if (value !== undefined && value.includes(':')) nodeRange = parseNodeRange(value);
        else parsed.nnodes = takeInteger(flag, value);
        break;
      case '--rdzv-endpoint':
        if (value === undefined || value === '') throw new Error(`${flag} needs HOST:PORT`);
        endpoint = parseEndpoint(value);
        break;
      case '--rdzv-id':
        if (value === undefined || !/^[\w.-]+$/.test(value)) throw new Error(`${flag} needs an id of letters, digits, '.', '_' or '-', got ${JSON.stringify(value ?? '')}`);
        rdzvId = value;
        break;
      case '--rdzv-timeout':
        rdzvTimeoutMs = takeInteger(flag, value) * 1000;
        break;
      case '--rdzv-last-call':
        rdzvLastCallMs = takeInteger(flag, value) * 1000;
        break;
      case '--node-rank':
        parsed.nodeRank = takeInteger(flag, value);
        break;
      case '--master-addr':
        if (value === undefined || value === '') throw new Error(`${flag} needs a host`);
        parsed.masterAddr = value;
        break;
      case '--master-port':
        parsed.masterPort = takeInteger(flag, value);
        break;
      case '--grace-period-ms':
        parsed.gracePeriodMs = takeInteger(flag, value);
        break;
      case '--exit-grace':
        parsed.exitGraceMs = takeInteger(flag, value) * 1000;
        break;
      case '--iface':
        if (value === undefined || value === '') throw new Error(`${flag} needs a network interface name`);
        parsed.iface = value;
        break;
      case '--max-restarts':
        parsed.maxRestarts = takeInteger(flag, value);
        break;
      case '--log-dir':
        if (value === undefined || value === '') throw new Error(`${flag} needs a directory`);
        parsed.logDir = value;
        break;
      default:
        throw new Error(`unknown option ${flag}\n\n${LAUNCH_USAGE}`);
    }
  }
  if (!nprocSeen) throw new Error(`--nproc-per-node is required\n\n${LAUNCH_USAGE}`);
  if (endpoint === null && (nodeRange !== null || rdzvId !== undefined || rdzvTimeoutMs !== undefined || rdzvLastCallMs !== undefined)) {
    throw new Error(`${nodeRange !== null ? '--nnodes MIN:MAX' : '--rdzv-id, --rdzv-timeout and --rdzv-last-call'} need${nodeRange !== null ? 's' : ''} --rdzv-endpoint HOST:PORT (an elastic launch)`);
  }
  if (endpoint !== null) {
    for (const [given, flag] of [[parsed.nodeRank, '--node-rank'], [parsed.masterAddr, '--master-addr'], [parsed.masterPort, '--master-port']] as const) {
      if (given !== undefined) throw new Error(`${flag} cannot be combined with --rdzv-endpoint: the rendezvous assigns node ranks and the workers meet at the endpoint`);
    }
    const range = nodeRange ?? { minNodes: parsed.nnodes ?? 1, maxNodes: parsed.nnodes ?? 1 };
    delete parsed.nnodes;
    parsed.elastic = {
      endpointHost: endpoint.host,
      endpointPort: endpoint.port,
      runId: rdzvId ?? 'none',
      ...range,
      ...(rdzvTimeoutMs !== undefined ? { timeoutMs: rdzvTimeoutMs } : {}),
      ...(rdzvLastCallMs !== undefined ? { lastCallMs: rdzvLastCallMs } : {}),
    };
  }
  const rest = argv.slice(i);
  if (rest.length === 0) throw new Error(`no command to launch (put it after --)\n\n${LAUNCH_USAGE}`);
  parsed.command = rest[0] as string;
  parsed.args = rest.slice(1);
  return parsed;
}
