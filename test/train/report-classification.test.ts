// Held-out classification records: the progress reporter writes them, the report parses and draws them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProgressReporter } from '../../src/train/progress.js';
import { parseTrainingMetrics, renderTrainingReport } from '../../src/train/report.js';

test('logClassification: a log line, a metrics record, and top-1 in the following progress lines', () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-cls-report-'));
  try {
    let text = '';
    const metricsPath = join(dir, 'metrics.jsonl');
    const progress = new ProgressReporter({ totalSteps: 4, logPeriod: 2, isTTY: false, metricsPath, stream: { write: (c: string) => ((text += c), true) } });
    progress.update({ step: 2, epoch: 0, loss: 3, lr: 0.1, imagesPerSecond: 50 });
    assert.doesNotMatch(text, /top-1/);
    progress.logClassification(2, [{ target: 'val', images: 60, top1: 0.5, top5: 0.9 }]);
    progress.update({ step: 4, epoch: 0, loss: 2, lr: 0.1, imagesPerSecond: 50 });
    assert.match(text, /^val step 2\/4: val top-1 0\.5000 top-5 0\.9000 \(60 images\)$/m);
    assert.match(text, /^step 4\/4 epoch 0 loss 2\.000 lr 0\.1000 val top-1 0\.500 img\/s 50\.0/m);
    const records = readFileSync(metricsPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual({ ...records[1], time: undefined }, { type: 'classification', step: 2, epoch: 0, results: [{ target: 'val', images: 60, top1: 0.5, top5: 0.9 }], time: undefined });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the report parses classification records (a resumed run replaces later points) and draws top-1/top-5', () => {
  const lines = [
    { step: 10, loss: 3, lr: 0.1 },
    { type: 'classification', step: 10, results: [{ target: 'val', images: 60, top1: 0.4, top5: 0.8 }] },
    { type: 'classification', step: 20, results: [{ target: 'val', images: 60, top1: 0.6, top5: 0.9 }] },
    { type: 'classification', step: 20, results: [{ target: 'val', images: 60, top1: 0.7, top5: 0.95 }] },
  ].map((r) => JSON.stringify(r));
  const metrics = parseTrainingMetrics(lines.join('\n'));
  assert.deepEqual(metrics.classification.get('val'), [
    { step: 10, images: 60, top1: 0.4, top5: 0.8 },
    { step: 20, images: 60, top1: 0.7, top5: 0.95 },
  ]);
  const html = renderTrainingReport(metrics);
  assert.match(html, /Held-out classification accuracy/);
  assert.match(html, /val top-1/);
  assert.match(html, /val top-5/);
  assert.match(html, /best 0\.7000 \(step 20\); last 0\.7000, top-5 0\.9500 \(step 20\); 60 images, 2 evaluations/);
  assert.doesNotMatch(html, /No validation records/);
  assert.throws(() => parseTrainingMetrics(JSON.stringify({ type: 'classification', step: 1, results: [{ top1: 0.5 }] }), 'm.jsonl'), /m\.jsonl.*line 1.*results\[0\]: "target" must be a non-empty string/);
});
