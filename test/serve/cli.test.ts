// plsc serve: usage errors and --help are answered before any model is loaded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serveCommand } from '../../src/serve/cli.js';
import { captured } from '../helpers/capture-console.js';


test('plsc serve: usage errors exit 2 naming the option, --help exits 0', async () => {
  const cases: [string[], RegExp][] = [
    [[], /plsc serve: --model is required\n\nusage: plsc serve/],
    [['--model', 'm.onnx', '--port', '70000'], /--port must be at most 65535, got 70000/],
    [['--model', 'm.onnx', '--port', '80.5'], /--port must be an integer >= 0, got '80.5'/],
    [['--model', 'm.onnx', '--max-batch', '0'], /--max-batch must be an integer >= 1, got '0'/],
    [['--model', 'm.onnx', '--body-limit', '16g'], /--body-limit must be a byte count like 1048576, 512k or 16m, got '16g'/],
    [['--model', 'm.onnx', '--input-size', '112'], /--input-size must look like 112x112, got '112'/],
    [['--model', 'm.onnx', '--max-wait-ms=-1'], /--max-wait-ms must be a number >= 0, got '-1'/],
    [['--model', 'm.onnx', '--max-request-pixels', '0'], /--max-request-pixels must be an integer >= 1, got '0'/],
    [['--model', 'm.onnx', '--decode-concurrency', 'two'], /--decode-concurrency must be an integer >= 1, got 'two'/],
    [['--model', 'm.onnx', '--bogus'], /plsc serve: Unknown option '--bogus'/],
  ];
  for (const [argv, message] of cases) {
    const { result: code, stderr } = await captured(() => serveCommand(argv));
    assert.equal(code, 2, `${argv.join(' ')}: ${stderr}`);
    assert.match(stderr, message);
  }
  const help = await captured(() => serveCommand(['--help']));
  assert.equal(help.result, 0);
  assert.match(help.stdout, /^usage: plsc serve --model model\.onnx/);
  assert.match(help.stdout, /--max-request-pixels N[\s\S]*--decode-concurrency N[\s\S]*--exit-with-parent/);
  assert.equal(help.stderr, '');
});
