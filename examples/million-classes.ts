// PLSC's "few lines": a 1,000,000-class ArcFace classifier whose FC is split over 2 local workers,
// with Partial FC sampling 10% of the class centres per step. Synthetic identities stand in for a
// dataset directory (use setDatasetDir('./train_data') for label.txt, train.rec or class folders).
// Run: npx tsc -p tsconfig.json && node dist/examples/million-classes.js
import { Entry } from '../src/index.js';

const entry = new Entry()
  .setDataset({ type: 'synthetic', numClasses: 1_000_000, imagesPerClass: 2 })
  .setClassNum(1_000_000)
  .setLossType('dist_arcface')
  .setSampleRatio(0.1)
  .setModel('iresnet18')
  .setImageSize(32)
  .setEmbSize(128)
  .setTrainBatchSize(32)
  .setTrainSteps(20)
  .setLogPeriod(5)
  .setWithTest(false)
  .setWorkers(2)
  .setCheckpointDir('output/million/checkpoints')
  .setModelSaveDir('output/million');

const result = await entry.train();
console.log(`loss ${result.losses[0]?.toFixed(3)} -> ${result.losses[result.losses.length - 1]?.toFixed(3)}; checkpoint ${result.lastCheckpoint}`);
