// `plsc <command>`: looks the command up in the table of src/cli/commands.ts and runs it.
import { plscCommands, type CommandEntry } from './commands.js';

function usage(commands: readonly CommandEntry[]): string {
  const width = Math.max(...commands.map((entry) => entry.name.length));
  const lines = commands.map((entry) => `  ${entry.name.padEnd(width)}  ${entry.summary}`);
  return `usage: plsc <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nplsc <command> --help for a command's options`;
}

/** Runs `plsc ...argv`; `bench` is the `plsc bench` entry (bin/plsc.js passes bench/cli.ts's). Returns the exit code. */
export async function main(argv: string[], bench?: CommandEntry): Promise<number> {
  const commands = plscCommands(bench);
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage(commands));
    return name === undefined ? 2 : 0;
  }
  const entry = commands.find((command) => command.name === name);
  if (entry === undefined) {
    console.error(`plsc: unknown command '${name}'\n\n${usage(commands)}`);
    return 2;
  }
  const run = await entry.load();
  const code = await run(rest);
  return typeof code === 'number' ? code : 0;
}
