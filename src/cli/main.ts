// `plsc <command>`: dispatches to the command modules, each loaded only when used
// (so `plsc launch` starts fast and never loads libtorch in the launcher process).

export type CommandMain = (argv: string[]) => Promise<number | void>;

interface CommandEntry {
  summary: string;
  load: () => Promise<CommandMain>;
}

const commands: Record<string, CommandEntry> = {
  launch: {
    summary: 'start N workers with torchrun-compatible env: plsc launch --nproc-per-node N -- CMD ...',
    load: async () => (await import('../distributed/cli.js')).launchCommand,
  },
  bench: {
    summary: 'benchmarks: plsc bench engine|comm|head|train|serve [--json]',
    load: async () => (await import('./bench.js')).benchCommand,
  },
  info: {
    summary: 'print libtorch, thread and backend information',
    load: async () => (await import('./info.js')).infoCommand,
  },
};

/** Lets other areas add their commands (train, eval, export, serve, data, reshard). */
export function registerCommand(name: string, summary: string, load: () => Promise<CommandMain>): void {
  commands[name] = { summary, load };
}

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  const lines = Object.entries(commands).map(([name, entry]) => `  ${name.padEnd(width)}  ${entry.summary}`);
  return `usage: plsc <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nplsc <command> --help for a command's options`;
}

export async function main(argv: string[]): Promise<number> {
  await import('./commands.js');
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  const entry = commands[name];
  if (entry === undefined) {
    console.error(`plsc: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  const run = await entry.load();
  const code = await run(rest);
  return typeof code === 'number' ? code : 0;
}
