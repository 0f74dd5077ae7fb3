// `plsc <command>`: the one command table (src/cli/commands.ts), with `bench` passed in from bench/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { main } from '../../src/cli/main.js';
import { plscCommands } from '../../src/cli/commands.js';
import { BENCH_COMMAND } from '../../bench/cli.js';
import { captured } from '../helpers/capture-console.js';

const SRC_COMMANDS = ['launch', 'info', 'serve', 'data', 'export', 'eval', 'train', 'reshard', 'demo', 'checkpoint', 'grow', 'plan'];

function listedCommands(help: string): string[] {
  const listing = help.split('commands:\n')[1]?.split('\n\n')[0] ?? '';
  return listing.split('\n').map((line) => line.trim().split(/\s+/)[0] as string);
}

test('plsc --help lists every command once, bench second when the bin passes it in', async () => {
  const withBench = await captured(() => main(['--help'], BENCH_COMMAND));
  assert.equal(withBench.result, 0);
  assert.deepEqual(listedCommands(withBench.stdout), ['launch', 'bench', ...SRC_COMMANDS.slice(1)]);
  assert.match(withBench.stdout, /^ {2}bench {7}benchmarks: plsc bench engine\|comm\|head\|train\|serve\|eval \[--json\]$/m);

  const withoutBench = await captured(() => main(['--help']));
  assert.deepEqual(listedCommands(withoutBench.stdout), SRC_COMMANDS);
  const bench = await captured(() => main(['bench']));
  assert.equal(bench.result, 2);
  assert.match(bench.stderr, /^plsc: unknown command 'bench'/);
});

test('plsc with no command prints the usage and exits 2; an unknown command is named', async () => {
  const bare = await captured(() => main([], BENCH_COMMAND));
  assert.equal(bare.result, 2);
  assert.match(bare.stdout, /^usage: plsc <command> \[options\]/);
  const unknown = await captured(() => main(['trian'], BENCH_COMMAND));
  assert.equal(unknown.result, 2);
  assert.match(unknown.stderr, /^plsc: unknown command 'trian'\n\nusage: plsc <command>/);
});

test('every command of the table loads its entry point', async () => {
  const commands = plscCommands(BENCH_COMMAND);
  assert.equal(new Set(commands.map((entry) => entry.name)).size, commands.length);
  for (const entry of commands) assert.equal(typeof (await entry.load()), 'function', entry.name);
});

test('a command runs with the arguments after its name and returns its exit code', async () => {
  const help = await captured(() => main(['plan', '--help'], BENCH_COMMAND));
  assert.equal(help.result, 0);
  assert.match(help.stdout, /^usage: plsc plan/);
  const bad = await captured(() => main(['plan', '--bogus'], BENCH_COMMAND));
  assert.equal(bad.result, 2);
  assert.match(bad.stderr, /plsc plan: Unknown option '--bogus'/);
});
