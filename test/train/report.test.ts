import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProgressReporter } from '../../src/train/progress.js';
import { MetricsFileError, parseTrainingMetrics, readTrainingMetrics, renderTrainingReport, writeTrainingReport } from '../../src/train/report.js';

async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'plsc-report-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** The markup of the <svg id="..."> element. */
function svgById(html: string, id: string): string {
  const start = html.indexOf(`<svg id="${id}"`);
  assert.ok(start >= 0, `no <svg id="${id}">`);
  return html.slice(start, html.indexOf('</svg>', start) + 6);
}

function seriesPaths(svg: string): Array<{ name: string; d: string }> {
  return [...svg.matchAll(/<path class="series" data-series="([^"]*)" d="([^"]*)"/g)].map((m) => ({ name: m[1]!, d: m[2]! }));
}

const silent = { write: () => true };

test('report: loss, lr and validation charts from a ProgressReporter metrics file', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const metricsPath = join(dir, 'metrics.jsonl');
    let t = 0;
    const reporter = new ProgressReporter({ totalSteps: 300, logPeriod: 20, stream: silent, isTTY: false, metricsPath, now: () => (t += 50) });
    for (let step = 1; step <= 300; step++) {
      const lr = step < 100 ? (0.1 * step) / 100 : 0.1 * (1 - (step - 100) / 200);
      reporter.update({ step, loss: 40 * Math.exp(-step / 120) + 2, lr, imagesPerSecond: 500 + (step % 7), accuracy: null, epoch: Math.floor(step / 100) });
      if (step % 100 === 0) {
        reporter.logValidation(step, [
          { target: 'lfw', accuracy: 0.9 + step / 10_000, std: 0.005, xnorm: 20 },
          { target: 'agedb_30', accuracy: 0.8 + step / 5000, std: 0.01, xnorm: 19 },
        ]);
      }
    }
    reporter.finish();

    const outPath = join(dir, 'report', 'index.html');
    const written = await writeTrainingReport(metricsPath, outPath);
    assert.equal(written, outPath);
    const html = await readFile(outPath, 'utf8');
    assert.match(html, /^<!DOCTYPE html>/);
    assert.ok(!/<script/i.test(html), 'no scripts');
    assert.ok(!/\b(?:src|href)\s*=/i.test(html), 'no external resources');
    assert.deepEqual([...new Set(html.match(/https?:\/\/[^\s"]+/g))], ['http://www.w3.org/2000/svg'], 'the only URL is the SVG namespace');

    const loss = svgById(html, 'loss');
    const lossPaths = seriesPaths(loss);
    assert.equal(lossPaths.length, 1);
    assert.equal(lossPaths[0]!.name, 'loss');
    assert.equal((lossPaths[0]!.d.match(/M/g) ?? []).length, 1);
    assert.equal((lossPaths[0]!.d.match(/L/g) ?? []).length, 14, '15 records (steps 20..300) make one line of 15 points');
    assert.match(loss, />step<\/text>/, 'x axis label');
    assert.match(loss, />loss<\/text>/, 'y axis label');
    assert.match(loss, />300<\/text>/, 'x tick at the last step');

    const lr = svgById(html, 'lr');
    assert.equal(seriesPaths(lr).length, 1);
    assert.match(lr, />0\.1<\/text>|>0\.10<\/text>|>0\.100<\/text>/, 'lr tick labels');
    assert.match(lr, />learning rate<\/text>/);

    const validation = svgById(html, 'validation');
    const valPaths = seriesPaths(validation);
    assert.deepEqual(valPaths.map((p) => p.name), ['lfw', 'agedb_30']);
    for (const p of valPaths) assert.equal((p.d.match(/L/g) ?? []).length, 2, `${p.name}: three validation points in one line`);
    assert.equal((validation.match(/<circle class="point" data-series="lfw"/g) ?? []).length, 3);
    assert.equal((validation.match(/<circle class="point" data-series="agedb_30"/g) ?? []).length, 3);
    assert.equal((validation.match(/class="error-bar"/g) ?? []).length, 6);
    assert.match(validation, /<title>lfw step 300: accuracy 0\.9300 ± 0\.0050, xnorm 20\.00<\/title>/);
    assert.match(validation, /class="legend"[\s\S]*>agedb_30<\/text>/);

    assert.match(html, /lfw accuracy<\/td><td>best 0\.9300 ± 0\.0050 \(step 300\)/);
    assert.ok(!html.includes('id="train-accuracy"'), 'no training-accuracy chart when no accuracy was recorded');
    assert.ok(html.includes('id="throughput"'));
  } finally {
    await cleanup();
  }
});

test('report: a resumed run replaces re-logged steps; NaN losses break the line; names are escaped', () => {
  const lines = [
    { step: 100, loss: 5, lr: 0.1 },
    { step: 200, loss: 4, lr: 0.1 },
    { step: 300, loss: 3, lr: 0.1 },
    { type: 'validation', step: 300, results: [{ target: '<b>x</b>', accuracy: 0.5, std: 0, xnorm: 1 }] },
    // resumed from step 200
    { step: 200, loss: 4.5, lr: 0.1 },
    { step: 300, loss: null, lr: 0.1 },
    { step: 400, loss: 2, lr: 0.1 },
    { step: 500, loss: 1, lr: 0.1 },
    { type: 'validation', step: 300, results: [{ target: '<b>x</b>', accuracy: 0.6, std: 0, xnorm: 1 }] },
  ];
  const metrics = parseTrainingMetrics(lines.map((l) => JSON.stringify(l)).join('\n') + '\n\n', 'm.jsonl');
  assert.deepEqual(metrics.train.map((p) => [p.step, p.loss]), [[100, 5], [200, 4.5], [300, null], [400, 2], [500, 1]]);
  assert.deepEqual(metrics.validation.get('<b>x</b>')!.map((p) => [p.step, p.accuracy]), [[300, 0.6]]);
  const html = renderTrainingReport(metrics);
  const [loss] = seriesPaths(svgById(html, 'loss'));
  assert.equal((loss!.d.match(/M/g) ?? []).length, 2, 'the null loss splits the line in two');
  assert.ok(!html.includes('<b>x</b>'));
  assert.ok(html.includes('&lt;b&gt;x&lt;/b&gt;'));
});

test('report: validation-only metrics still render; missing charts say so', () => {
  const html = renderTrainingReport(parseTrainingMetrics('{"type":"validation","step":0,"results":[{"target":"lfw","accuracy":0.5,"std":0.1,"xnorm":3}]}\n'));
  assert.equal(seriesPaths(svgById(html, 'validation')).length, 1);
  assert.ok(!html.includes('id="loss"'));
  const trainOnly = renderTrainingReport(parseTrainingMetrics('{"step":1,"loss":3,"lr":0.1}\n'));
  assert.match(trainOnly, /No validation records/);
});

test('report: missing or garbled metrics files fail with the file and line', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const missing = join(dir, 'nope.jsonl');
    await assert.rejects(writeTrainingReport(missing, join(dir, 'out.html')), (error: unknown) => {
      assert.ok(error instanceof MetricsFileError);
      assert.ok(error.message.startsWith(`${missing}: cannot read metrics file`), error.message);
      return true;
    });

    const garbled = join(dir, 'garbled.jsonl');
    await writeFile(garbled, '{"step":1,"loss":3,"lr":0.1}\n\n{"step":2,"loss":2.9,"lr":0.1\n{"step":3}\n');
    await assert.rejects(readTrainingMetrics(garbled), (error: unknown) => {
      assert.ok(error instanceof MetricsFileError);
      assert.equal(error.line, 3);
      assert.match(error.message, new RegExp(`^${garbled.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} line 3: not a JSON object`));
      return true;
    });

    const cases: Array<[string, RegExp]> = [
      ['[1,2]\n', /line 1: expected a JSON object/],
      ['{"loss":1}\n', /line 1: "step" must be a non-negative integer, got undefined/],
      ['{"step":1}\n{"step":2,"loss":"high"}\n', /line 2: "loss" must be a number or null, got "high"/],
      ['{"step":1,"type":"eval"}\n', /line 1: unknown record type "eval"/],
      ['{"step":1,"type":"validation","results":{}}\n', /line 1: "results" of a validation record must be an array/],
      ['{"step":1,"type":"validation","results":[{"accuracy":1}]}\n', /line 1: results\[0\]: "target" must be a non-empty string/],
      ['\n\n', /no metrics records/],
    ];
    for (const [text, expected] of cases) assert.throws(() => parseTrainingMetrics(text, 'm.jsonl'), expected, JSON.stringify(text));
  } finally {
    await cleanup();
  }
});
