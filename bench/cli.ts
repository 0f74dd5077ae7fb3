// `plsc bench <name>`: each benchmark prints measurements (JSON with --json) and asserts nothing.
import type { CommandMain } from './main.js';

const benchmarks: Record<string, () => Promise<CommandMain>> = {
  engine: async () => (await import('../../bench/engine.js')).benchEngine,
  head: async () => (await import('../../bench/head.js')).benchHead,
  comm: async () => (await import('../distributed/cli.js')).benchCommCommand,
  serve: async () => (await import('../serve/cli.js')).benchServeCommand,
  train: async () => (await import('../../bench/train.js')).benchTrain,
};

export function registerBenchmark(name: string, load: () => Promise<CommandMain>): void {
  benchmarks[name] = load;
}

export async function benchCommand(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const load = name === undefined ? undefined : benchmarks[name];
  if (load === undefined) {
    console.error(`usage: plsc bench <${Object.keys(benchmarks).join('|')}> [--json]`);
    return 2;
  }
  const code = await (await load())(rest);
  return typeof code === 'number' ? code : 0;
}
