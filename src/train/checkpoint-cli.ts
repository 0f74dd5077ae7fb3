// `plsc checkpoint verify DIR`: one line per checkpoint file; exit 1 when any file has a problem.
import { relative } from 'node:path';
import { UsageError, runCommand, type CommandIO } from '../cli-kit/args.js';

const CHECKPOINT_USAGE = `usage: plsc checkpoint verify DIR

  DIR   a checkpoint step directory (step-00001200/), or a checkpoint root: every complete step in it

Checks every file of the checkpoint: meta.json readable; each file's size and sha256 against what
meta.json records (checkpoints saved before digests were recorded are checked without them, with a
note); each safetensors header; every tensor's values finite (no NaN or Inf); each FC shard's rows.
Prints one line per file; exit code 0 when all are sound, 1 when any is not, 2 for a usage error.`;

/** `plsc checkpoint <subcommand>`. */
export async function checkpointCommand(argv: string[], io?: CommandIO): Promise<number> {
  const [sub, ...rest] = argv;
  const subcommand = sub === 'verify' ? rest : argv;
  return runCommand({ name: 'checkpoint verify', usage: CHECKPOINT_USAGE, options: {}, positionals: true, ...(io ? { io } : {}) }, subcommand, async ({ positionals }) => {
    if (sub !== 'verify') throw new UsageError(sub === undefined ? 'expected a subcommand: verify' : `unknown subcommand '${sub}' (the one there is: verify)`);
    if (positionals.length !== 1) throw new UsageError(`expected one checkpoint directory, got ${positionals.length}`);
    const { verifyCheckpoints } = await import('./checkpoint-verify.js');
    const out = io?.stdout ?? { write: (text: string) => process.stdout.write(text) };
    const root = positionals[0] as string;
    const checks = verifyCheckpoints(root);
    let problems = 0;
    for (const check of checks) {
      const where = relative(root, check.dir);
      for (const file of check.files) {
        if (!file.ok) problems++;
        out.write(`${file.ok ? 'ok  ' : 'FAIL'}  ${where === '' ? file.file : `${where}/${file.file}`}  ${file.detail}\n`);
      }
      if (check.unrecordedDigests) out.write(`note  ${where === '' ? check.dir : where}: meta.json records no digests (saved before plsc recorded them): sizes and sha256 could not be checked\n`);
    }
    const files = checks.reduce((n, c) => n + c.files.length, 0);
    out.write(problems === 0 ? `checkpoint verify: ${files} files in ${checks.length} checkpoint${checks.length === 1 ? '' : 's'} are sound\n` : `checkpoint verify: ${problems} of ${files} files have problems\n`);
    return problems === 0 ? 0 : 1;
  });
}
