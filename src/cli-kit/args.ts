// What every `plsc` command shares: strict option parsing with -h/--help, typed flag values, and the
// exit codes (0 done, 1 failed, 2 usage error).
import { parseArgs } from 'node:util';
import { describeFailure } from './failure.js';

/** A problem with the command line (a missing, unknown or malformed option): exit code 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    /** Print the command's usage after the message (not for, e.g., a bad config file). */
    readonly showUsage = true,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

interface OptionConfig {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
}
type OptionConfigs = Record<string, OptionConfig>;

const HELP_OPTION = { help: { type: 'boolean', short: 'h' } } as const;

type ParseConfig<T extends OptionConfigs> = { args: string[]; options: T & typeof HELP_OPTION; strict: true; allowPositionals: boolean };
/** The parsed command line: `values` typed from the option table, and `positionals`. */
export type ParsedArgs<T extends OptionConfigs> = ReturnType<typeof parseArgs<ParseConfig<T>>>;

export interface CommandSpec<T extends OptionConfigs> {
  /** As typed after `plsc`, e.g. 'serve' or 'bench serve'. */
  name: string;
  usage: string;
  options: T;
  /** Accept arguments that are not options (default false). */
  positionals?: boolean;
  io?: CommandIO;
}

export interface CommandIO {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

// Through console (looked up per call), like the commands' other output.
const CONSOLE_IO: CommandIO = {
  stdout: { write: (text: string) => console.log(text.replace(/\n$/, '')) },
  stderr: { write: (text: string) => console.error(text.replace(/\n$/, '')) },
};

/** node:util reports unknown and malformed options as errors with an ERR_PARSE_ARGS_* code. */
function isParseArgsError(error: unknown): boolean {
  return String((error as { code?: unknown } | null)?.code ?? '').startsWith('ERR_PARSE_ARGS');
}

/**
 * Parses `argv` against `spec.options` (plus -h/--help) and runs `body` with the result. Returns the
 * exit code: `body`'s own; 0 after printing the usage for --help; 2 after a UsageError or a parse
 * error (message, then the usage); 1 after any other error (its message).
 */
export async function runCommand<T extends OptionConfigs>(
  spec: CommandSpec<T>,
  argv: string[],
  body: (parsed: ParsedArgs<T>) => Promise<number> | number,
): Promise<number> {
  const io = spec.io ?? CONSOLE_IO;
  try {
    let parsed: ParsedArgs<T>;
    try {
      parsed = parseArgs({ args: argv, options: { ...spec.options, ...HELP_OPTION }, strict: true, allowPositionals: spec.positionals ?? false });
    } catch (error) {
      throw isParseArgsError(error) ? new UsageError((error as Error).message) : error;
    }
    if ((parsed.values as { help?: boolean }).help === true) {
      io.stdout.write(`${spec.usage}\n`);
      return 0;
    }
    return await body(parsed);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (error instanceof UsageError) {
      io.stderr.write(`plsc ${spec.name}: ${message}\n${error.showUsage ? `\n${spec.usage}\n` : ''}`);
      return 2;
    }
    io.stderr.write(`${describeFailure(`plsc ${spec.name}`, error)}\n`);
    return 1;
  }
}

/** The value of a required option. */
export function required<V>(value: V | undefined, name: string): V {
  if (value === undefined || value === '') throw new UsageError(`--${name} is required`);
  return value;
}

/** A decimal integer option (digits only) of at least `minimum`, or undefined when absent. */
export function integerFlag(value: string | undefined, name: string, minimum = 1): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!/^\s*[+-]?\d+\s*$/.test(value) || !Number.isSafeInteger(parsed) || parsed < minimum) {
    throw new UsageError(`--${name} must be an integer >= ${minimum}, got '${value}'`);
  }
  return parsed;
}

/** A finite number option, optionally bounded, or undefined when absent. */
export function numberFlag(value: string | undefined, name: string, bounds: { greaterThan?: number; atLeast?: number } = {}): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  const { greaterThan, atLeast } = bounds;
  let ok = value.trim() !== '' && Number.isFinite(parsed);
  if (greaterThan !== undefined) ok &&= parsed > greaterThan;
  if (atLeast !== undefined) ok &&= parsed >= atLeast;
  if (!ok) {
    const range = greaterThan === 0 ? 'a positive number' : greaterThan !== undefined ? `a number > ${greaterThan}` : atLeast !== undefined ? `a number >= ${atLeast}` : 'a number';
    throw new UsageError(`--${name} must be ${range}, got '${value}'`);
  }
  return parsed;
}

/** One of a fixed set of words; `fallback` when absent (required when there is none). */
export function oneOf<W extends string>(value: string | undefined, name: string, allowed: readonly W[], fallback?: W): W {
  if (value === undefined) {
    if (fallback !== undefined) return fallback;
    throw new UsageError(`--${name} is required (${allowed.join(', ')})`);
  }
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')}, got '${value}'`);
  return value as W;
}
