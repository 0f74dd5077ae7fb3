// `plsc bench <name>`: the benchmark table of bench/cli.ts. Only --help and usage errors run here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BENCH_COMMAND, benchCommand } from '../../bench/cli.js';
import { captured } from '../helpers/capture-console.js';

test('plsc bench --help lists the benchmarks and exits 0; no name or an unknown one exits 2', async () => {
  for (const flag of ['--help', '-h', 'help']) {
    const help = await captured(() => benchCommand([flag]));
    assert.equal(help.result, 0, flag);
    assert.match(help.stdout, /^usage: plsc bench <engine\|head\|comm\|serve\|train\|eval> \[--json\]\n\nplsc bench <name> --help/);
  }
  for (const argv of [[], ['nope'], ['--json']]) {
    const wrong = await captured(() => benchCommand(argv));
    assert.equal(wrong.result, 2, argv.join(' '));
    assert.equal(wrong.stdout, '');
    assert.match(wrong.stderr, /^usage: plsc bench <engine\|head\|comm\|serve\|train\|eval>/);
  }
});

test('plsc bench <name> --help prints the usage of each benchmark and exits 0 without measuring', async () => {
  for (const name of ['engine', 'head', 'comm', 'serve', 'train', 'eval']) {
    const help = await captured(() => benchCommand([name, '--help']));
    assert.equal(help.result, 0, name);
    assert.match(help.stdout, new RegExp(`^usage: plsc bench ${name} `), name);
    assert.equal(help.stderr, '', name);
  }
});

test('plsc bench comm|serve --help reach the benchmarks under bench/', async () => {
  const comm = await captured(() => benchCommand(['comm', '--help']));
  assert.equal(comm.result, 0);
  assert.match(comm.stdout, /^usage: plsc bench comm /);
  const serve = await captured(() => benchCommand(['serve', '--help']));
  assert.equal(serve.result, 0);
  assert.match(serve.stdout, /^usage: plsc bench serve /);
  const badComm = await captured(() => benchCommand(['comm', '--ops', 'broadcast']));
  assert.equal(badComm.result, 2);
  assert.match(badComm.stderr, /^plsc bench comm: --ops: unknown op "broadcast"/);
});

test('BENCH_COMMAND is the entry bin/plsc.js gives the command table', async () => {
  assert.equal(BENCH_COMMAND.name, 'bench');
  assert.equal(await BENCH_COMMAND.load(), benchCommand);
});
