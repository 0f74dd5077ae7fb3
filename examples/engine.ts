// The engine in a few lines: tensors, autograd, a module, an optimizer, tidy scopes, safetensors.
// Run: npx tsc -p tsconfig.json && node dist/examples/engine.js
import { ops as F, tidy, nn, optim, saveSafetensors, loadSafetensors, manualSeed } from '../src/index.js';

manualSeed(0);
const model = new nn.Sequential(new nn.Linear(2, 16), new nn.ReLU(), new nn.Linear(16, 2));
const optimizer = new optim.SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });

// Two interleaved spirals' worth of toy data: class = sign of x*y.
const inputs = F.mul(F.rand([256, 2]), 2).sub(1);
const labels = F.gt(F.mul(inputs.select(1, 0), inputs.select(1, 1)), 0).long();

for (let step = 0; step < 300; step++) {
  // Every temporary created inside tidy() is freed when it returns (the loss number survives).
  const loss = tidy(() => {
    const l = F.crossEntropy(model.call(inputs), labels);
    l.backward();
    return l.item();
  });
  optimizer.step();
  optimizer.zeroGrad();
  if (step % 100 === 0 || step === 299) console.log(`step ${step} loss ${loss.toFixed(4)}`);
}

const accuracy = tidy(() => F.eq(F.argmax(model.call(inputs), 1), labels).float().mean().item());
console.log(`training accuracy ${accuracy.toFixed(3)}`);

saveSafetensors('/tmp/plsc-example.safetensors', model.stateDict());
model.loadStateDict(loadSafetensors('/tmp/plsc-example.safetensors'));
console.log('saved and reloaded', Object.keys(model.stateDict()).join(', '));
