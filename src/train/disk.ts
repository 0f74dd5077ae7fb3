// Disk errors that say where and why: output directories are checked writable before training,
// and a failed write (full disk, read-only file system, no permission) names the path and, for
// saves, how many bytes it needed against how many were free.
import { accessSync, constants, existsSync, mkdirSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** A file-system error restated with the path it concerns (`code` is the errno name, e.g. ENOSPC). */
export class DiskError extends Error {
  constructor(
    readonly path: string,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'DiskError';
  }
}

const REASONS: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'the file system is read-only',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a path component is a file, not a directory',
  EISDIR: 'is a directory',
};

function errnoCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Bytes as B / KiB / MiB / GiB with one decimal. */
export function formatByteCount(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function nearestExisting(path: string): string {
  let current = resolve(path);
  while (!existsSync(current) && dirname(current) !== current) current = dirname(current);
  return current;
}

/** Bytes available to this user on the file system holding `path` (or its nearest existing ancestor); null when statfs fails. */
export function freeBytes(path: string): number | null {
  try {
    const stats = statfsSync(nearestExisting(path));
    return Number(stats.bavail) * Number(stats.bsize);
  } catch {
    return null;
  }
}

/**
 * `error` restated as a DiskError naming `path` (and, for ENOSPC/EDQUOT with `bytesNeeded`, the bytes
 * needed vs free); errors that are not file-system errors are returned unchanged.
 */
export function describeDiskError(error: unknown, path: string, action: string, bytesNeeded?: number): Error {
  if (error instanceof DiskError) return error;
  const code = errnoCode(error);
  const reason = code === undefined ? undefined : REASONS[code];
  if (code === undefined || reason === undefined) return error instanceof Error ? error : new Error(String(error));
  let message = `cannot ${action} ${resolve(path)}: ${reason} (${code})`;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    const free = freeBytes(path);
    const needed = bytesNeeded === undefined ? '' : `needs ${formatByteCount(bytesNeeded)}`;
    const available = free === null ? '' : `${formatByteCount(free)} free on its file system`;
    if (needed !== '' || available !== '') message += `: ${[needed, available].filter((s) => s !== '').join(', ')}`;
  }
  return new DiskError(resolve(path), code, message);
}

/** Runs `write`, restating a file-system error as a DiskError about `path`. */
export function withDiskErrors<T>(path: string, action: string, write: () => T, bytesNeeded?: number): T {
  try {
    return write();
  } catch (error) {
    throw describeDiskError(error, path, action, bytesNeeded);
  }
}

/**
 * Makes sure `dir` exists and a file can be written in it, before any training: `role` names the
 * setting (checkpointDir, modelSaveDir) in the error. A directory that cannot be created is blamed
 * on its nearest existing ancestor (a read-only mount is reported as EROFS, not as ENOENT).
 */
export function checkWritableDirectory(dir: string, role: string): void {
  const absolute = resolve(dir);
  if (existsSync(absolute) && !statSync(absolute).isDirectory()) {
    throw new DiskError(absolute, 'ENOTDIR', `${role} ${absolute} is a file, not a directory`);
  }
  try {
    mkdirSync(absolute, { recursive: true });
  } catch (error) {
    const ancestor = nearestExisting(absolute);
    let cause = describeDiskError(error, absolute, 'create');
    if (!statSync(ancestor).isDirectory()) {
      cause = new DiskError(ancestor, 'ENOTDIR', `${ancestor} is a file, not a directory`);
    } else {
      try {
        accessSync(ancestor, constants.W_OK);
      } catch (accessError) {
        cause = describeDiskError(accessError, ancestor, 'write to');
      }
    }
    throw new DiskError(absolute, errnoCode(cause) ?? 'EIO', `${role} ${absolute} cannot be created: ${cause.message}`);
  }
  const probe = join(absolute, `.plsc-write-test-${process.pid}`);
  try {
    writeFileSync(probe, 'plsc\n');
  } catch (error) {
    const cause = describeDiskError(error, absolute, 'write to');
    throw new DiskError(absolute, errnoCode(cause) ?? 'EIO', `${role} ${absolute} is not writable: ${cause.message}`);
  } finally {
    rmSync(probe, { force: true });
  }
}
