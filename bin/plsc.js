#!/usr/bin/env node
import { main } from '../dist/src/cli/main.js';
import { BENCH_COMMAND } from '../dist/bench/cli.js';

main(process.argv.slice(2), BENCH_COMMAND).then(
  (code) => process.exit(code ?? 0),
  (err) => {
    console.error(`plsc: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
