// The option helpers every plsc command uses: values, messages and exit codes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError, integerFlag, numberFlag, oneOf, required, runCommand, type CommandIO } from '../../src/cli-kit/args.js';

function recorder(): CommandIO & { out: string; err: string } {
  const io = { out: '', err: '', stdout: { write: (t: string) => void (io.out += t) }, stderr: { write: (t: string) => void (io.err += t) } };
  return io;
}

test('integerFlag: decimal digits only, at least the minimum', () => {
  assert.equal(integerFlag(undefined, 'n'), undefined);
  assert.equal(integerFlag('12', 'n'), 12);
  assert.equal(integerFlag(' 0 ', 'n', 0), 0);
  for (const bad of ['1e3', '0x10', '1.5', '', 'two', '0']) {
    assert.throws(() => integerFlag(bad, 'n'), (e: unknown) => e instanceof UsageError && e.message === `--n must be an integer >= 1, got '${bad}'`);
  }
});

test('numberFlag: finite, optionally bounded', () => {
  assert.equal(numberFlag('-0.5', 'x'), -0.5);
  assert.equal(numberFlag('1e-4', 'x', { greaterThan: 0 }), 1e-4);
  assert.throws(() => numberFlag('0', 'x', { greaterThan: 0 }), /--x must be a positive number, got '0'/);
  assert.throws(() => numberFlag('-1', 'x', { atLeast: 0 }), /--x must be a number >= 0, got '-1'/);
  assert.throws(() => numberFlag('Infinity', 'x'), /--x must be a number, got 'Infinity'/);
  assert.throws(() => numberFlag(' ', 'x'), /--x must be a number/);
});

test('oneOf and required', () => {
  assert.equal(oneOf(undefined, 'format', ['jpeg', 'png'] as const, 'jpeg'), 'jpeg');
  assert.equal(oneOf('png', 'format', ['jpeg', 'png'] as const), 'png');
  assert.throws(() => oneOf('gif', 'format', ['jpeg', 'png'] as const), /--format must be one of jpeg, png, got 'gif'/);
  assert.throws(() => oneOf(undefined, 'format', ['jpeg', 'png'] as const), /--format is required \(jpeg, png\)/);
  assert.throws(() => required(undefined, 'out'), /--out is required/);
  assert.equal(required('a', 'out'), 'a');
});

test('runCommand: exit codes 0 (body or --help), 1 (failure), 2 (usage), messages on stderr', async () => {
  const spec = (io: CommandIO) => ({ name: 'thing', usage: 'usage: plsc thing --n N', options: { n: { type: 'string' } } as const, io });
  const ok = recorder();
  assert.equal(await runCommand(spec(ok), ['--n', '3'], ({ values }) => Number(values.n) - 3), 0);
  const help = recorder();
  assert.equal(await runCommand(spec(help), ['-h'], () => 7), 0);
  assert.equal(help.out, 'usage: plsc thing --n N\n');
  const unknown = recorder();
  assert.equal(await runCommand(spec(unknown), ['--m', '1'], () => 0), 2);
  assert.match(unknown.err, /^plsc thing: Unknown option '--m'.*\n\nusage: plsc thing --n N\n$/s);
  const positional = recorder();
  assert.equal(await runCommand(spec(positional), ['extra'], () => 0), 2);
  const usage = recorder();
  assert.equal(await runCommand(spec(usage), [], ({ values }) => integerFlag(required(values.n, 'n'), 'n') ?? 0), 2);
  assert.equal(usage.err, 'plsc thing: --n is required\n\nusage: plsc thing --n N\n');
  const quiet = recorder();
  assert.equal(await runCommand(spec(quiet), [], () => { throw new UsageError('config.yaml: lr: must be a number', false); }), 2);
  assert.equal(quiet.err, 'plsc thing: config.yaml: lr: must be a number\n');
  const failed = recorder();
  assert.equal(await runCommand(spec(failed), [], async () => { throw new Error('disk full'); }), 1);
  assert.equal(failed.err, 'plsc thing: disk full\n');
});
