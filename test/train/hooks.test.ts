// Training hooks: a hook of the library user sees every step (loss, lr), every finished epoch and the
// end, after the built-in hooks; it can stop the run (on any worker) and an error in it fails the run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Trainer, readMeta, type TrainConfig, type TrainEndState, type TrainEpochEndState, type TrainHook, type TrainStepState } from '../../src/index.js';
import { linesOf, runPlsc } from '../distributed/helpers.js';
import { tinyConfig } from '../faults/fixtures/tiny-run.js';

/** 48 images in batches of 8: 6 steps per epoch; 8 steps with a one-epoch warm-up. */
function config(dir: string, overrides: Partial<TrainConfig> = {}): TrainConfig {
  return tinyConfig(dir, { trainSteps: 8, warmupEpochs: 1, ...overrides });
}

/** Records every call, and what the built-in hooks had written when it was called. */
class Recorder implements TrainHook {
  readonly steps: Array<Omit<TrainStepState, 'requestStop'> & { checkpointWritten: boolean }> = [];
  readonly epochs: TrainEpochEndState[] = [];
  readonly ends: Array<TrainEndState & { modelWritten: boolean }> = [];

  constructor(private readonly dir: string) {}

  onStepEnd(state: TrainStepState): void {
    const { requestStop: _, ...seen } = state;
    const checkpointWritten = existsSync(join(this.dir, 'checkpoints', `step-${String(state.step).padStart(8, '0')}`));
    this.steps.push({ ...seen, checkpointWritten });
  }

  onEpochEnd(state: TrainEpochEndState): void {
    this.epochs.push({ ...state });
  }

  onTrainEnd(state: TrainEndState): void {
    this.ends.push({ ...state, modelWritten: existsSync(join(this.dir, 'output', 'backbone.safetensors')) });
  }
}

test('a custom hook sees every step with its loss and lr, each finished epoch and the end, after the built-in hooks', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-hooks-'));
  try {
    const recorder = new Recorder(dir);
    const trainer = await Trainer.create(config(dir, { checkpointPeriod: 4 }));
    let result;
    try {
      result = await trainer.train({ quiet: true, hooks: [recorder] });
      assert.deepEqual(
        recorder.steps.map((s) => s.lr),
        recorder.steps.map((s) => trainer.lrAt(s.step - 1)),
      );
    } finally {
      trainer.dispose();
    }
    assert.deepEqual(recorder.steps.map((s) => s.step), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(recorder.steps.map((s) => s.loss), result.losses);
    // Warm-up over the first epoch (6 steps): the lr climbs.
    assert.ok(recorder.steps[0]!.lr < recorder.steps[5]!.lr, `lr ${recorder.steps[0]!.lr} -> ${recorder.steps[5]!.lr}`);
    assert.deepEqual(recorder.steps.map((s) => s.epoch), [0, 0, 0, 0, 0, 0, 1, 1]);
    for (const s of recorder.steps) {
      assert.equal(s.rank, 0);
      assert.equal(s.worldSize, 1);
      assert.equal(s.totalSteps, 8);
      assert.equal(s.accuracy, null);
      assert.ok(s.imagesPerSecond > 0);
      // The checkpoint saver ran before this hook at its period.
      assert.equal(s.checkpointWritten, s.step % 4 === 0, `step ${s.step}`);
    }
    // Epoch 1 ends early at the planned steps: the run's last, whose checkpoint and validation are onTrainEnd's.
    assert.deepEqual(recorder.epochs, [
      { epoch: 0, step: 6, last: false },
      { epoch: 1, step: 8, last: true },
    ]);
    assert.equal(recorder.ends.length, 1);
    assert.deepEqual(recorder.ends[0], { step: 8, epoch: 1, interrupted: false, finished: true, stoppedBy: null, modelWritten: true });
    assert.equal(result.stoppedBy, null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a hook that requests a stop ends the run after that step with the final checkpoint, model and report', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-hooks-'));
  try {
    const recorder = new Recorder(dir);
    const stopper: TrainHook = {
      onStepEnd(state) {
        if (state.step === 3) state.requestStop('loss is low enough');
      },
    };
    let log = '';
    const trainer = await Trainer.create(config(dir, { logPeriod: 1 }));
    let result;
    try {
      result = await trainer.train({ hooks: [stopper, recorder], logStream: { write: (chunk: string) => (log += chunk) } });
    } finally {
      trainer.dispose();
    }
    assert.equal(result.finalStep, 3);
    assert.equal(result.losses.length, 3);
    assert.equal(result.stoppedBy, 'loss is low enough');
    assert.equal(result.interrupted, false);
    assert.deepEqual(recorder.steps.map((s) => s.step), [1, 2, 3]);
    assert.deepEqual(recorder.epochs, []);
    assert.deepEqual(recorder.ends, [{ step: 3, epoch: 0, interrupted: false, finished: true, stoppedBy: 'loss is low enough', modelWritten: true }]);
    assert.equal(readMeta(result.lastCheckpoint as string).step, 3);
    assert.ok(result.modelPath !== null && existsSync(result.modelPath));
    assert.ok(result.reportPath !== null && existsSync(result.reportPath));
    assert.match(log, /stopping after step 3: loss is low enough/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a stop at the last step of an epoch: the epoch end says last, and the final checkpoint is the only one of that step', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-hooks-'));
  try {
    const recorder = new Recorder(dir);
    const trainer = await Trainer.create(config(dir, { checkpointPeriod: 0 }));
    let result;
    try {
      result = await trainer.train({ quiet: true, hooks: [recorder, { onStepEnd: (state) => void (state.step === 6 && state.requestStop('one epoch is enough')) }] });
    } finally {
      trainer.dispose();
    }
    assert.equal(result.finalStep, 6);
    assert.equal(result.stoppedBy, 'one epoch is enough');
    assert.deepEqual(recorder.epochs, [{ epoch: 0, step: 6, last: true }]);
    assert.equal(recorder.ends[0]!.epoch, 1);
    assert.equal(readMeta(result.lastCheckpoint as string).epoch, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('async hooks are awaited in order, and a hook that throws fails the run and frees the output directories', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-hooks-'));
  try {
    const calls: string[] = [];
    const slow: TrainHook = {
      async onStepEnd(state) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        calls.push(`slow ${state.step}`);
      },
    };
    const next: TrainHook = { onStepEnd: (state) => void calls.push(`next ${state.step}`) };
    const trainer = await Trainer.create(config(dir, { trainSteps: 2 }));
    try {
      await trainer.train({ quiet: true, hooks: [slow, next] });
    } finally {
      trainer.dispose();
    }
    assert.deepEqual(calls, ['slow 1', 'next 1', 'slow 2', 'next 2']);

    const failing = await Trainer.create(config(dir, { trainSteps: 4, resume: null, checkpointDir: join(dir, 'checkpoints-2') }));
    try {
      await assert.rejects(failing.train({ quiet: true, hooks: [{ onStepEnd: (state) => { if (state.step === 2) throw new Error('hook failed at step 2'); } }] }), /hook failed at step 2/);
    } finally {
      failing.dispose();
    }
    // The run's directory locks were released: the same directories train again.
    const again = await Trainer.create(config(dir, { trainSteps: 1, checkpointDir: join(dir, 'checkpoints-2') }));
    try {
      assert.equal((await again.train({ quiet: true })).finalStep, 1);
    } finally {
      again.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('two workers: a stop requested by rank 1 alone stops both workers after the same step', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-hooks-'));
  try {
    const worker = fileURLToPath(new URL('./fixtures/hook-stop-worker.js', import.meta.url));
    const run = await runPlsc(['launch', '--nproc-per-node', '2', '--', worker], { OUT_DIR: dir, STOP_RANK: '1', STOP_STEP: '3' });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    for (const rank of [0, 1]) {
      const line = linesOf(run.stdout, rank).find((l) => l.startsWith('RESULT '));
      assert.ok(line, `rank ${rank} printed no result:\n${run.stdout}${run.stderr}`);
      const result = JSON.parse(line.slice('RESULT '.length)) as { rank: number; seen: number[]; finalStep: number; stoppedBy: string; lastCheckpoint: string; modelPath: string | null };
      assert.equal(result.rank, rank);
      assert.deepEqual(result.seen, [1, 2, 3]);
      assert.equal(result.finalStep, 3);
      assert.equal(result.stoppedBy, rank === 1 ? 'rank 1 asked at step 3' : 'a training hook on another worker asked to stop');
      assert.equal(readMeta(result.lastCheckpoint).step, 3);
      assert.equal(result.modelPath !== null, rank === 0);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
