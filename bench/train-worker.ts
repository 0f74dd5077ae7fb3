// A worker of `plsc bench train --nproc N`, started by the launcher: joins the group from the
// torchrun environment, runs the measurements, and rank 0 writes them to PLSC_BENCH_TRAIN_RESULT.
import { writeFileSync } from 'node:fs';
import { destroyProcessGroup, isProcessGroupInitialized } from '../src/index.js';
import { measureBackboneRound, measureWorker, type TrainBenchSettings } from './train-measure.js';

const settingsJson = process.env.PLSC_BENCH_TRAIN;
const resultPath = process.env.PLSC_BENCH_TRAIN_RESULT;
if (settingsJson === undefined || resultPath === undefined) {
  console.error('plsc bench train worker: PLSC_BENCH_TRAIN and PLSC_BENCH_TRAIN_RESULT must be set (this script is started by plsc bench train)');
  process.exit(2);
}
const settings = JSON.parse(settingsJson) as TrainBenchSettings;
const numbers = settings.backboneOnly === true ? await measureBackboneRound(settings) : await measureWorker(settings);
if (Number(process.env.RANK ?? '0') === 0) writeFileSync(resultPath, JSON.stringify(numbers));
if (isProcessGroupInitialized()) destroyProcessGroup();
