// The small CNN of `plsc bench engine` and the memory test (same layers as bench/torch_engine.py).
import { nn, Module, type Tensor } from '../src/index.js';

export class SmallCnn extends Module {
  private readonly features: nn.Sequential;
  private readonly fc: nn.Linear;

  constructor(numClasses = 10) {
    super();
    this.features = this.registerModule(
      'features',
      new nn.Sequential(
        new nn.Conv2d(3, 32, 3, { padding: 1, bias: false }),
        new nn.BatchNorm2d(32),
        new nn.ReLU(),
        new nn.MaxPool2d(2),
        new nn.Conv2d(32, 64, 3, { padding: 1, bias: false }),
        new nn.BatchNorm2d(64),
        new nn.ReLU(),
        new nn.MaxPool2d(2),
        new nn.Conv2d(64, 128, 3, { padding: 1, bias: false }),
        new nn.BatchNorm2d(128),
        new nn.ReLU(),
        new nn.AdaptiveAvgPool2d(1),
        new nn.Flatten(),
      ),
    );
    this.fc = this.registerModule('fc', new nn.Linear(128, numClasses));
  }

  forward(images: Tensor): Tensor {
    return this.fc.call(this.features.call(images));
  }
}
