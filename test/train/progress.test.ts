import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProgressReporter, formatDuration, formatLearningRate, type ProgressUpdate } from '../../src/train/progress.js';

/** A stream that records every write. */
function fakeStream(isTTY: boolean, columns?: number): { writes: string[]; text: () => string; isTTY: boolean; columns?: number; write(chunk: string): boolean } {
  const writes: string[] = [];
  return {
    writes,
    isTTY,
    ...(columns === undefined ? {} : { columns }),
    text: () => writes.join(''),
    write(chunk: string) {
      writes.push(chunk);
      return true;
    },
  };
}

/** A manual clock in milliseconds. */
function fakeClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

const FIXED_DATE = new Date('2025-01-02T03:04:05.000Z');

function stepUpdate(step: number, extra: Partial<ProgressUpdate> = {}): ProgressUpdate {
  return { step, loss: 20 - step, lr: 0.1, imagesPerSecond: 128, accuracy: step / 20, epoch: Math.floor(step / 5), ...extra };
}

async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'plsc-progress-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

test('formatDuration: seconds, minutes, hours, days, unknown', () => {
  assert.equal(formatDuration(0), '0s');
  assert.equal(formatDuration(44.6), '45s');
  assert.equal(formatDuration(130), '2m10s');
  assert.equal(formatDuration(65), '1m05s');
  assert.equal(formatDuration(3900), '1h05m');
  assert.equal(formatDuration(3 * 86400 + 4 * 3600), '3d04h');
  assert.equal(formatDuration(Number.NaN), '?');
  assert.equal(formatDuration(Number.POSITIVE_INFINITY), '?');
  assert.equal(formatDuration(-1), '?');
});

test('formatLearningRate: fixed decimals, exponent for tiny rates', () => {
  assert.equal(formatLearningRate(0.1), '0.1000');
  assert.equal(formatLearningRate(0), '0.0000');
  assert.equal(formatLearningRate(2.5e-5), '2.50e-5');
  assert.equal(formatLearningRate(Number.NaN), 'nan');
});

test('plain mode: a line every logPeriod steps and at the last step, with ETA from the step time', () => {
  const stream = fakeStream(false);
  const clock = fakeClock();
  const reporter = new ProgressReporter({ totalSteps: 10, logPeriod: 4, stream, now: clock.now, date: () => FIXED_DATE });
  assert.equal(reporter.isTTY, false);
  for (let step = 1; step <= 10; step++) {
    clock.advance(1000);
    reporter.update(stepUpdate(step, step === 8 ? { accuracy: null } : {}));
  }
  const lines = stream.text().split('\n').filter((l) => l !== '');
  assert.deepEqual(lines, [
    'step 4/10 epoch 0 loss 16.000 lr 0.1000 acc 0.20 img/s 128.0 eta 6s',
    'step 8/10 epoch 1 loss 12.000 lr 0.1000 img/s 128.0 eta 2s',
    'step 10/10 epoch 2 loss 10.000 lr 0.1000 acc 0.50 img/s 128.0 eta 0s',
  ]);
  assert.ok(!stream.text().includes('\r'), 'plain mode never uses carriage returns');
  reporter.finish();
  assert.match(stream.writes.at(-1)!, /^finished 10 steps in 10s\n$/);
  reporter.finish(); // idempotent
  assert.equal(stream.text().split('finished').length, 2);
});

test('plain mode: finish logs the last step when training stopped between log boundaries', () => {
  const stream = fakeStream(false);
  const clock = fakeClock();
  const reporter = new ProgressReporter({ totalSteps: 100, logPeriod: 10, stream, now: clock.now });
  for (let step = 1; step <= 13; step++) {
    clock.advance(500);
    reporter.update(stepUpdate(step));
  }
  reporter.finish();
  const lines = stream.text().trim().split('\n');
  assert.equal(lines.length, 3);
  assert.match(lines[0]!, /^step 10\/100 /);
  assert.match(lines[1]!, /^step 13\/100 .* eta 44s$/);
  assert.equal(lines[2], 'finished 13 steps in 7s');
});

test('ETA follows a change in step time and counts only steps since a resume', () => {
  const clock = fakeClock();
  const reporter = new ProgressReporter({ totalSteps: 10_000, startStep: 5000, logPeriod: 1000, stream: fakeStream(false), now: clock.now });
  clock.advance(2000);
  reporter.update(stepUpdate(5001));
  assert.equal(reporter.secondsPerStep, 2); // first step timed from construction, not from step 0
  assert.equal(reporter.etaSeconds(), 4999 * 2);
  for (let step = 5002; step <= 5200; step++) {
    clock.advance(500);
    reporter.update(stepUpdate(step));
  }
  assert.ok(Math.abs(reporter.secondsPerStep - 0.5) < 0.01, `smoothed step time ${reporter.secondsPerStep} should approach 0.5`);
  // An update that covers several steps at once is timed per step.
  clock.advance(5000);
  reporter.update(stepUpdate(5210));
  assert.ok(Math.abs(reporter.secondsPerStep - 0.5) < 0.01);
});

test('metrics file: a JSON line per logPeriod boundary (parent folders created), NaN as null, validation records', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const metricsPath = join(dir, 'run', 'logs', 'metrics.jsonl');
    const stream = fakeStream(false);
    const clock = fakeClock();
    const reporter = new ProgressReporter({ totalSteps: 7, logPeriod: 3, stream, metricsPath, now: clock.now, date: () => FIXED_DATE });
    for (let step = 1; step <= 7; step++) {
      clock.advance(100);
      reporter.update(stepUpdate(step, step === 6 ? { loss: Number.NaN, accuracy: null } : {}));
      if (step === 6) {
        reporter.logValidation(6, [
          { target: 'lfw', accuracy: 0.99, std: 0.004, xnorm: 21.5 },
          { target: 'cfp_fp', accuracy: 0.9, std: 0.01, xnorm: 20.25 },
        ]);
      }
    }
    reporter.finish();
    const records = (await readFile(metricsPath, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(records, [
      { step: 3, epoch: 0, loss: 17, lr: 0.1, img_per_s: 128, accuracy: 0.15, time: '2025-01-02T03:04:05.000Z' },
      { step: 6, epoch: 1, loss: null, lr: 0.1, img_per_s: 128, accuracy: null, time: '2025-01-02T03:04:05.000Z' },
      {
        type: 'validation',
        step: 6,
        epoch: 1,
        results: [
          { target: 'lfw', accuracy: 0.99, std: 0.004, xnorm: 21.5 },
          { target: 'cfp_fp', accuracy: 0.9, std: 0.01, xnorm: 20.25 },
        ],
        time: '2025-01-02T03:04:05.000Z',
      },
      { step: 7, epoch: 1, loss: 13, lr: 0.1, img_per_s: 128, accuracy: 0.35, time: '2025-01-02T03:04:05.000Z' },
    ]);
    const text = stream.text();
    assert.match(text, /step 6\/7 epoch 1 loss nan lr 0\.1000 img\/s 128\.0 eta 0s\n/);
    assert.match(text, /val step 6\/7: lfw acc 0\.9900 ±0\.0040 xnorm 21\.50 \| cfp_fp acc 0\.9000 ±0\.0100 xnorm 20\.25\n/);
    // A repeated update of the same step does not duplicate the record.
    reporter.update(stepUpdate(7));
    assert.equal((await readFile(metricsPath, 'utf8')).trim().split('\n').length, 4);
  } finally {
    await cleanup();
  }
});

test('TTY mode: carriage-return redraws throttled to the redraw interval, final state drawn, no plain lines', () => {
  const stream = fakeStream(true, 100);
  const clock = fakeClock();
  const reporter = new ProgressReporter({ totalSteps: 40, logPeriod: 10, stream, now: clock.now });
  assert.equal(reporter.isTTY, true);
  for (let step = 1; step <= 40; step++) {
    clock.advance(30); // 33 updates a second: at most one redraw per 100 ms
    reporter.update(stepUpdate(step, { loss: 1.25, lr: 0.05 }));
  }
  const draws = stream.writes.filter((w) => w.startsWith('\r'));
  assert.equal(draws.length, stream.writes.length, 'every write is a redraw');
  assert.ok(draws.length >= 10 && draws.length <= 12, `expected about 40*30ms/100ms redraws, got ${draws.length}`);
  for (const draw of draws) {
    assert.ok(draw.endsWith('\x1b[K'), 'each redraw clears the rest of the line');
    assert.ok(!draw.includes('\n'));
    assert.ok(draw.length - 1 - 3 <= 99, `redraw longer than the terminal: ${JSON.stringify(draw)}`);
  }
  assert.match(draws[0]!, /^\r 1\/40 +\d+% \[#?-+\] loss 1\.250 lr 0\.0500 acc 0\.05 128\.0 img\/s eta 1s\x1b\[K$/);
  assert.match(draws.at(-1)!, /^\r40\/40 100% \[#+\] loss 1\.250 .* eta 0s\x1b\[K$/);
  assert.ok(!stream.text().includes('step 10/40'), 'no plain log lines on a terminal');

  // log() prints above the bar: clear the line, message, newline, then redraw the bar.
  stream.writes.length = 0;
  reporter.log('checkpoint saved');
  assert.equal(stream.writes[0], '\r\x1b[Kcheckpoint saved\n');
  assert.match(stream.writes[1]!, /^\r40\/40 100%/);
  stream.writes.length = 0;
  reporter.finish();
  assert.match(stream.writes[0]!, /^\r40\/40 100%/);
  assert.equal(stream.writes[1], '\n');
  assert.match(stream.writes[2]!, /^finished 40 steps in 1s\n$/);
});

test('TTY mode: a narrow terminal drops the bar instead of wrapping', () => {
  const stream = fakeStream(true, 40);
  const reporter = new ProgressReporter({ totalSteps: 1000, logPeriod: 10, stream, now: fakeClock().now });
  reporter.update(stepUpdate(1));
  const draw = stream.writes[0]!;
  assert.ok(!/\[[#-]/.test(draw), 'no room for a bar');
  assert.ok(draw.length - 1 - 3 <= 39, JSON.stringify(draw));
});

test('isTTY follows the stream unless overridden; bad options are rejected', () => {
  assert.equal(new ProgressReporter({ totalSteps: 5, stream: fakeStream(true) }).isTTY, true);
  assert.equal(new ProgressReporter({ totalSteps: 5, stream: fakeStream(true), isTTY: false }).isTTY, false);
  assert.throws(() => new ProgressReporter({ totalSteps: 0, stream: fakeStream(false) }), /ProgressReporter: totalSteps must be a positive integer, got 0/);
  assert.throws(() => new ProgressReporter({ totalSteps: 5, logPeriod: 0, stream: fakeStream(false) }), /logPeriod/);
  assert.throws(() => new ProgressReporter({ totalSteps: 5, startStep: 6, stream: fakeStream(false) }), /past totalSteps/);
  const reporter = new ProgressReporter({ totalSteps: 5, stream: fakeStream(false) });
  assert.throws(() => reporter.update(stepUpdate(-1)), /step must be a non-negative integer/);
});
