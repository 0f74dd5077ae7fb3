// A training worker started by Entry.setWorkers(n) / plsc train --nproc: reads the config the parent
// wrote, joins the group from the torchrun environment, trains, and (rank 0) writes the summary.
// It dies with its parent whatever it is doing; a failure is one line (the trace goes to the
// launcher's per-rank log); a SIGINT-stopped run exits with 130 after its checkpoint.
import { readFileSync, writeFileSync } from 'node:fs';
import { resolveConfig } from '../config/train-config.js';
import { Trainer } from './trainer.js';
import { summarize } from './entry.js';
import { watchLauncher } from '../distributed/lifeline.js';
import { describeFailure } from '../cli-kit/failure.js';

watchLauncher();
const configPath = process.env.PLSC_TRAIN_CONFIG;
if (configPath === undefined) {
  console.error('plsc train worker: PLSC_TRAIN_CONFIG is not set (this script is started by plsc train / Entry)');
  process.exit(2);
}
try {
  const config = resolveConfig(JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>);
  const trainer = await Trainer.create(config);
  const result = await trainer.train();
  const resultPath = process.env.PLSC_TRAIN_RESULT;
  if (result.rank === 0 && resultPath) writeFileSync(resultPath, JSON.stringify(summarize(result)));
  trainer.group.destroy();
  if (result.interrupted) process.exitCode = 130;
} catch (error) {
  console.error(describeFailure(`plsc train: rank ${process.env.RANK ?? 0}`, error));
  process.exit(1);
}
