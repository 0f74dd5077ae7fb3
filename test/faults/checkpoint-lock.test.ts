// One job per checkpoint directory: a second job is refused naming the owner, a stale lock (owner
// gone, pid reused, machine rebooted) is taken over, another host's lock is never broken.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import {
  Trainer,
  listCheckpoints,
  acquireDirectoryLock,
  processStartTime,
  staleReason,
  trainInLocalWorkers,
  LOCK_FILE_NAME,
  type LockOwner,
} from '../../src/index.js';
import { capturingWarnings, plscBin, scratch, tinyBackbone, tinyConfig, trainTiny } from './fixtures/tiny-run.js';

function bootId(): string | null {
  return existsSync('/proc/sys/kernel/random/boot_id') ? readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() : null;
}

function ownerOf(pid: number, overrides: Partial<LockOwner> = {}): LockOwner {
  return { host: hostname(), pid, startTime: processStartTime(pid), bootId: bootId(), jobId: 'job-42', since: '2026-01-01T00:00:00.000Z', token: 'test-token', ...overrides };
}

function writeLock(dir: string, owner: LockOwner): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, LOCK_FILE_NAME);
  writeFileSync(path, JSON.stringify(owner));
  return path;
}

function idleProcess(): ChildProcess {
  return spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

test('a job restarted with resume=latest while another holds the directory is refused, naming the owner; once that owner is gone its lock is taken over', async () => {
  const dir = scratch();
  const config = tinyConfig(dir, { trainSteps: 2, checkpointPeriod: 1 });
  await trainTiny(config);
  const lockPath = join(config.checkpointDir, LOCK_FILE_NAME);
  assert.equal(existsSync(lockPath), false, 'a finished run releases its lock');
  const before = listCheckpoints(config.checkpointDir).map((c) => c.step);

  const other = idleProcess();
  try {
    const owner = ownerOf(other.pid as number);
    writeLock(config.checkpointDir, owner);
    await assert.rejects(
      Trainer.create({ ...config, resume: 'latest', trainSteps: 4 }),
      new RegExp(`checkpointDir .*checkpoints is in use by another job: pid ${other.pid} on host ${hostname()}, job job-42, since 2026-01-01T00:00:00.000Z\\..*kill ${other.pid}`),
    );
    assert.deepEqual(listCheckpoints(config.checkpointDir).map((c) => c.step), before, 'nothing was written');
    assert.equal(JSON.parse(readFileSync(lockPath, 'utf8')).pid, other.pid, 'the live owner keeps its lock');
  } finally {
    await stop(other);
  }
  const { result: trainer, warnings } = await capturingWarnings(() => Trainer.create({ ...config, resume: 'latest', trainSteps: 4 }));
  assert.match(warnings, new RegExp(`taking over the lock of checkpointDir .* from pid ${other.pid} .*: its owner, pid ${other.pid}, no longer runs`));
  assert.equal(JSON.parse(readFileSync(lockPath, 'utf8')).pid, process.pid);
  assert.equal(trainer.step, 2);
  await trainer.train({ quiet: true });
  assert.equal(existsSync(lockPath), false);
  trainer.dispose();
  rmSync(dir, { recursive: true, force: true });
});

test('a lock whose pid now belongs to a later process, that predates a reboot or whose owner is a zombie is stale; one from another host is never broken', async () => {
  const dir = scratch();
  const other = idleProcess();
  try {
    const pid = other.pid as number;
    assert.equal(staleReason(ownerOf(pid)), null, 'a live owner');
    assert.match(staleReason(ownerOf(pid, { startTime: '1' })) ?? '', new RegExp(`pid ${pid} now belongs to a process started later`));
    if (bootId() !== null) assert.equal(staleReason(ownerOf(pid, { bootId: 'another-boot' })), 'the machine has rebooted since it was taken');

    // A zombie (exited, its parent never collected it) holds no lock either.
    const parent = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const zombie = Number(await new Promise<string>((resolve) => parent.stdout?.once('data', (chunk: Buffer) => resolve(chunk.toString()))));
      for (let waited = 0; !readFileSync(`/proc/${zombie}/stat`, 'utf8').includes(') Z '); waited += 50) {
        assert.ok(waited < 10_000, 'the child exits');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal(staleReason(ownerOf(zombie)), `its owner, pid ${zombie}, no longer runs`);
    } finally {
      await stop(parent);
    }

    writeLock(dir, ownerOf(pid, { startTime: '1' }));
    const { result: lock } = await capturingWarnings(() => acquireDirectoryLock(dir, 'checkpointDir'));
    assert.equal(lock.owner.pid, process.pid);
    lock.release();
    assert.equal(existsSync(join(dir, LOCK_FILE_NAME)), false);

    const lockPath = writeLock(dir, ownerOf(pid, { host: 'node-7.cluster.example' }));
    assert.throws(
      () => acquireDirectoryLock(dir, 'checkpointDir'),
      new RegExp(`locked by pid ${pid} on host node-7\\.cluster\\.example, job job-42.*another host, so plsc cannot tell whether the job still runs: if it is gone, remove ${lockPath.replace(/[.]/g, '\\.')} and start again`),
    );
    assert.equal(JSON.parse(readFileSync(lockPath, 'utf8')).host, 'node-7.cluster.example');
  } finally {
    await stop(other);
  }
  rmSync(dir, { recursive: true, force: true });
});

test('two trainers in one process cannot share a directory; dispose() releases it', async () => {
  const dir = scratch();
  const config = tinyConfig(dir);
  const first = await Trainer.create(config);
  await assert.rejects(Trainer.create(config), /checkpointDir .* is already in use by another trainer in this process/);
  first.dispose();
  const second = await Trainer.create(config);
  second.dispose();
  assert.equal(existsSync(join(config.checkpointDir, LOCK_FILE_NAME)), false);
  rmSync(dir, { recursive: true, force: true });
});

test('plsc train: a second job on a running job\'s checkpointDir exits 1 naming it; after kill -9 of the first, the next job takes over', async () => {
  const dir = scratch();
  const configPath = join(dir, 'train.yaml');
  const base = {
    dataset: { type: 'synthetic', numClasses: 12, imagesPerClass: 4, seed: 1 },
    model: tinyBackbone,
    imageSize: 16,
    embSize: 8,
    trainBatchSize: 8,
    lr: 0.1,
    scale: 16,
    withTest: false,
    logPeriod: 1000,
    checkpointPeriod: 50,
    checkpointDir: join(dir, 'checkpoints'),
    modelSaveDir: join(dir, 'output'),
  };
  writeFileSync(configPath, JSON.stringify({ ...base, trainSteps: 1_000_000 }));
  const first = spawn(process.execPath, [plscBin, 'train', '--config', configPath], { stdio: 'ignore' });
  try {
    const lockPath = join(base.checkpointDir, LOCK_FILE_NAME);
    for (let waited = 0; !existsSync(lockPath); waited += 100) {
      assert.ok(waited < 60_000 && first.exitCode === null, 'the first job takes the lock');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const second = spawnSync(process.execPath, [plscBin, 'train', '--config', configPath, '--set', 'resume=latest', '--set', 'trainSteps=4'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(second.status, 1, second.stderr);
    assert.match(second.stderr, new RegExp(`plsc train: checkpointDir .* is in use by another job: pid ${first.pid} on host`));
  } finally {
    await stop(first);
  }
  const third = spawnSync(process.execPath, [plscBin, 'train', '--config', configPath, '--set', 'trainSteps=2'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(third.status, 0, third.stderr);
  assert.match(third.stderr, new RegExp(`taking over the lock of checkpointDir .*: its owner, pid ${first.pid}, no longer runs`));
  rmSync(dir, { recursive: true, force: true });
});

test('a two-worker job on a locked directory fails on every rank without hanging; nothing is written', async () => {
  const dir = scratch();
  const config = tinyConfig(dir, { lossType: 'dist_arcface', workers: 2 });
  const other = idleProcess();
  const lines: string[] = [];
  try {
    writeLock(config.checkpointDir, ownerOf(other.pid as number));
    await assert.rejects(trainInLocalWorkers(config, { onOutput: (line) => void lines.push(`[rank ${line.rank}] ${line.text}`) }), /training failed on rank/);
  } finally {
    await stop(other);
  }
  const output = lines.join('\n');
  assert.match(output, new RegExp(`in use by another job: pid ${other.pid}`));
  assert.deepEqual(listCheckpoints(config.checkpointDir), []);
  assert.equal(existsSync(join(config.modelSaveDir, 'metrics.jsonl')), false);
  rmSync(dir, { recursive: true, force: true });
});
