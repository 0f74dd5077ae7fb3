// A small IR-style face CNN with random weights, built with the ONNX emitters. Used by
// `plsc bench serve` and the serving tests, where only the shape of the work matters.
import { OnnxGraphBuilder } from '../src/onnx/builder.js';
import { emitAdd, emitBatchNorm, emitConv2d, emitDropout, emitFlatten, emitLinear, emitPRelu } from '../src/onnx/layers.js';

export interface TinyFaceModelOptions {
  /** Square input side (default 112, like the real backbones). */
  inputSize?: number;
  /** Embedding dimension (default 128). */
  embeddingDim?: number;
  /** Channels of the stem and first stage; later stages use 2x and 4x (default 8). */
  width?: number;
  seed?: number;
  opset?: number;
}

function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Build the model; returns ONNX bytes with input 'input' [N, 3, S, S] and output 'embedding' [N, D]. */
export function buildTinyFaceModel(options: TinyFaceModelOptions = {}): Uint8Array {
  const size = options.inputSize ?? 112;
  const dim = options.embeddingDim ?? 128;
  const width = options.width ?? 8;
  if (size % 8 !== 0 || size < 8) throw new Error(`tiny model: inputSize must be a positive multiple of 8, got ${size}`);
  const next = random(options.seed ?? 1);
  const uniform = (length: number, scale: number, offset = 0) => Float32Array.from({ length }, () => offset + (next() * 2 - 1) * scale);
  const bn = (name: string, channels: number) => ({
    name,
    weight: uniform(channels, 0.1, 1),
    bias: uniform(channels, 0.1),
    runningMean: uniform(channels, 0.1),
    runningVar: uniform(channels, 0.1, 1),
    eps: 1e-5,
  });
  const conv = (name: string, inC: number, outC: number, kernel: number, stride: number) => ({
    name,
    weight: uniform(outC * inC * kernel * kernel, Math.sqrt(6 / (inC * kernel * kernel))),
    weightShape: [outC, inC, kernel, kernel] as [number, number, number, number],
    stride,
    padding: (kernel - 1) / 2,
  });

  const g = new OnnxGraphBuilder('tiny_iresnet');
  let x = g.input('input', 'float32', ['N', 3, size, size]);
  x = emitConv2d(g, x, conv('conv1', 3, width, 3, 1));
  x = emitBatchNorm(g, x, bn('bn1', width));
  x = emitPRelu(g, x, { name: 'prelu', slope: new Float32Array(width).fill(0.25) });
  let channels = width;
  [width, 2 * width, 4 * width].forEach((outC, stage) => {
    const name = `layer${stage + 1}.0`;
    let y = emitBatchNorm(g, x, bn(`${name}.bn1`, channels));
    y = emitConv2d(g, y, conv(`${name}.conv1`, channels, outC, 3, 1));
    y = emitBatchNorm(g, y, bn(`${name}.bn2`, outC));
    y = emitPRelu(g, y, { name: `${name}.prelu`, slope: new Float32Array(outC).fill(0.25) });
    y = emitConv2d(g, y, conv(`${name}.conv2`, outC, outC, 3, 2));
    y = emitBatchNorm(g, y, bn(`${name}.bn3`, outC));
    let shortcut = emitConv2d(g, x, conv(`${name}.downsample.0`, channels, outC, 1, 2));
    shortcut = emitBatchNorm(g, shortcut, bn(`${name}.downsample.1`, outC));
    x = emitAdd(g, y, shortcut, name);
    channels = outC;
  });
  x = emitBatchNorm(g, x, bn('bn2', channels));
  x = emitDropout(g, x);
  x = emitFlatten(g, x);
  const features = channels * (size / 8) * (size / 8);
  x = emitLinear(g, x, { name: 'fc', weight: uniform(dim * features, Math.sqrt(3 / features)), weightShape: [dim, features], bias: uniform(dim, 0.01) });
  x = emitBatchNorm(g, x, bn('features', dim));
  g.node('Identity', [x], ['embedding']);
  g.output('embedding', 'float32', ['N', dim]);
  return g.toBytes({ opset: options.opset ?? 17, metadata: { producer: 'plsc tiny face model (random weights)' } });
}
