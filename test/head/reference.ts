// A single-process dense reference for the sharded head: all classes in one matrix, plain autograd.
import { ops as F, tidy, type Tensor, CombinedMarginLoss } from '../../src/index.js';

export interface DenseResult {
  loss: number;
  weightGrad: Float32Array;
  biasGrad: Float32Array | null;
  embeddingGrad: Float32Array;
}

/** Loss and gradients of the full head: embeddings [B, D], weight [C, D], labels [B]. */
export function denseReference(
  embeddings: Float32Array,
  weight: Float32Array,
  labels: number[],
  shape: { batch: number; dim: number; classes: number },
  margin: CombinedMarginLoss,
  bias: Float32Array | null = null,
): DenseResult {
  return tidy(() => {
    const x = F.tensor(embeddings, { shape: [shape.batch, shape.dim] }).requiresGrad_();
    const w = F.tensor(weight, { shape: [shape.classes, shape.dim] }).requiresGrad_();
    const b = bias ? F.tensor(bias).requiresGrad_() : null;
    const target = F.tensor(labels, { dtype: 'int64' });
    let logits: Tensor;
    if (margin.normalized) {
      const cos = F.clamp(F.mm(F.normalize(x, 2, 1), F.normalize(w, 2, 1).t()), -1, 1);
      const targetCos = F.gather(cos, 1, F.unsqueeze(target, 1));
      const shifted = F.sub(margin.target(targetCos), targetCos);
      const onehot = F.oneHot(target, shape.classes).float();
      logits = F.mul(F.add(cos, F.mul(onehot, shifted)), margin.s);
    } else {
      logits = F.linear(x, w, b);
    }
    const loss = F.crossEntropy(logits, target);
    loss.backward();
    return {
      loss: loss.item(),
      weightGrad: w.grad?.dataSync() as Float32Array,
      biasGrad: b ? (b.grad?.dataSync() as Float32Array) : null,
      embeddingGrad: x.grad?.dataSync() as Float32Array,
    };
  });
}

export function maxRelativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != ${expected.length}`);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i] as number));
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs((actual[i] as number) - (expected[i] as number)));
  return worst / Math.max(scale, 1e-30);
}
