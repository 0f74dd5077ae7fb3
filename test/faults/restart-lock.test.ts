// After an elastic job lost the host of its rank 0, the new rank 0 (on another host) takes over the
// output directory lock of the earlier round of the same job; another job's lock, or one of the same
// round, is still refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirectoryLockedError, LOCK_FILE_NAME, acquireDirectoryLock } from '../../src/train/checkpoint-lock.js';

function lockFrom(dir: string, jobId: string, restart: number): void {
  const owner = { host: 'lost-host.example', pid: 4242, startTime: '1', bootId: null, jobId, restart, since: '2026-01-01T00:00:00.000Z', token: 'old' };
  writeFileSync(join(dir, LOCK_FILE_NAME), `${JSON.stringify(owner)}\n`);
}

function withEnv<T>(env: Record<string, string>, run: () => T): T {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    return run();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

test("a later round of the same elastic job takes over the lock another host's earlier round left; other jobs and the same round are refused", () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-restart-lock-'));
  // The job id comes from PLSC_JOB_ID or SLURM_JOB_ID before TORCHELASTIC_RUN_ID: none of theirs here.
  const saved = { PLSC_JOB_ID: process.env.PLSC_JOB_ID, SLURM_JOB_ID: process.env.SLURM_JOB_ID };
  try {
    delete process.env.PLSC_JOB_ID;
    delete process.env.SLURM_JOB_ID;
    lockFrom(dir, 'faces-01', 0);
    assert.throws(
      () => withEnv({ TORCHELASTIC_RUN_ID: 'faces-01', TORCHELASTIC_RESTART_COUNT: '0' }, () => acquireDirectoryLock(dir, 'checkpointDir')),
      (error: Error) => error instanceof DirectoryLockedError && /another host/.test(error.message),
    );
    assert.throws(
      () => withEnv({ TORCHELASTIC_RUN_ID: 'other-job', TORCHELASTIC_RESTART_COUNT: '3' }, () => acquireDirectoryLock(dir, 'checkpointDir')),
      (error: Error) => error instanceof DirectoryLockedError,
    );
    const warnings: string[] = [];
    const warn = console.warn;
    console.warn = (line: string) => warnings.push(line);
    try {
      const lock = withEnv({ TORCHELASTIC_RUN_ID: 'faces-01', TORCHELASTIC_RESTART_COUNT: '1' }, () => acquireDirectoryLock(dir, 'checkpointDir'));
      const owner = JSON.parse(readFileSync(join(dir, LOCK_FILE_NAME), 'utf8')) as { jobId: string; restart: number };
      assert.deepEqual([owner.jobId, owner.restart], ['faces-01', 1]);
      lock.release();
    } finally {
      console.warn = warn;
    }
    assert.match(warnings.join('\n'), /taking over the lock of checkpointDir \S+ from pid 4242 on host lost-host\.example, job faces-01, .*: it was taken in round 0 of this job \(faces-01\), which has been restarted \(now round 1\)/);
  } finally {
    for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
    rmSync(dir, { recursive: true, force: true });
  }
});
