// Process groups on torch's c10d: a TCPStore rendezvous hosted by rank 0 and ProcessGroupGloo
// collectives (ProcessGroupNCCL where libtorch has CUDA). World size 1 needs no network at all.
import { native, type NativeTensor } from '../torch/native.js';
import { Tensor } from '../torch/tensor.js';
import * as ops from '../torch/ops.js';
import '../torch/tensor-methods.js';
import { readDistributedEnv, readMillisecondsEnv, validatePort } from './env.js';
import { Work, type NativeWorkHandle } from './work.js';
import { watchLauncher } from './lifeline.js';
import { chooseGlooDevice } from './interface.js';
import { integerInRange, positiveInteger } from '../util/validate.js';

export type ReduceOp = 'sum' | 'avg' | 'max' | 'min' | 'product';
export type Backend = 'gloo' | 'nccl' | 'local';

/** Collective timeout when neither the options nor PLSC_COLLECTIVE_TIMEOUT_MS say otherwise. */
export const DEFAULT_COLLECTIVE_TIMEOUT_MS = 60_000;
/** How long processes wait for each other at start (options or PLSC_RENDEZVOUS_TIMEOUT_MS). */
export const DEFAULT_RENDEZVOUS_TIMEOUT_MS = 60_000;

const REDUCE_OPS: readonly ReduceOp[] = ['sum', 'avg', 'max', 'min', 'product'];

interface NativeProcessGroupHandle {
  readonly rank: number;
  readonly size: number;
  readonly backend: string;
  readonly timeoutMs: number;
  readonly isShutDown: boolean;
  allReduce(tensor: NativeTensor, op: ReduceOp): NativeWorkHandle;
  allGather(tensor: NativeTensor, uneven: boolean): NativeWorkHandle;
  reduceScatter(tensor: NativeTensor, op: ReduceOp): NativeWorkHandle;
  broadcast(tensor: NativeTensor, src: number): NativeWorkHandle;
  barrier(): NativeWorkHandle;
  pending(): number;
  shutdown(): void;
}

interface C10dAddon {
  c10dInit(options: {
    rank: number;
    worldSize: number;
    masterAddr: string;
    masterPort: number;
    timeoutMs: number;
    rendezvousTimeoutMs: number;
    backend: string;
    glooInterface?: string;
    glooHostname?: string;
    hostAddress?: string;
    storeServer?: boolean;
    storePrefix?: string;
  }): Promise<NativeProcessGroupHandle>;
  c10dBackends(): string[];
}

const c10d = native as unknown as C10dAddon;

export interface InitProcessGroupOptions {
  /** This process's rank (default: RANK, else 0). */
  rank?: number;
  /** Number of processes (default: WORLD_SIZE, else 1). */
  worldSize?: number;
  /** Host of rank 0 (default: MASTER_ADDR). */
  masterAddr?: string;
  /** Port of rank 0's rendezvous store (default: MASTER_PORT). */
  masterPort?: number;
  /** 'gloo' (CPU tensors; the default) or 'nccl' (CUDA tensors; only in CUDA builds of libtorch). */
  backend?: 'gloo' | 'nccl';
  /** Bound on every collective, in ms (default: PLSC_COLLECTIVE_TIMEOUT_MS, else 60 s). */
  timeoutMs?: number;
  /** Bound on the rendezvous, in ms (default: PLSC_RENDEZVOUS_TIMEOUT_MS, else 60 s). */
  rendezvousTimeoutMs?: number;
  /**
   * Network interface for gloo's connections (default: GLOO_SOCKET_IFNAME; else loopback for a local
   * master and the address of the route to the master for a remote one). One that does not exist, is
   * down or has no address is refused, naming the interfaces there are.
   */
  glooInterface?: string;
  /** Make this the group that collectives use by default (default true). */
  setDefault?: boolean;
}

export interface AllGatherOptions {
  /** Ranks may contribute different first dimensions (their shapes are exchanged first). */
  uneven?: boolean;
}

function checkReduceOp(op: ReduceOp, what: string): void {
  if (!REDUCE_OPS.includes(op)) throw new TypeError(`${what}: unknown reduce op '${String(op)}' (expected ${REDUCE_OPS.join(', ')})`);
}

// allGather in a group of one: a copy of the tensor, with a 0-d tensor as shape [1].
function gatheredAlone(tensor: Tensor): Tensor {
  const copy = ops.clone(tensor);
  if (tensor.ndim !== 0) return copy;
  try {
    return ops.reshape(copy, [1]);
  } finally {
    copy.dispose();
  }
}

const FLOATING = new Set(['float32', 'float64', 'float16', 'bfloat16']);

/**
 * A group of processes that run collectives together. Every method is asynchronous and returns a
 * {@link Work}; every rank must issue the same collectives in the same order. allReduce and
 * broadcast work in place: the tensor holds the result once the work has been waited on.
 */
export class ProcessGroup {
  private constructor(
    readonly rank: number,
    readonly worldSize: number,
    readonly backend: Backend,
    readonly timeoutMs: number,
    private nativeGroup: NativeProcessGroupHandle | null,
  ) {}

  /** @internal */
  static fromNative(group: NativeProcessGroupHandle): ProcessGroup {
    return new ProcessGroup(group.rank, group.size, group.backend as Backend, group.timeoutMs, group);
  }

  /** A group of one process: every collective is an identity, nothing touches the network. */
  static local(timeoutMs = DEFAULT_COLLECTIVE_TIMEOUT_MS): ProcessGroup {
    return new ProcessGroup(0, 1, 'local', timeoutMs, null);
  }

  private destroyed = false;

  private group(what: string): NativeProcessGroupHandle | null {
    if (this.destroyed) throw new Error(`${what}: the process group was destroyed`);
    return this.nativeGroup;
  }

  /** Reduces `tensor` across ranks in place (avg: sum divided by the world size; floating types only). */
  allReduce(tensor: Tensor, op: ReduceOp = 'sum'): Work<Tensor> {
    checkReduceOp(op, 'allReduce');
    const group = this.group(`allReduce(${op})`);
    if (group === null) {
      if (op === 'avg' && !FLOATING.has(tensor.dtype)) {
        throw new TypeError(`allReduce(avg): avg needs a floating-point tensor, got ${tensor.dtype} (use sum)`);
      }
      return Work.completed(`allReduce(${op})`, tensor);
    }
    return Work.fromNative(group.allReduce(tensor.handle, op), () => tensor);
  }

  /**
   * Every rank's tensor concatenated along dim 0 in rank order (a 0-d tensor counts as [1]). Without
   * `uneven`, all ranks must pass the same shape; with it, the first dimensions may differ.
   */
  allGather(tensor: Tensor, options: AllGatherOptions = {}): Work<Tensor> {
    const uneven = options.uneven ?? false;
    const name = uneven ? 'allGather(uneven)' : 'allGather';
    const group = this.group(name);
    if (group === null) return Work.completed(name, gatheredAlone(tensor));
    return Work.fromNative(group.allGather(tensor.handle, uneven), (result) => Tensor.fromHandle(result as NativeTensor));
  }

  /** allGather split back into one tensor per rank. */
  allGatherList(tensor: Tensor, options: AllGatherOptions = {}): Work<Tensor[]> {
    const uneven = options.uneven ?? false;
    const name = uneven ? 'allGather(uneven)' : 'allGather';
    const group = this.group(name);
    if (group === null) {
      return Work.completed(name, [gatheredAlone(tensor)]);
    }
    return Work.fromNative(group.allGather(tensor.handle, uneven), (result, handle) => {
      const all = Tensor.fromHandle(result as NativeTensor);
      try {
        return ops.split(all, handle.splitSizes(), 0);
      } finally {
        all.dispose();
      }
    });
  }

  /**
   * Splits the first dimension of `tensor` into worldSize equal chunks; rank r receives the reduction
   * of every rank's chunk r. (gloo in libtorch 1.13 has no reduce_scatter: this runs an allReduce of
   * the whole tensor and keeps this rank's chunk.)
   */
  reduceScatter(tensor: Tensor, op: ReduceOp = 'sum'): Work<Tensor> {
    checkReduceOp(op, 'reduceScatter');
    const group = this.group(`reduceScatter(${op})`);
    if (group === null) {
      if (tensor.ndim === 0) throw new RangeError(`reduceScatter(${op}): the input needs at least one dimension`);
      if (op === 'avg' && !FLOATING.has(tensor.dtype)) {
        throw new TypeError(`reduceScatter(avg): avg needs a floating-point tensor, got ${tensor.dtype} (use sum)`);
      }
      return Work.completed(`reduceScatter(${op})`, ops.clone(tensor));
    }
    return Work.fromNative(group.reduceScatter(tensor.handle, op), (result) => Tensor.fromHandle(result as NativeTensor));
  }

  /** Copies rank `src`'s tensor into every rank's tensor (in place). */
  broadcast(tensor: Tensor, src = 0): Work<Tensor> {
    const group = this.group(`broadcast(src=${src})`);
    if (group === null) {
      if (src !== 0) throw new RangeError(`broadcast(src=${src}): source rank must be in [0, 1)`);
      return Work.completed(`broadcast(src=${src})`, tensor);
    }
    return Work.fromNative(group.broadcast(tensor.handle, src), () => tensor);
  }

  /** Completes once every rank has reached it (and their earlier collectives have completed). */
  barrier(): Work<void> {
    const group = this.group('barrier');
    if (group === null) return Work.completed('barrier', undefined);
    return Work.fromNative(group.barrier(), () => undefined);
  }

  /** Collectives issued and not yet complete. */
  pending(): number {
    return this.nativeGroup === null || this.destroyed ? 0 : this.nativeGroup.pending();
  }

  /**
   * Waits for outstanding collectives (each bounded by the timeout), then closes the connections.
   * Later calls on this group throw. Idempotent.
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.nativeGroup?.shutdown();
    this.nativeGroup = null;
    if (defaultGroup === this) defaultGroup = null;
  }
}

let defaultGroup: ProcessGroup | null = null;

/** The group initProcessGroup() made the default; throws when there is none. */
export function getProcessGroup(): ProcessGroup {
  if (defaultGroup === null) throw new Error('no process group: call initProcessGroup() first');
  return defaultGroup;
}

export function isProcessGroupInitialized(): boolean {
  return defaultGroup !== null;
}

/** Destroys the default group (if any). */
export function destroyProcessGroup(): void {
  defaultGroup?.destroy();
  defaultGroup = null;
}

/** Backends compiled into this build of the addon. */
export function availableBackends(): string[] {
  return ['local', ...c10d.c10dBackends()];
}

/**
 * Joins the job: reads RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT (as set by `plsc launch`,
 * torchrun, or a Kubernetes / Slurm script), or takes them from `options`. Rank 0 hosts the
 * rendezvous store; the promise resolves once every process has joined and gloo is connected, and
 * rejects with a message naming the problem (timeout, port in use, world size mismatch) otherwise.
 * World size 1 returns a local group without touching the network.
 */
export async function initProcessGroup(options: InitProcessGroupOptions = {}): Promise<ProcessGroup> {
  if (options.setDefault !== false && defaultGroup !== null) {
    throw new Error('initProcessGroup: a default process group exists already (call destroyProcessGroup() first)');
  }
  // A worker of plsc launch dies with it, whatever this process is doing when that happens.
  watchLauncher();
  const place = readDistributedEnv();
  const worldSize = options.worldSize ?? place?.worldSize ?? 1;
  const rank = options.rank ?? place?.rank ?? 0;
  positiveInteger(worldSize, 'initProcessGroup: worldSize');
  integerInRange(rank, 'initProcessGroup: rank', 0, worldSize - 1);
  const timeoutMs = options.timeoutMs ?? readMillisecondsEnv('PLSC_COLLECTIVE_TIMEOUT_MS') ?? DEFAULT_COLLECTIVE_TIMEOUT_MS;
  const rendezvousTimeoutMs =
    options.rendezvousTimeoutMs ?? readMillisecondsEnv('PLSC_RENDEZVOUS_TIMEOUT_MS') ?? DEFAULT_RENDEZVOUS_TIMEOUT_MS;
  for (const [name, value] of [['timeoutMs', timeoutMs], ['rendezvousTimeoutMs', rendezvousTimeoutMs]] as const) {
    positiveInteger(value, `initProcessGroup: ${name}`);
  }

  let group: ProcessGroup;
  if (worldSize === 1) {
    group = ProcessGroup.local(timeoutMs);
  } else {
    const masterAddr = options.masterAddr ?? place?.masterAddr;
    const masterPort = options.masterPort ?? place?.masterPort;
    if (masterAddr === undefined || masterPort === undefined) {
      throw new Error(`initProcessGroup: world size ${worldSize} needs masterAddr and masterPort (or MASTER_ADDR and MASTER_PORT)`);
    }
    validatePort(masterPort, 'initProcessGroup: masterPort');
    const backend = options.backend ?? 'gloo';
    if (!c10d.c10dBackends().includes(backend)) {
      throw new Error(`initProcessGroup: backend '${backend}' is not in this build (available: ${c10d.c10dBackends().join(', ') || 'none'})`);
    }
    const glooInterface = options.glooInterface ?? process.env.GLOO_SOCKET_IFNAME;
    const glooDevice =
      backend === 'gloo'
        ? await chooseGlooDevice(masterAddr, glooInterface, options.glooInterface !== undefined ? 'initProcessGroup: glooInterface' : 'GLOO_SOCKET_IFNAME')
        : {};
    // Under torchrun (elastic), its agent already hosts the store on MASTER_PORT: rank 0 joins it as
    // a client, and each restart of the workers uses fresh keys.
    const agentStore = process.env.TORCHELASTIC_USE_AGENT_STORE === 'True';
    const attempt = process.env.TORCHELASTIC_RESTART_COUNT ?? '0';
    const nativeGroup = await c10d.c10dInit({
      storeServer: rank === 0 && !agentStore,
      storePrefix: `plsc/attempt_${attempt}`,
      rank,
      worldSize,
      masterAddr,
      masterPort,
      timeoutMs,
      rendezvousTimeoutMs,
      backend,
      ...glooDevice,
    });
    group = ProcessGroup.fromNative(nativeGroup);
  }
  if (options.setDefault !== false) {
    if (defaultGroup !== null) {
      group.destroy();
      throw new Error('initProcessGroup: a default process group was created concurrently');
    }
    defaultGroup = group;
  }
  return group;
}
