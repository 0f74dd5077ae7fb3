// The torchrun environment contract: what `plsc launch`, torchrun, or a Kubernetes / Slurm job
// script sets for every worker, and how a worker reads it back.

/** A worker's place in the job, as torchrun describes it. */
export interface DistributedEnv {
  /** Global rank, 0 ≤ rank < worldSize (RANK). */
  rank: number;
  /** Number of processes in the job (WORLD_SIZE). */
  worldSize: number;
  /** Rank among the processes of this node (LOCAL_RANK). */
  localRank: number;
  /** Processes on this node (LOCAL_WORLD_SIZE). */
  localWorldSize: number;
  /** Index of this node (GROUP_RANK). */
  groupRank: number;
  /** Host of rank 0's rendezvous store (MASTER_ADDR). */
  masterAddr: string;
  /** Port of rank 0's rendezvous store (MASTER_PORT). */
  masterPort: number;
}

/** The variables a launcher sets, in the order torchrun documents them. */
export const DISTRIBUTED_ENV_VARS = [
  'RANK',
  'WORLD_SIZE',
  'LOCAL_RANK',
  'LOCAL_WORLD_SIZE',
  'GROUP_RANK',
  'MASTER_ADDR',
  'MASTER_PORT',
] as const;

export { LAUNCHER_PID_VAR } from '../cli-kit/failure.js';

export const DEFAULT_MASTER_ADDR = '127.0.0.1';
export const DEFAULT_MASTER_PORT = 29500;

type Env = Readonly<Record<string, string | undefined>>;

function readInteger(env: Env, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const text = raw.trim();
  if (!/^\d+$/.test(text)) {
    throw new Error(`invalid environment variable ${name}=${JSON.stringify(raw)}: expected a non-negative integer`);
  }
  const value = Number(text);
  if (value < min || value > max) {
    throw new Error(`invalid environment variable ${name}=${raw}: must be between ${min} and ${max}`);
  }
  return value;
}

/** Checks that a port is an integer in [1, 65535]; `what` names the source in the message. */
export function validatePort(port: number, what: string): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`${what}: port ${port} is not an integer between 1 and 65535`);
  }
  return port;
}

/**
 * Reads the torchrun variables. Returns null when none of RANK / WORLD_SIZE is set (a plain,
 * single-process run). Throws an error naming the variable when they are inconsistent.
 */
export function readDistributedEnv(env: Env = process.env): DistributedEnv | null {
  const worldSize = readInteger(env, 'WORLD_SIZE', 1);
  const rank = readInteger(env, 'RANK', 0);
  if (worldSize === undefined && rank === undefined) return null;
  if (worldSize === undefined) throw new Error(`RANK=${rank} is set but WORLD_SIZE is not: set both (or neither)`);
  if (rank === undefined) throw new Error(`WORLD_SIZE=${worldSize} is set but RANK is not: set both (or neither)`);
  if (rank >= worldSize) throw new Error(`RANK=${rank} must be smaller than WORLD_SIZE=${worldSize}`);

  const localWorldSize = readInteger(env, 'LOCAL_WORLD_SIZE', 1) ?? worldSize;
  const localRank = readInteger(env, 'LOCAL_RANK', 0) ?? rank % localWorldSize;
  if (localRank >= localWorldSize) {
    throw new Error(`LOCAL_RANK=${localRank} must be smaller than LOCAL_WORLD_SIZE=${localWorldSize}`);
  }
  if (localWorldSize > worldSize) {
    throw new Error(`LOCAL_WORLD_SIZE=${localWorldSize} cannot exceed WORLD_SIZE=${worldSize}`);
  }
  const groupRank = readInteger(env, 'GROUP_RANK', 0) ?? Math.floor(rank / localWorldSize);

  const addr = env.MASTER_ADDR?.trim();
  const port = readInteger(env, 'MASTER_PORT', 1, 65535);
  if (worldSize > 1 && (addr === undefined || addr === '')) {
    throw new Error(`WORLD_SIZE=${worldSize} needs MASTER_ADDR (the host running rank 0)`);
  }
  if (worldSize > 1 && port === undefined) {
    throw new Error(`WORLD_SIZE=${worldSize} needs MASTER_PORT (the port of rank 0's rendezvous store)`);
  }
  return {
    rank,
    worldSize,
    localRank,
    localWorldSize,
    groupRank,
    masterAddr: addr === undefined || addr === '' ? DEFAULT_MASTER_ADDR : addr,
    masterPort: port ?? DEFAULT_MASTER_PORT,
  };
}

/** The variables that place a worker in a job, for a launcher to pass to the worker. */
export function distributedEnvVars(place: DistributedEnv): Record<(typeof DISTRIBUTED_ENV_VARS)[number], string> {
  return {
    RANK: String(place.rank),
    WORLD_SIZE: String(place.worldSize),
    LOCAL_RANK: String(place.localRank),
    LOCAL_WORLD_SIZE: String(place.localWorldSize),
    GROUP_RANK: String(place.groupRank),
    MASTER_ADDR: place.masterAddr,
    MASTER_PORT: String(place.masterPort),
  };
}

/** A duration in milliseconds from the environment (PLSC_* timeouts), or undefined. */
export function readMillisecondsEnv(name: string, env: Env = process.env): number | undefined {
  return readInteger(env, name, 1);
}
