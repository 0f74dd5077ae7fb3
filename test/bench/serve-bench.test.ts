// `plsc bench serve`: usage errors are answered before any model is loaded; --json prints one
// measurement object per concurrency, measured over real loopback sockets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { benchServeCommand } from '../../bench/serve.js';
import { captured } from '../helpers/capture-console.js';

test('plsc bench serve: usage errors exit 2', async () => {
  const cases: [string[], RegExp][] = [
    [['--route', 'search'], /--route must be one of embed, verify, inference, classify, got 'search'/],
    [['--duration', '0'], /--duration must be in \(0, 600\] seconds, got 0/],
    [['--concurrency', '1,x'], /--concurrency must be an integer >= 1, got 'x'/],
  ];
  for (const [argv, message] of cases) {
    const { result: code, stderr } = await captured(() => benchServeCommand(argv));
    assert.equal(code, 2, `${argv.join(' ')}: ${stderr}`);
    assert.match(stderr, message);
    assert.match(stderr, /usage: plsc bench serve/);
  }
});

test('plsc bench serve --json prints one measurement object per concurrency', async () => {
  const lines: string[] = [];
  const original = console.log;
  console.log = (...args: unknown[]) => void lines.push(args.join(' '));
  let code: number;
  try {
    code = await benchServeCommand(['--json', '--concurrency', '1,3', '--duration', '0.5', '--warmup', '0.2', '--threads', '1']);
  } finally {
    console.log = original;
  }
  assert.equal(code, 0, lines.join('\n'));
  const rows = lines.map((line) => JSON.parse(line) as Record<string, number>);
  assert.deepEqual(rows.map((row) => row.concurrency), [1, 3]);
  for (const row of rows) {
    for (const key of ['rps', 'p50_ms', 'p99_ms', 'errors']) assert.equal(typeof row[key], 'number', key);
    assert.equal(row.errors, 0);
    assert.ok(row.rps! > 0);
    assert.ok(row.requests! > 0);
    assert.ok(row.p99_ms! >= row.p50_ms!);
  }
});
