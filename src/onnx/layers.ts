// Emitters for the layers our face backbones use. Each takes the builder, the name of its input
// value and the layer's raw weights, adds initializers and nodes, and returns the output value's
// name, so an nn Module can export itself as `x = emitConv2d(g, x, {...})`. Semantics follow
// PyTorch (NCHW, OIHW conv weights, Linear weight [out, in]) so module weights go in unchanged.
import { onnxAttr, type Float16Data, type OnnxGraphBuilder } from './builder.js';

export type OnnxWeightData = Float32Array | Float16Data;
export type OnnxPair = number | readonly [number, number];

function pair(value: OnnxPair | undefined, fallback: number, what: string): [number, number] {
  const result: [number, number] = value === undefined ? [fallback, fallback] : typeof value === 'number' ? [value, value] : [value[0], value[1]];
  for (const item of result) {
    if (!Number.isInteger(item) || item < 0) throw new Error(`${what} must be non-negative integers, got ${JSON.stringify(value)}`);
  }
  return result;
}

function weightLength(data: OnnxWeightData): number {
  return data instanceof Float32Array ? data.length : data.float16.length;
}

function checkLength(data: OnnxWeightData, expected: number, what: string): void {
  const length = weightLength(data);
  if (length !== expected) throw new Error(`${what}: expected ${expected} values, got ${length}`);
}

/**
 * Add a float weight. fp16 weights are stored as float16 (half the file size) followed by a Cast
 * to float32, which onnxruntime folds once at load time.
 */
export function emitWeight(g: OnnxGraphBuilder, name: string, data: OnnxWeightData, dims: readonly number[]): string {
  if (data instanceof Float32Array) return g.initializer(g.freshName(name), data, dims);
  const stored = g.initializer(g.freshName(`${name}_fp16`), data, dims);
  const cast = g.freshName(name);
  g.node('Cast', [stored], [cast], { to: 1 });
  return cast;
}

export interface OnnxConv2dParams {
  /** Value-name prefix for the initializers and outputs (e.g. the module path 'layer1.0.conv1'). */
  name?: string;
  /** OIHW: [outChannels, inChannels / groups, kernelH, kernelW]. */
  weight: OnnxWeightData;
  weightShape: readonly [number, number, number, number];
  bias?: OnnxWeightData;
  stride?: OnnxPair;
  /** Symmetric zero padding (PyTorch style): p or [pH, pW]. */
  padding?: OnnxPair;
  dilation?: OnnxPair;
  groups?: number;
}

export function emitConv2d(g: OnnxGraphBuilder, input: string, params: OnnxConv2dParams): string {
  const prefix = params.name ?? 'conv';
  const [outChannels, inPerGroup, kernelH, kernelW] = params.weightShape;
  checkLength(params.weight, outChannels * inPerGroup * kernelH * kernelW, `${prefix}.weight [${params.weightShape.join(', ')}]`);
  const groups = params.groups ?? 1;
  if (!Number.isInteger(groups) || groups < 1 || outChannels % groups !== 0) {
    throw new Error(`${prefix}: groups must be a positive divisor of outChannels ${outChannels}, got ${groups}`);
  }
  const [strideH, strideW] = pair(params.stride, 1, `${prefix}: stride`);
  const [padH, padW] = pair(params.padding, 0, `${prefix}: padding`);
  const [dilationH, dilationW] = pair(params.dilation, 1, `${prefix}: dilation`);
  const inputs = [input, emitWeight(g, `${prefix}.weight`, params.weight, params.weightShape)];
  if (params.bias) {
    checkLength(params.bias, outChannels, `${prefix}.bias`);
    inputs.push(emitWeight(g, `${prefix}.bias`, params.bias, [outChannels]));
  }
  const output = g.freshName(`${prefix}.out`);
  g.node('Conv', inputs, [output], {
    kernel_shape: onnxAttr.ints([kernelH, kernelW]),
    strides: onnxAttr.ints([strideH, strideW]),
    pads: onnxAttr.ints([padH, padW, padH, padW]),
    dilations: onnxAttr.ints([dilationH, dilationW]),
    group: onnxAttr.int(groups),
  });
  return output;
}

export interface OnnxBatchNormParams {
  name?: string;
  /** Running mean and variance (inference form), length C. */
  runningMean: OnnxWeightData;
  runningVar: OnnxWeightData;
  /** gamma (affine weight); ones when the layer has affine=False. */
  weight?: OnnxWeightData;
  /** beta (affine bias); zeros when the layer has affine=False. */
  bias?: OnnxWeightData;
  eps?: number;
}

/** Inference-mode BatchNormalization over axis 1; works on [N, C] (BatchNorm1d) and [N, C, H, W] inputs. */
export function emitBatchNorm(g: OnnxGraphBuilder, input: string, params: OnnxBatchNormParams): string {
  const prefix = params.name ?? 'bn';
  const channels = weightLength(params.runningMean);
  checkLength(params.runningVar, channels, `${prefix}.running_var`);
  const scale = params.weight ?? new Float32Array(channels).fill(1);
  const shift = params.bias ?? new Float32Array(channels);
  checkLength(scale, channels, `${prefix}.weight`);
  checkLength(shift, channels, `${prefix}.bias`);
  const output = g.freshName(`${prefix}.out`);
  g.node(
    'BatchNormalization',
    [
      input,
      emitWeight(g, `${prefix}.weight`, scale, [channels]),
      emitWeight(g, `${prefix}.bias`, shift, [channels]),
      emitWeight(g, `${prefix}.running_mean`, params.runningMean, [channels]),
      emitWeight(g, `${prefix}.running_var`, params.runningVar, [channels]),
    ],
    [output],
    { epsilon: onnxAttr.float(params.eps ?? 1e-5) },
  );
  return output;
}

export interface OnnxPReluParams {
  name?: string;
  /** One slope per channel (length C) or a single shared slope (length 1). */
  slope: OnnxWeightData;
  /** Rank of the input: 4 for [N, C, H, W] (slope stored as [C, 1, 1] so it broadcasts over H, W), 2 for [N, C]. */
  inputRank?: number;
}

export function emitPRelu(g: OnnxGraphBuilder, input: string, params: OnnxPReluParams): string {
  const prefix = params.name ?? 'prelu';
  const channels = weightLength(params.slope);
  const rank = params.inputRank ?? 4;
  if (!Number.isInteger(rank) || rank < 2) throw new Error(`${prefix}: inputRank must be an integer >= 2, got ${rank}`);
  // ONNX broadcasting aligns trailing axes, so a per-channel slope needs trailing singleton axes.
  const dims = channels === 1 ? [1] : [channels, ...new Array<number>(rank - 2).fill(1)];
  const output = g.freshName(`${prefix}.out`);
  g.node('PRelu', [input, emitWeight(g, `${prefix}.weight`, params.slope, dims)], [output]);
  return output;
}

export function emitRelu(g: OnnxGraphBuilder, input: string, name = 'relu'): string {
  const output = g.freshName(`${name}.out`);
  g.node('Relu', [input], [output]);
  return output;
}

export interface OnnxLinearParams {
  name?: string;
  /** PyTorch layout [outFeatures, inFeatures]. */
  weight: Float32Array;
  weightShape: readonly [number, number];
  bias?: Float32Array;
  /**
   * 'gemm' (default): Gemm with transB=1, input must be 2-D [N, in].
   * 'matmul': MatMul with a pre-transposed [in, out] weight then Add, works on any rank >= 2.
   */
  mode?: 'gemm' | 'matmul';
}

export function emitLinear(g: OnnxGraphBuilder, input: string, params: OnnxLinearParams): string {
  const prefix = params.name ?? 'fc';
  const [outFeatures, inFeatures] = params.weightShape;
  checkLength(params.weight, outFeatures * inFeatures, `${prefix}.weight [${outFeatures}, ${inFeatures}]`);
  if (params.bias) checkLength(params.bias, outFeatures, `${prefix}.bias`);
  const output = g.freshName(`${prefix}.out`);
  if ((params.mode ?? 'gemm') === 'gemm') {
    const inputs = [input, g.initializer(g.freshName(`${prefix}.weight`), params.weight, [outFeatures, inFeatures])];
    if (params.bias) inputs.push(g.initializer(g.freshName(`${prefix}.bias`), params.bias, [outFeatures]));
    g.node('Gemm', inputs, [output], { alpha: onnxAttr.float(1), beta: onnxAttr.float(1), transB: onnxAttr.int(1) });
    return output;
  }
  const transposed = new Float32Array(inFeatures * outFeatures);
  for (let o = 0; o < outFeatures; o++) {
    for (let i = 0; i < inFeatures; i++) transposed[i * outFeatures + o] = params.weight[o * inFeatures + i]!;
  }
  const weight = g.initializer(g.freshName(`${prefix}.weight_t`), transposed, [inFeatures, outFeatures]);
  if (!params.bias) {
    g.node('MatMul', [input, weight], [output]);
    return output;
  }
  const product = g.freshName(`${prefix}.matmul`);
  g.node('MatMul', [input, weight], [product]);
  g.node('Add', [product, g.initializer(g.freshName(`${prefix}.bias`), params.bias, [outFeatures])], [output]);
  return output;
}

/** Flatten to 2-D: [d0 * ... * d(axis-1), d(axis) * ...]; axis 1 keeps the batch axis. */
export function emitFlatten(g: OnnxGraphBuilder, input: string, axis = 1, name = 'flatten'): string {
  const output = g.freshName(`${name}.out`);
  g.node('Flatten', [input], [output], { axis: onnxAttr.int(axis) });
  return output;
}

/** Reshape with ONNX semantics: 0 copies the input dimension, -1 is inferred. */
export function emitReshape(g: OnnxGraphBuilder, input: string, shape: readonly number[], name = 'reshape'): string {
  const output = g.freshName(`${name}.out`);
  g.node('Reshape', [input, g.int64Initializer(g.freshName(`${name}.shape`), shape)], [output]);
  return output;
}

/** Dropout is the identity at inference, so nothing is emitted and the input flows through. */
export function emitDropout(_g: OnnxGraphBuilder, input: string): string {
  return input;
}

/** Elementwise sum with broadcasting (residual connections). */
export function emitAdd(g: OnnxGraphBuilder, left: string, right: string, name = 'add'): string {
  const output = g.freshName(`${name}.out`);
  g.node('Add', [left, right], [output]);
  return output;
}

export interface OnnxPool2dParams {
  name?: string;
  kernelSize: OnnxPair;
  /** Defaults to kernelSize, as in PyTorch. */
  stride?: OnnxPair;
  padding?: OnnxPair;
  ceilMode?: boolean;
}

function poolAttributes(params: OnnxPool2dParams, what: string) {
  const [kernelH, kernelW] = pair(params.kernelSize, 1, `${what}: kernelSize`);
  const [strideH, strideW] = pair(params.stride ?? params.kernelSize, 1, `${what}: stride`);
  const [padH, padW] = pair(params.padding, 0, `${what}: padding`);
  return {
    kernel_shape: onnxAttr.ints([kernelH, kernelW]),
    strides: onnxAttr.ints([strideH, strideW]),
    pads: onnxAttr.ints([padH, padW, padH, padW]),
    ceil_mode: onnxAttr.int(params.ceilMode ? 1 : 0),
  };
}

export function emitMaxPool2d(g: OnnxGraphBuilder, input: string, params: OnnxPool2dParams & { dilation?: OnnxPair }): string {
  const prefix = params.name ?? 'maxpool';
  const [dilationH, dilationW] = pair(params.dilation, 1, `${prefix}: dilation`);
  const output = g.freshName(`${prefix}.out`);
  g.node('MaxPool', [input], [output], { ...poolAttributes(params, prefix), dilations: onnxAttr.ints([dilationH, dilationW]) });
  return output;
}

/** Average pooling; countIncludePad defaults to true (PyTorch's default; ONNX's is false). */
export function emitAvgPool2d(g: OnnxGraphBuilder, input: string, params: OnnxPool2dParams & { countIncludePad?: boolean }): string {
  const prefix = params.name ?? 'avgpool';
  const output = g.freshName(`${prefix}.out`);
  g.node('AveragePool', [input], [output], { ...poolAttributes(params, prefix), count_include_pad: onnxAttr.int(params.countIncludePad === false ? 0 : 1) });
  return output;
}

/** [N, C, H, W] -> [N, C, 1, 1] mean over H and W. */
export function emitGlobalAvgPool(g: OnnxGraphBuilder, input: string, name = 'gap'): string {
  const output = g.freshName(`${name}.out`);
  g.node('GlobalAveragePool', [input], [output]);
  return output;
}

/** x / ||x||_2 along `axis` (default 1, the embedding axis of [N, D]). */
export function emitL2Normalize(g: OnnxGraphBuilder, input: string, axis = 1, name = 'l2norm'): string {
  const output = g.freshName(`${name}.out`);
  g.node('LpNormalization', [input], [output], { axis: onnxAttr.int(axis), p: onnxAttr.int(2) });
  return output;
}
