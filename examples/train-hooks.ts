// Training hooks: a callback of your own next to the built-in ones (progress, checkpoints,
// validation, final model, report). This one keeps the loss curve with its learning rates and ends
// the run once the loss has not improved for `patience` steps; the final checkpoint and model are
// still written, and result.stoppedBy says why the run ended.
// Run: npx tsc -p tsconfig.json && node dist/examples/train-hooks.js
import { Entry, Trainer, type TrainHook, type TrainStepState } from '../src/index.js';

class EarlyStopping implements TrainHook {
  readonly curve: Array<{ step: number; loss: number; lr: number }> = [];
  private bestLoss = Infinity;
  private bestStep = 0;

  constructor(
    private readonly patience: number,
    private readonly minImprovement: number,
  ) {}

  onStepEnd(state: TrainStepState): void {
    this.curve.push({ step: state.step, loss: state.loss, lr: state.lr });
    if (state.loss < this.bestLoss * (1 - this.minImprovement)) {
      this.bestLoss = state.loss;
      this.bestStep = state.step;
    } else if (state.step - this.bestStep >= this.patience) {
      state.requestStop(`the loss has not improved on ${this.bestLoss.toFixed(3)} (step ${this.bestStep}) for ${this.patience} steps`);
    }
  }
}

const config = new Entry()
  .setDataset({ type: 'synthetic', numClasses: 50, imagesPerClass: 8 })
  .setClassNum(50)
  .setLossType('arcface')
  .setModel('mobilefacenet')
  .setImageSize(32)
  .setEmbSize(64)
  .setTrainBatchSize(32)
  .setTrainSteps(150)
  .setLr(1.0)
  .setLogPeriod(25)
  .setWithTest(false)
  .setCheckpointDir('output/hooks/checkpoints')
  .setModelSaveDir('output/hooks/model')
  .config();

const earlyStopping = new EarlyStopping(10, 0.01);
const trainer = await Trainer.create(config);
try {
  const result = await trainer.train({ hooks: [earlyStopping] });
  const first = earlyStopping.curve[0];
  const last = earlyStopping.curve[earlyStopping.curve.length - 1];
  console.log(`${earlyStopping.curve.length} steps seen by the hook: loss ${first?.loss.toFixed(3)} -> ${last?.loss.toFixed(3)}, lr ${first?.lr.toFixed(4)} -> ${last?.lr.toFixed(4)}`);
  console.log(`stopped by: ${result.stoppedBy ?? 'none (ran all planned steps)'}`);
  console.log(`model: ${result.modelPath}; last checkpoint: ${result.lastCheckpoint}`);
} finally {
  trainer.dispose();
}
