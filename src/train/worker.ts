// A training worker started by Entry.setWorkers(n) / plsc train --nproc: reads the config the parent
// wrote, joins the group from the torchrun environment, trains, and (rank 0) writes the summary.
import { readFileSync, writeFileSync } from 'node:fs';
import { resolveConfig } from './config.js';
import { Trainer } from './trainer.js';
import { summarize } from './entry.js';

const configPath = process.env.PLSC_TRAIN_CONFIG;
if (configPath === undefined) {
  console.error('plsc train worker: PLSC_TRAIN_CONFIG is not set (this script is started by plsc train / Entry)');
  process.exit(2);
}
const config = resolveConfig(JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>);
const trainer = await Trainer.create(config);
const result = await trainer.train();
const resultPath = process.env.PLSC_TRAIN_RESULT;
if (result.rank === 0 && resultPath) writeFileSync(resultPath, JSON.stringify(summarize(result)));
trainer.group.destroy();
