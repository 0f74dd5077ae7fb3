// Before a training job writes anything: its output directories must be writable, and rank 0 locks
// them for the job (the other ranks trust rank 0). Every rank learns whether every rank succeeded,
// so a refusal on one rank never leaves the others waiting in a collective.
import { resolve } from 'node:path';
import * as F from '../torch/ops.js';
import { tidy } from '../torch/scope.js';
import type { ProcessGroup } from '../distributed/process-group.js';
import { checkWritableDirectory } from './disk.js';
import { acquireDirectoryLock, type DirectoryLock } from './checkpoint-lock.js';

export interface OutputDirectories {
  checkpointDir: string;
  modelSaveDir: string;
}

function claimOnThisRank(dirs: OutputDirectories, rank: number): DirectoryLock[] {
  // Every rank writes its FC shard into checkpointDir; only rank 0 writes modelSaveDir.
  checkWritableDirectory(dirs.checkpointDir, 'checkpointDir');
  if (rank !== 0) return [];
  checkWritableDirectory(dirs.modelSaveDir, 'modelSaveDir');
  const locks = [acquireDirectoryLock(dirs.checkpointDir, 'checkpointDir')];
  try {
    if (resolve(dirs.modelSaveDir) !== resolve(dirs.checkpointDir)) locks.push(acquireDirectoryLock(dirs.modelSaveDir, 'modelSaveDir'));
  } catch (error) {
    for (const lock of locks) lock.release();
    throw error;
  }
  return locks;
}

/**
 * Checks the output directories writable (creating them) and takes their locks on rank 0. Every rank
 * of `group` must call it; all of them throw if any rank failed (that rank with its own reason).
 */
export function claimOutputDirectories(dirs: OutputDirectories, group: ProcessGroup): DirectoryLock[] {
  let locks: DirectoryLock[] = [];
  let failure: unknown = null;
  try {
    locks = claimOnThisRank(dirs, group.rank);
  } catch (error) {
    failure = error;
  }
  if (group.worldSize > 1) {
    const succeeded = tidy(() => {
      const flag = F.tensor([failure === null ? 1 : 0]);
      return Array.from(group.allGather(flag).wait().dataSync() as Float32Array);
    });
    const failedRanks = succeeded.flatMap((ok, rank) => (ok === 1 ? [] : [rank]));
    if (failure === null && failedRanks.length > 0) {
      for (const lock of locks) lock.release();
      throw new Error(`output directories: rank${failedRanks.length === 1 ? '' : 's'} ${failedRanks.join(', ')} could not claim them (see ${failedRanks.length === 1 ? 'its' : 'their'} error); nothing was written`);
    }
  }
  if (failure !== null) throw failure;
  return locks;
}
