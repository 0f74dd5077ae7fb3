// Learning-rate schedules at their boundaries, and the scheduler driving an optimizer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ops as F, optim, type Tensor } from '../../src/index.js';

const { lrAt } = optim;

function close(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= 1e-12 * Math.max(1, Math.abs(expected)), `${what}: ${actual} vs ${expected}`);
}

test('linear warmup starts at warmupStartLr and reaches baseLr at the warmup end', () => {
  const schedule: optim.LrSchedule = { baseLr: 0.1, warmupSteps: 10, decay: { kind: 'constant' } };
  close(lrAt(schedule, 0), 0, 'step 0');
  close(lrAt(schedule, 1), 0.01, 'step 1');
  close(lrAt(schedule, 5), 0.05, 'step 5');
  close(lrAt(schedule, 9), 0.09, 'last warmup step');
  close(lrAt(schedule, 10), 0.1, 'warmup end');
  close(lrAt(schedule, 10_000), 0.1, 'constant after');
  const fromStart = { ...schedule, warmupStartLr: 0.02 };
  close(lrAt(fromStart, 0), 0.02, 'custom start');
  close(lrAt(fromStart, 5), 0.06, 'custom start midway');
  close(lrAt(fromStart, 10), 0.1, 'custom start end');
  close(lrAt({ baseLr: 0.3, decay: { kind: 'constant' } }, 0), 0.3, 'no warmup');
});

test('piecewise decay changes exactly at each boundary', () => {
  const schedule: optim.LrSchedule = { baseLr: 0.1, warmupSteps: 5, decay: { kind: 'piecewise', boundaries: [20, 30, 45], factor: 0.1 } };
  close(lrAt(schedule, 4), 0.08, 'warmup');
  close(lrAt(schedule, 5), 0.1, 'warmup end');
  close(lrAt(schedule, 19), 0.1, 'before first boundary');
  close(lrAt(schedule, 20), 0.1 * 0.1, 'first boundary');
  close(lrAt(schedule, 29), 0.1 * 0.1, 'before second boundary');
  close(lrAt(schedule, 30), 0.1 * 0.01, 'second boundary');
  close(lrAt(schedule, 44), 0.1 * 0.01, 'before third boundary');
  close(lrAt(schedule, 45), 0.1 * 0.001, 'third boundary');
  close(lrAt(schedule, 1000), 0.1 * 0.001, 'after the last');
  const explicit: optim.LrSchedule = { baseLr: 0.1, decay: { kind: 'piecewise', boundaries: [3, 6], values: [0.1, 0.05, 0.001] } };
  assert.deepEqual([0, 2, 3, 5, 6, 9].map((s) => lrAt(explicit, s)), [0.1, 0.1, 0.05, 0.05, 0.001, 0.001]);
});

test('polynomial decay runs from the warmup end to endLr at totalSteps', () => {
  const schedule: optim.LrSchedule = { baseLr: 0.1, warmupSteps: 10, decay: { kind: 'polynomial', totalSteps: 110, power: 2, endLr: 0.001 } };
  close(lrAt(schedule, 10), 0.1, 'warmup end');
  close(lrAt(schedule, 60), 0.001 + 0.099 * 0.25, 'halfway');
  close(lrAt(schedule, 109), 0.001 + 0.099 * 0.01 ** 2, 'last step');
  close(lrAt(schedule, 110), 0.001, 'poly end');
  close(lrAt(schedule, 500), 0.001, 'held after the end');
  const linear: optim.LrSchedule = { baseLr: 1, decay: { kind: 'polynomial', totalSteps: 4 } };
  assert.deepEqual([0, 1, 2, 3, 4].map((s) => lrAt(linear, s)), [1, 0.75, 0.5, 0.25, 0]);
});

test('cosine decay runs from baseLr to minLr', () => {
  const schedule: optim.LrSchedule = { baseLr: 0.1, warmupSteps: 0, decay: { kind: 'cosine', totalSteps: 100, minLr: 0.01 } };
  close(lrAt(schedule, 0), 0.1, 'start');
  close(lrAt(schedule, 50), 0.055, 'halfway');
  close(lrAt(schedule, 25), 0.01 + 0.09 * (1 + Math.cos(Math.PI / 4)) / 2, 'quarter');
  close(lrAt(schedule, 100), 0.01, 'cosine end');
  close(lrAt(schedule, 101), 0.01, 'held after the end');
  const warm: optim.LrSchedule = { baseLr: 0.4, warmupSteps: 20, decay: { kind: 'cosine', totalSteps: 120 } };
  close(lrAt(warm, 10), 0.2, 'warmup');
  close(lrAt(warm, 20), 0.4, 'warmup end = cosine start');
  close(lrAt(warm, 70), 0.2, 'cosine middle');
  close(lrAt(warm, 120), 0, 'cosine end');
});

test('invalid schedules and steps are rejected naming the field', () => {
  const make = (decay: optim.LrDecay, extra: Partial<optim.LrSchedule> = {}): (() => void) => () => optim.validateSchedule({ baseLr: 0.1, decay, ...extra });
  assert.throws(make({ kind: 'piecewise', boundaries: [10, 5], factor: 0.1 }), /strictly ascending \(boundaries\[1\] = 5\)/);
  assert.throws(make({ kind: 'piecewise', boundaries: [10] }), /needs a decay factor/);
  assert.throws(make({ kind: 'piecewise', boundaries: [10], values: [1] }), /values needs 2 entries/);
  assert.throws(make({ kind: 'cosine', totalSteps: 10 }, { warmupSteps: 10 }), /cosine totalSteps \(10\) must exceed warmupSteps \(10\)/);
  assert.throws(make({ kind: 'polynomial', totalSteps: 10, power: 0 }), /power must be positive/);
  assert.throws(make({ kind: 'constant' }, { warmupSteps: 2.5 }), /warmupSteps must be a non-negative integer/);
  assert.throws(make({ kind: 'constant' }, { baseLr: -1 }), /baseLr must be a non-negative number/);
  assert.throws(() => lrAt({ baseLr: 0.1, decay: { kind: 'constant' } }, -1), /step must be a non-negative integer/);
});

test('the scheduler sets every group, keeps group ratios, and resumes from its state', () => {
  const a = F.zeros([2]).requiresGrad_(true);
  const b = F.zeros([2]).requiresGrad_(true);
  const makeOptimizer = (): optim.SGD => new optim.SGD([{ params: [a] }, { params: [b], lr: 0.01 }], { lr: 0.1, momentum: 0.9 });
  const schedule: optim.LrSchedule = { baseLr: 0.1, warmupSteps: 4, decay: { kind: 'piecewise', boundaries: [6], factor: 0.5 } };
  const opt = makeOptimizer();
  const scheduler = new optim.LrScheduler(opt, schedule);
  assert.equal(scheduler.lastStep, 0);
  assert.deepEqual(scheduler.lrs, [0, 0]);
  const seen: number[][] = [scheduler.lrs];
  for (let i = 0; i < 7; i++) {
    scheduler.step();
    seen.push(scheduler.lrs);
  }
  const expectedFirst = [0, 0.025, 0.05, 0.075, 0.1, 0.1, 0.05, 0.05];
  seen.forEach(([first, second], step) => {
    close(first as number, expectedFirst[step] as number, `group 0 at step ${step}`);
    close(second as number, (expectedFirst[step] as number) / 10, `group 1 at step ${step}`);
  });
  // Resume: a new optimizer and scheduler, restored from JSON, continue where the first stopped.
  const saved = JSON.parse(JSON.stringify(scheduler.stateDict())) as optim.LrSchedulerState;
  assert.equal(saved.step, 7);
  assert.deepEqual(saved.initialLrs, [0.1, 0.01]);
  const resumedOptimizer = makeOptimizer();
  const resumed = new optim.LrScheduler(resumedOptimizer, schedule);
  resumed.loadStateDict(saved);
  assert.deepEqual(resumed.lrs, scheduler.lrs);
  scheduler.step();
  resumed.step();
  assert.deepEqual(resumed.lrs, scheduler.lrs);
  assert.equal(resumed.lastStep, 8);
  assert.throws(() => resumed.loadStateDict({ ...saved, initialLrs: [0.1] }), /1 initial lrs, optimizer has 2 param groups/);
  for (const t of [a, b] as Tensor[]) t.dispose();
});
