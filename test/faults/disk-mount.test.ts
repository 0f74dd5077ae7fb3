// Real full and read-only disks: a 2 MiB tmpfs, remounted read-only or filled up. Skipped, saying
// why, where mounting is not permitted (disk-errors.test.ts covers the same paths with injected errors).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, statSync, truncateSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Trainer, DiskError, listCheckpoints, verifyCheckpointStep } from '../../src/index.js';
import { scratch, tinyConfig, trainTiny } from './fixtures/tiny-run.js';

function run(command: string, ...args: string[]): string | null {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  return result.status === 0 ? null : `${command} ${args.join(' ')}: ${(result.stderr || result.error?.message || `exit ${result.status}`).trim()}`;
}

/** Mounts a 2 MiB tmpfs at `dir`; returns why not when mounting is not permitted. */
function mountSmallTmpfs(dir: string): string | null {
  mkdirSync(dir, { recursive: true });
  return run('mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir);
}

/** Fills the file system of `dir` until a write fails, then frees `leaveBytes`. */
function fillUp(dir: string, leaveBytes: number): void {
  const filler = join(dir, 'filler');
  const fd = openSync(filler, 'w');
  const chunk = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (error) {
    if ((error as { code?: string }).code !== 'ENOSPC') throw error;
  } finally {
    closeSync(fd);
  }
  truncateSync(filler, Math.max(0, statSync(filler).size - leaveBytes));
}

test('a read-only checkpointDir or modelSaveDir is refused before training, as read-only (EROFS), not as ENOENT', async (t) => {
  const dir = scratch();
  const mount = join(dir, 'mnt');
  const refused = mountSmallTmpfs(mount);
  if (refused !== null) {
    t.skip(`mounting a tmpfs is not permitted here (${refused}); the injected-error tests cover this path`);
    rmSync(dir, { recursive: true, force: true });
    return;
  }
  try {
    mkdirSync(join(mount, 'existing'));
    const remount = run('mount', '-o', 'remount,ro', mount);
    assert.equal(remount, null, remount ?? '');
    const missing = tinyConfig(dir, { checkpointDir: join(mount, 'run', 'checkpoints') });
    await assert.rejects(Trainer.create(missing), (error: Error) => {
      assert.match(error.message, new RegExp(`^checkpointDir ${mount}/run/checkpoints cannot be created: cannot write to ${mount}: the file system is read-only \\(EROFS\\)$`));
      assert.doesNotMatch(error.message, /ENOENT/);
      return true;
    });
    const existing = tinyConfig(dir, { modelSaveDir: join(mount, 'existing') });
    await assert.rejects(Trainer.create(existing), new RegExp(`modelSaveDir ${mount}/existing is not writable: cannot write to ${mount}/existing: the file system is read-only \\(EROFS\\)`));
    assert.deepEqual(listCheckpoints(existing.checkpointDir), [], 'nothing was trained or written');
  } finally {
    run('umount', mount);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a full disk: the save names its file and bytes needed vs free, the previous checkpoint survives, metrics name their file', async (t) => {
  const dir = scratch();
  const mount = join(dir, 'mnt');
  const refused = mountSmallTmpfs(mount);
  if (refused !== null) {
    t.skip(`mounting a tmpfs is not permitted here (${refused}); the injected-error tests cover this path`);
    rmSync(dir, { recursive: true, force: true });
    return;
  }
  try {
    const config = tinyConfig(dir, { checkpointDir: join(mount, 'checkpoints'), trainSteps: 2, checkpointPeriod: 1, maxLastCheckpointNum: 1 });
    await trainTiny(config);
    // Room for the start-up write check (one page) but not for a checkpoint (tens of KiB).
    fillUp(mount, 8192);
    const trainer = await Trainer.create({ ...config, resume: 'latest', trainSteps: 3 });
    await assert.rejects(trainer.train({ quiet: true }), (error: Error) => {
      assert.ok(error instanceof DiskError, String(error));
      assert.match(error.message, new RegExp(`^cannot write checkpoint file ${mount}/checkpoints/\\.tmp-step-00000003/\\S+\\.safetensors: no space left on device \\(ENOSPC\\): needs [\\d.]+ KiB, [\\d.]+ (B|KiB) free on its file system$`));
      return true;
    });
    trainer.dispose();
    const kept = listCheckpoints(config.checkpointDir);
    assert.deepEqual(kept.map((c) => c.step), [2]);
    assert.equal(verifyCheckpointStep((kept[0] as { path: string }).path).ok, true, 'the previous checkpoint is whole');

    // metrics.jsonl on the full disk: its append names the file.
    fillUp(mount, 4096);
    const second = await Trainer.create({ ...config, modelSaveDir: join(mount, 'checkpoints'), resume: 'latest', trainSteps: 3 });
    fillUp(mount, 0);
    await assert.rejects(second.train({ quiet: true }), new RegExp(`cannot append to ${mount}/checkpoints/metrics\\.jsonl: no space left on device \\(ENOSPC\\)`));
    second.dispose();
  } finally {
    run('umount', mount);
    rmSync(dir, { recursive: true, force: true });
  }
});
