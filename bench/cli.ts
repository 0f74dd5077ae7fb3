// `plsc bench <name>`: each benchmark prints measurements (JSON with --json) and asserts nothing.
// bin/plsc.js hands BENCH_COMMAND to the CLI's command table (src never imports bench/).
import type { CommandEntry, CommandMain } from '../src/cli/commands.js';

const BENCHMARKS: Record<string, () => Promise<CommandMain>> = {
  engine: async () => (await import('./engine.js')).benchEngine,
  head: async () => (await import('./head.js')).benchHead,
  comm: async () => (await import('./comm-cli.js')).benchCommCommand,
  serve: async () => (await import('./serve.js')).benchServeCommand,
  train: async () => (await import('./train.js')).benchTrain,
  eval: async () => (await import('./eval-embed.js')).benchEvalCommand,
};

function usage(): string {
  return `usage: plsc bench <${Object.keys(BENCHMARKS).join('|')}> [--json]`;
}

/** `plsc bench <name> ...`: runs one benchmark; --help lists them. */
export async function benchCommand(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--help' || name === '-h' || name === 'help') {
    console.log(`${usage()}\n\nplsc bench <name> --help for a benchmark's options`);
    return 0;
  }
  const load = name === undefined ? undefined : BENCHMARKS[name];
  if (load === undefined) {
    console.error(usage());
    return 2;
  }
  const code = await (await load())(rest);
  return typeof code === 'number' ? code : 0;
}

export const BENCH_COMMAND: CommandEntry = {
  name: 'bench',
  summary: 'benchmarks: plsc bench engine|comm|head|train|serve|eval [--json]',
  load: async () => benchCommand,
};
