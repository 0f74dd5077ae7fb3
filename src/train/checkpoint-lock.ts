// One job per output directory: a lock file `.plsc-lock` naming its owner (host, pid, the process's
// start time, boot id, job id). A lock whose owner is gone (pid not running, pid reused by a process
// started later, machine rebooted) is taken over; a lock held from another host is never broken
// automatically, since this host cannot see whether that process still runs.
import { randomUUID } from 'node:crypto';
import { closeSync, linkSync, openSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';

export const LOCK_FILE_NAME = '.plsc-lock';

export interface LockOwner {
  host: string;
  pid: number;
  /** Start time of the process in clock ticks since boot (/proc/PID/stat field 22); null off Linux. */
  startTime: string | null;
  /** /proc/sys/kernel/random/boot_id of the owner's machine; null off Linux. */
  bootId: string | null;
  /** PLSC_JOB_ID, SLURM_JOB_ID or TORCHELASTIC_RUN_ID of the owner, if set. */
  jobId: string | null;
  /** TORCHELASTIC_RESTART_COUNT of the owner (the round of an elastic job), if set. */
  restart?: number | null;
  /** When the lock was taken (ISO 8601). */
  since: string;
  /** Unique per acquisition: release removes the file only while it still holds this token. */
  token: string;
}

/** The directory is held by a live job (or by one on another host). */
export class DirectoryLockedError extends Error {
  constructor(
    readonly lockPath: string,
    readonly owner: LockOwner,
    message: string,
  ) {
    super(message);
    this.name = 'DirectoryLockedError';
  }
}

function readOptional(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** Fields 3 onwards of /proc/PID/stat, or null when the process does not exist (or off Linux). */
function procStatFields(pid: number): string[] | null {
  const stat = readOptional(`/proc/${pid}/stat`);
  if (stat === null) return null;
  // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** Start time of process `pid` in clock ticks since boot, or null when it does not run (or off Linux). */
export function processStartTime(pid: number): string | null {
  return procStatFields(pid)?.[19] ?? null;
}

function bootId(): string | null {
  return readOptional('/proc/sys/kernel/random/boot_id')?.trim() ?? null;
}

function jobIdFromEnvironment(): string | null {
  return process.env.PLSC_JOB_ID ?? process.env.SLURM_JOB_ID ?? process.env.TORCHELASTIC_RUN_ID ?? null;
}

function restartFromEnvironment(): number | null {
  const raw = process.env.TORCHELASTIC_RESTART_COUNT;
  return raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : null;
}

/**
 * A restarted group of the same job (an elastic job that lost a host: the old rank 0 may have run on
 * it) takes over the lock of an earlier round, wherever that round ran.
 */
function earlierRoundOfThisJob(owner: LockOwner, me: LockOwner): string | null {
  if (owner.jobId === null || owner.jobId !== me.jobId) return null;
  if (typeof owner.restart !== 'number' || typeof me.restart !== 'number' || owner.restart >= me.restart) return null;
  return `it was taken in round ${owner.restart} of this job (${owner.jobId}), which has been restarted (now round ${me.restart})`;
}

function thisProcess(): LockOwner {
  return {
    host: hostname(),
    pid: process.pid,
    startTime: processStartTime(process.pid),
    bootId: bootId(),
    jobId: jobIdFromEnvironment(),
    restart: restartFromEnvironment(),
    since: new Date().toISOString(),
    token: randomUUID(),
  };
}

function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as { code?: string }).code === 'EPERM';
  }
}

function parseOwner(text: string): LockOwner | null {
  try {
    const value = JSON.parse(text) as Partial<LockOwner>;
    if (typeof value.host !== 'string' || !Number.isInteger(value.pid) || typeof value.token !== 'string') return null;
    return {
      host: value.host,
      pid: value.pid as number,
      startTime: typeof value.startTime === 'string' ? value.startTime : null,
      bootId: typeof value.bootId === 'string' ? value.bootId : null,
      jobId: typeof value.jobId === 'string' ? value.jobId : null,
      restart: typeof value.restart === 'number' ? value.restart : null,
      since: typeof value.since === 'string' ? value.since : 'an unknown time',
      token: value.token,
    };
  } catch {
    return null;
  }
}

/**
 * Why the lock of `owner` no longer protects anything (its process is gone), or null when it may still
 * be held. Only a lock taken on this host can be judged.
 */
export function staleReason(owner: LockOwner): string | null {
  if (owner.host !== hostname()) return null;
  const currentBoot = bootId();
  if (owner.bootId !== null && currentBoot !== null && owner.bootId !== currentBoot) return 'the machine has rebooted since it was taken';
  // A zombie has exited; only its parent has not collected its exit status yet.
  if (!processRuns(owner.pid) || procStatFields(owner.pid)?.[0] === 'Z') return `its owner, pid ${owner.pid}, no longer runs`;
  const startTime = processStartTime(owner.pid);
  if (owner.startTime !== null && startTime !== null && startTime !== owner.startTime) {
    return `pid ${owner.pid} now belongs to a process started later (start time ${startTime}, the owner's ${owner.startTime})`;
  }
  return null;
}

function describeOwner(owner: LockOwner): string {
  return `pid ${owner.pid} on host ${owner.host}${owner.jobId === null ? '' : `, job ${owner.jobId}`}, since ${owner.since}`;
}

/** Locks held by this process, by lock path (a second Trainer in the same process must not share a directory either). */
const heldByThisProcess = new Map<string, string>();
let exitHookInstalled = false;

function releaseAllOnExit(): void {
  for (const [path, token] of heldByThisProcess) removeIfOwned(path, token);
  heldByThisProcess.clear();
}

function removeIfOwned(path: string, token: string): void {
  const owner = parseOwner(readOptional(path) ?? '');
  if (owner !== null && owner.token === token) rmSync(path, { force: true });
}

/** Creates `path` holding `text` only if it does not exist yet, atomically (false when it exists). */
function createExclusive(path: string, text: string): boolean {
  const staging = `${path}.${process.pid}.${randomUUID().slice(0, 8)}`;
  writeFileSync(staging, text);
  try {
    linkSync(staging, path);
    return true;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV') throw error;
  } finally {
    rmSync(staging, { force: true });
  }
  // File systems without hard links: O_EXCL create (the content follows the create).
  let fd: number;
  try {
    fd = openSync(path, 'wx');
  } catch (error) {
    if ((error as { code?: string }).code === 'EEXIST') return false;
    throw error;
  }
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
  return true;
}

/** A lock this process holds on a directory; release() is idempotent. */
export class DirectoryLock {
  private released = false;
  constructor(
    readonly directory: string,
    readonly lockPath: string,
    readonly owner: LockOwner,
  ) {}

  release(): void {
    if (this.released) return;
    this.released = true;
    heldByThisProcess.delete(this.lockPath);
    removeIfOwned(this.lockPath, this.owner.token);
  }
}

const MAX_ATTEMPTS = 5;
/** A takeover guard older than this is itself left over from a crash. */
const TAKEOVER_GUARD_MAX_AGE_MS = 60_000;

/** Removes the stale lock whose content is `staleText`, unless another process changed or removed it first. */
function removeStaleLock(lockPath: string, staleText: string): void {
  const guard = `${lockPath}.takeover`;
  if (!createExclusive(guard, String(process.pid))) {
    let ageMs = 0;
    try {
      ageMs = Date.now() - statSync(guard).mtimeMs;
    } catch {
      return;
    }
    if (ageMs > TAKEOVER_GUARD_MAX_AGE_MS) rmSync(guard, { force: true });
    return;
  }
  try {
    if (readOptional(lockPath) === staleText) unlinkSync(lockPath);
  } finally {
    rmSync(guard, { force: true });
  }
}

/**
 * Takes `.plsc-lock` in `directory` (which must exist) for this process. `role` names the setting in
 * errors (checkpointDir, modelSaveDir). Throws DirectoryLockedError naming the owner when another live
 * job holds it, or one on another host (with how to break that lock by hand).
 */
export function acquireDirectoryLock(directory: string, role: string): DirectoryLock {
  const absolute = resolve(directory);
  const lockPath = join(absolute, LOCK_FILE_NAME);
  if (heldByThisProcess.has(lockPath)) {
    const owner = parseOwner(readOptional(lockPath) ?? '') ?? thisProcess();
    throw new DirectoryLockedError(lockPath, owner, `${role} ${absolute} is already in use by another trainer in this process (pid ${process.pid}); dispose it first`);
  }
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const me = thisProcess();
    if (createExclusive(lockPath, `${JSON.stringify(me, null, 2)}\n`)) {
      heldByThisProcess.set(lockPath, me.token);
      if (!exitHookInstalled) {
        process.on('exit', releaseAllOnExit);
        exitHookInstalled = true;
      }
      return new DirectoryLock(absolute, lockPath, me);
    }
    const text = readOptional(lockPath);
    if (text === null) continue;
    const owner = parseOwner(text);
    if (owner === null) {
      // A lock file is written whole before it appears; an unreadable one was damaged by hand or by a crash of the disk.
      throw new Error(`${role} ${absolute}: the lock file ${lockPath} is unreadable; if no job uses this directory, remove it and start again`);
    }
    const stale = owner.pid === process.pid && owner.host === me.host && owner.startTime === me.startTime ? 'it was left by this process' : (earlierRoundOfThisJob(owner, me) ?? staleReason(owner));
    if (stale !== null) {
      console.warn(`plsc: taking over the lock of ${role} ${absolute} from ${describeOwner(owner)}: ${stale}`);
      removeStaleLock(lockPath, text);
      continue;
    }
    if (owner.host !== me.host) {
      throw new DirectoryLockedError(
        lockPath,
        owner,
        `${role} ${absolute} is locked by ${describeOwner(owner)}. That is another host, so plsc cannot tell whether the job still runs: ` +
          `if it is gone, remove ${lockPath} and start again; otherwise give this job another ${role}`,
      );
    }
    throw new DirectoryLockedError(
      lockPath,
      owner,
      `${role} ${absolute} is in use by another job: ${describeOwner(owner)}. Two jobs writing one directory overwrite each other's checkpoints and metrics: ` +
        `wait for it to finish, stop it (kill ${owner.pid}), or give this job another ${role}`,
    );
  }
  throw new Error(`${role} ${absolute}: could not take the lock ${lockPath} (other jobs kept taking it over); start again`);
}
