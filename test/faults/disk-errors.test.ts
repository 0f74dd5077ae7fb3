// Disk errors, injected (so they are tested wherever mounting a small or read-only file system is not
// possible; disk-mount.test.ts does the real thing): each names its path, a full disk during a save the
// bytes needed vs free, and a failed save leaves the previous checkpoint whole.
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import fs, { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { Trainer, DiskError, describeDiskError, checkWritableDirectory, listCheckpoints, verifyCheckpointStep } from '../../src/index.js';
import { scratch, tinyConfig, trainTiny } from './fixtures/tiny-run.js';

function fsError(code: string, syscall: string): NodeJS.ErrnoException {
  // As libuv reports them: no path for write(2) on a file descriptor.
  return Object.assign(new Error(`${code}: injected, ${syscall}`), { code, syscall, errno: -1 });
}

/** Replaces fs[name] (and the named ESM export the library imported) while `body` runs. */
async function injecting<T>(name: 'writeSync' | 'writeFileSync' | 'mkdirSync' | 'accessSync', replacement: (...args: never[]) => unknown, body: () => Promise<T> | T): Promise<T> {
  const mocked = mock.method(fs, name, replacement as never);
  syncBuiltinESMExports();
  try {
    return await body();
  } finally {
    mocked.mock.restore();
    syncBuiltinESMExports();
  }
}

test('describeDiskError names the path, the reason and, for a full disk, the bytes needed vs free', () => {
  const dir = scratch();
  const full = describeDiskError(fsError('ENOSPC', 'write'), join(dir, 'ck', 'backbone.safetensors'), 'write checkpoint file', 3 * 1024 * 1024);
  assert.ok(full instanceof DiskError);
  assert.equal(full.code, 'ENOSPC');
  assert.match(full.message, new RegExp(`^cannot write checkpoint file ${dir}/ck/backbone\\.safetensors: no space left on device \\(ENOSPC\\): needs 3\\.0 MiB, [\\d.]+ [KMGT]?i?B free on its file system$`));
  assert.match(describeDiskError(fsError('EROFS', 'open'), '/data/out', 'write to').message, /^cannot write to \/data\/out: the file system is read-only \(EROFS\)$/);
  assert.match(describeDiskError(fsError('EACCES', 'open'), '/data/out', 'write to').message, /permission denied \(EACCES\)/);
  const other = new Error('not a disk problem');
  assert.equal(describeDiskError(other, '/x', 'write'), other);
  rmSync(dir, { recursive: true, force: true });
});

test('a full disk during a save: the error names the file and bytes needed vs free; the previous checkpoint stays whole and resumable', async () => {
  const dir = scratch();
  const config = tinyConfig(dir, { trainSteps: 2, checkpointPeriod: 1, maxLastCheckpointNum: 1 });
  await trainTiny(config);
  const trainer = await Trainer.create({ ...config, resume: 'latest', trainSteps: 3 });
  trainer.step = 3;
  await injecting('writeSync', () => {
    throw fsError('ENOSPC', 'write');
  }, () => {
    assert.throws(
      () => trainer.saveCheckpoint(0),
      (error: Error) =>
        error instanceof DiskError &&
        /^cannot write checkpoint file .*checkpoints\/\.tmp-step-00000003\/(fc-rank-0-of-1|backbone)\.safetensors: no space left on device \(ENOSPC\): needs [\d.]+ KiB, [\d.]+ [KMGT]i?B free/.test(error.message),
    );
  });
  trainer.dispose();
  assert.deepEqual(listCheckpoints(config.checkpointDir).map((c) => c.step), [2]);
  assert.equal(verifyCheckpointStep(listCheckpoints(config.checkpointDir)[0]?.path as string).ok, true);
  const resumed = await Trainer.create({ ...config, resume: 'latest', trainSteps: 3 });
  assert.equal(resumed.step, 2);
  resumed.dispose();
  rmSync(dir, { recursive: true, force: true });
});

test('output directories are checked before training: a file in the way, no permission, a read-only parent (not ENOENT)', async () => {
  const dir = scratch();
  const config = tinyConfig(dir);
  writeFileSync(join(dir, 'output'), 'a file where modelSaveDir should be');
  await assert.rejects(Trainer.create(config), new RegExp(`modelSaveDir ${dir}/output is a file, not a directory`));
  assert.deepEqual(listCheckpoints(config.checkpointDir), []);
  rmSync(join(dir, 'output'));

  await injecting('writeFileSync', (path: unknown, ...rest: unknown[]) => {
    if (String(path).includes('.plsc-write-test')) throw fsError('EACCES', 'open');
    return (fs.writeFileSync as unknown as { mock: { original: (...a: unknown[]) => unknown } }).mock.original(path, ...rest);
  }, async () => {
    await assert.rejects(Trainer.create(config), new RegExp(`checkpointDir ${dir}/checkpoints is not writable: cannot write to ${dir}/checkpoints: permission denied \\(EACCES\\)`));
  });

  mkdirSync(join(dir, 'readonly'));
  await injecting('mkdirSync', () => {
    throw fsError('ENOENT', 'mkdir');
  }, () =>
    injecting('accessSync', () => {
      throw fsError('EROFS', 'access');
    }, () => {
      assert.throws(
        () => checkWritableDirectory(join(dir, 'readonly', 'a', 'b'), 'checkpointDir'),
        new RegExp(`^DiskError: checkpointDir ${dir}/readonly/a/b cannot be created: cannot write to ${dir}/readonly: the file system is read-only \\(EROFS\\)$`),
      );
    }),
  );
  rmSync(dir, { recursive: true, force: true });
});
