// ONNX export of a Backbone in inference form: each module type has an emitter that writes its
// nodes with the layer emitters of src/onnx (BatchNormalization nodes with the running
// statistics, Dropout omitted), giving input `input` [N, ...inputShape] float32 and output
// `embedding` [N, D]. Custom modules export through registerOnnxEmitter or an `emitOnnx` method.
import type { Tensor } from '../torch/tensor.js';
import type { AnyModule } from '../torch/nn/module.js';
import { Conv2d } from '../torch/nn/conv.js';
import { BatchNorm1d, BatchNorm2d } from '../torch/nn/batchnorm.js';
import { PReLU, ReLU } from '../torch/nn/activation.js';
import { Linear } from '../torch/nn/linear.js';
import { Dropout } from '../torch/nn/dropout.js';
import { Flatten, Identity } from '../torch/nn/shape.js';
import { Sequential } from '../torch/nn/sequential.js';
import { AdaptiveAvgPool2d, AvgPool2d, MaxPool2d } from '../torch/nn/pooling.js';
import { MAX_OPSET, MIN_OPSET, OnnxGraphBuilder, type OnnxDim } from '../onnx/builder.js';
import {
  emitAdd,
  emitAvgPool2d,
  emitBatchNorm,
  emitConv2d,
  emitFlatten,
  emitGlobalAvgPool,
  emitL2Normalize,
  emitLinear,
  emitMaxPool2d,
  emitPRelu,
  emitRelu,
  emitReshape,
} from '../onnx/layers.js';
import type { Backbone } from './backbone.js';
import { IBasicBlock, IResNet } from './iresnet.js';
import { MfnConvBlock, MfnDepthWise, MfnGDC, MfnLinearBlock, MfnResidual, MobileFaceNet } from './mobilefacenet.js';
import { FeatureMLP } from './feature-mlp.js';
import { FoldedConv2d, FoldedLinear, InferenceBatchNorm, InferenceChain, InferenceResidual } from './folded-modules.js';
import { FoldedBackbone, canFoldBatchNorm, foldBatchNorm } from './fold-batch-norm.js';
import { positiveInteger } from '../util/validate.js';

/** A value in the graph being built: its name and its rank (number of dimensions). */
export interface OnnxValue {
  name: string;
  rank: number;
}

export interface OnnxExportContext {
  readonly graph: OnnxGraphBuilder;
  /** Emits `module` (found by its emitter) on `input`; `path` is its dotted module name, used for value names. */
  emit(module: AnyModule, input: OnnxValue, path: string): OnnxValue;
  /** A float32 copy of a tensor's values (CPU, contiguous, row-major). */
  data(tensor: Tensor): Float32Array;
}

/** Writes the nodes of one module type. */
export type OnnxModuleEmitter<M extends AnyModule = AnyModule> = (context: OnnxExportContext, module: M, input: OnnxValue, path: string) => OnnxValue;

/** A module that knows how to export itself (checked before the emitter registry). */
export interface OnnxExportable {
  emitOnnx(context: OnnxExportContext, input: OnnxValue, path: string): OnnxValue;
}

type ModuleClass<M extends AnyModule> = abstract new (...args: never[]) => M;

const emitters = new Map<unknown, OnnxModuleEmitter>();

/**
 * Registers the emitter for modules whose class is exactly `moduleClass` (subclasses need their own
 * registration, since they may compute something else). Replaces an earlier registration.
 */
export function registerOnnxEmitter<M extends AnyModule>(moduleClass: ModuleClass<M>, emitter: OnnxModuleEmitter<M>): void {
  if (typeof moduleClass !== 'function') throw new Error('registerOnnxEmitter: moduleClass must be a class');
  emitters.set(moduleClass, emitter as unknown as OnnxModuleEmitter);
}

/** The dotted module path of `child` under `path` ('' is the root): use it when emitting children. */
export function onnxPath(path: string, child: string): string {
  return path === '' ? child : `${path}.${child}`;
}
const join = onnxPath;

function valueName(path: string, fallback: string): string {
  return path === '' ? fallback : path;
}

function hasEmitMethod(module: AnyModule): module is AnyModule & OnnxExportable {
  return typeof (module as Partial<OnnxExportable>).emitOnnx === 'function';
}

function requireRank(module: AnyModule, path: string, input: OnnxValue, ranks: readonly number[]): void {
  if (!ranks.includes(input.rank)) {
    throw new Error(`ONNX export: ${module.typeName} at '${path || '<root>'}' expects a rank ${ranks.join(' or ')} input, got rank ${input.rank}`);
  }
}

// ---- emitters of the nn layers -----------------------------------------------------------------

registerOnnxEmitter(Conv2d, (ctx, conv, input, path) => {
  requireRank(conv, path, input, [4]);
  const bias = conv.bias;
  const name = emitConv2d(ctx.graph, input.name, {
    name: valueName(path, 'conv'),
    weight: ctx.data(conv.weight),
    weightShape: [conv.outChannels, conv.inChannels / conv.groups, conv.kernelSize[0], conv.kernelSize[1]],
    ...(bias !== null ? { bias: ctx.data(bias) } : {}),
    stride: conv.stride,
    padding: conv.padding,
    dilation: conv.dilation,
    groups: conv.groups,
  });
  return { name, rank: 4 };
});

function emitBatchNormModule(ctx: OnnxExportContext, bn: BatchNorm1d | BatchNorm2d, input: OnnxValue, path: string): OnnxValue {
  const runningMean = bn.runningMean;
  const runningVar = bn.runningVar;
  if (runningMean === null || runningVar === null) {
    throw new Error(`ONNX export: ${bn.typeName} at '${path || '<root>'}' has trackRunningStats=false, so its inference output depends on the batch; it cannot be exported as BatchNormalization`);
  }
  const weight = bn.weight;
  const bias = bn.bias;
  const name = emitBatchNorm(ctx.graph, input.name, {
    name: valueName(path, 'bn'),
    runningMean: ctx.data(runningMean),
    runningVar: ctx.data(runningVar),
    ...(weight !== null ? { weight: ctx.data(weight) } : {}),
    ...(bias !== null ? { bias: ctx.data(bias) } : {}),
    eps: bn.eps,
  });
  return { name, rank: input.rank };
}

registerOnnxEmitter(BatchNorm2d, (ctx, bn, input, path) => {
  requireRank(bn, path, input, [4]);
  return emitBatchNormModule(ctx, bn, input, path);
});

registerOnnxEmitter(BatchNorm1d, (ctx, bn, input, path) => {
  requireRank(bn, path, input, [2, 3]);
  return emitBatchNormModule(ctx, bn, input, path);
});

registerOnnxEmitter(PReLU, (ctx, prelu, input, path) => {
  if (input.rank < 2 && prelu.numSlopes !== 1) requireRank(prelu, path, input, [2, 3, 4]);
  const name = emitPRelu(ctx.graph, input.name, { name: valueName(path, 'prelu'), slope: ctx.data(prelu.weight), inputRank: Math.max(2, input.rank) });
  return { name, rank: input.rank };
});

registerOnnxEmitter(ReLU, (ctx, _relu, input, path) => ({ name: emitRelu(ctx.graph, input.name, valueName(path, 'relu')), rank: input.rank }));

registerOnnxEmitter(Linear, (ctx, linear, input, path) => {
  if (input.rank < 2) requireRank(linear, path, input, [2]);
  const bias = linear.bias;
  const name = emitLinear(ctx.graph, input.name, {
    name: valueName(path, 'fc'),
    weight: ctx.data(linear.weight),
    weightShape: [linear.outFeatures, linear.inFeatures],
    ...(bias !== null ? { bias: ctx.data(bias) } : {}),
    mode: input.rank === 2 ? 'gemm' : 'matmul',
  });
  return { name, rank: input.rank };
});

registerOnnxEmitter(Flatten, (ctx, flatten, input, path) => {
  const normalize = (dim: number) => (dim < 0 ? dim + input.rank : dim);
  const start = normalize(flatten.startDim);
  const end = normalize(flatten.endDim);
  if (start < 0 || start >= input.rank || end !== input.rank - 1 || start > end) {
    throw new Error(`ONNX export: Flatten(${flatten.startDim}, ${flatten.endDim}) at '${path || '<root>'}' on a rank ${input.rank} input is not supported (only flattening through the last dimension)`);
  }
  if (start === end) return input;
  if (start === 1) return { name: emitFlatten(ctx.graph, input.name, 1, valueName(path, 'flatten')), rank: 2 };
  const shape = [...new Array<number>(start).fill(0), -1];
  return { name: emitReshape(ctx.graph, input.name, shape, valueName(path, 'flatten')), rank: start + 1 };
});

registerOnnxEmitter(Dropout, (_ctx, _dropout, input) => input);
registerOnnxEmitter(Identity, (_ctx, _identity, input) => input);

registerOnnxEmitter(Sequential, (ctx, sequential, input, path) => {
  let x = input;
  for (const [name, child] of sequential.namedChildren()) x = ctx.emit(child, x, join(path, name));
  return x;
});

registerOnnxEmitter(MaxPool2d, (ctx, pool, input, path) => {
  requireRank(pool, path, input, [4]);
  const name = emitMaxPool2d(ctx.graph, input.name, { name: valueName(path, 'maxpool'), kernelSize: pool.kernelSize, stride: pool.stride, padding: pool.padding, ceilMode: pool.ceilMode });
  return { name, rank: 4 };
});

registerOnnxEmitter(AvgPool2d, (ctx, pool, input, path) => {
  requireRank(pool, path, input, [4]);
  const name = emitAvgPool2d(ctx.graph, input.name, { name: valueName(path, 'avgpool'), kernelSize: pool.kernelSize, stride: pool.stride, padding: pool.padding, ceilMode: pool.ceilMode });
  return { name, rank: 4 };
});

registerOnnxEmitter(AdaptiveAvgPool2d, (ctx, pool, input, path) => {
  requireRank(pool, path, input, [4]);
  if (pool.outputSize[0] !== 1 || pool.outputSize[1] !== 1) {
    throw new Error(`ONNX export: AdaptiveAvgPool2d at '${path || '<root>'}' with output size [${pool.outputSize.join(', ')}] is not supported (only [1, 1], global average pooling)`);
  }
  return { name: emitGlobalAvgPool(ctx.graph, input.name, valueName(path, 'gap')), rank: 4 };
});

// ---- emitters of the backbones -----------------------------------------------------------------

registerOnnxEmitter(IBasicBlock, (ctx, block, input, path) => {
  requireRank(block, path, input, [4]);
  let out = ctx.emit(block.bn1, input, join(path, 'bn1'));
  out = ctx.emit(block.conv1, out, join(path, 'conv1'));
  out = ctx.emit(block.bn2, out, join(path, 'bn2'));
  out = ctx.emit(block.prelu, out, join(path, 'prelu'));
  out = ctx.emit(block.conv2, out, join(path, 'conv2'));
  out = ctx.emit(block.bn3, out, join(path, 'bn3'));
  const identity = block.downsample === null ? input : ctx.emit(block.downsample, input, join(path, 'downsample'));
  return { name: emitAdd(ctx.graph, out.name, identity.name, valueName(path, 'residual')), rank: 4 };
});

registerOnnxEmitter(IResNet, (ctx, net, input, path) => {
  requireRank(net, path, input, [4]);
  let x = ctx.emit(net.conv1, input, join(path, 'conv1'));
  x = ctx.emit(net.bn1, x, join(path, 'bn1'));
  x = ctx.emit(net.prelu, x, join(path, 'prelu'));
  net.stages.forEach((stage, i) => {
    x = ctx.emit(stage, x, join(path, `layer${i + 1}`));
  });
  x = ctx.emit(net.bn2, x, join(path, 'bn2'));
  x = { name: emitFlatten(ctx.graph, x.name, 1, join(path, 'flatten')), rank: 2 };
  x = ctx.emit(net.dropout, x, join(path, 'dropout'));
  x = ctx.emit(net.fc, x, join(path, 'fc'));
  return ctx.emit(net.features, x, join(path, 'features'));
});

const emitLayersChild = (ctx: OnnxExportContext, module: MfnConvBlock | MfnLinearBlock | MfnResidual | MfnGDC, input: OnnxValue, path: string): OnnxValue =>
  ctx.emit(module.layers, input, join(path, 'layers'));
registerOnnxEmitter(MfnConvBlock, emitLayersChild);
registerOnnxEmitter(MfnLinearBlock, emitLayersChild);
registerOnnxEmitter(MfnResidual, emitLayersChild);
registerOnnxEmitter(MfnGDC, emitLayersChild);

registerOnnxEmitter(MfnDepthWise, (ctx, unit, input, path) => {
  const out = ctx.emit(unit.layers, input, join(path, 'layers'));
  if (!unit.residual) return out;
  return { name: emitAdd(ctx.graph, input.name, out.name, valueName(path, 'residual')), rank: out.rank };
});

registerOnnxEmitter(MobileFaceNet, (ctx, net, input, path) => {
  requireRank(net, path, input, [4]);
  let x = ctx.emit(net.layers, input, join(path, 'layers'));
  x = ctx.emit(net.convSep, x, join(path, 'conv_sep'));
  return ctx.emit(net.features, x, join(path, 'features'));
});

registerOnnxEmitter(FeatureMLP, (ctx, mlp, input, path) => {
  requireRank(mlp, path, input, [2]);
  let x = ctx.emit(mlp.layers, input, join(path, 'layers'));
  x = ctx.emit(mlp.dropout, x, join(path, 'dropout'));
  x = ctx.emit(mlp.fc, x, join(path, 'fc'));
  return ctx.emit(mlp.features, x, join(path, 'features'));
});

// ---- emitters of the folded inference form (fold-batch-norm.ts) --------------------------------

registerOnnxEmitter(FoldedConv2d, (ctx, conv, input, path) => {
  requireRank(conv, path, input, [4]);
  const [outChannels, inPerGroup, kernelH, kernelW] = conv.weight.shape as [number, number, number, number];
  const { stride, padding, dilation, groups } = conv.geometry;
  const name = emitConv2d(ctx.graph, input.name, {
    name: valueName(path, 'conv'),
    weight: ctx.data(conv.weight),
    weightShape: [outChannels, inPerGroup, kernelH, kernelW],
    bias: ctx.data(conv.bias),
    stride,
    padding,
    dilation,
    groups,
  });
  return { name, rank: 4 };
});

registerOnnxEmitter(FoldedLinear, (ctx, linear, input, path) => {
  requireRank(linear, path, input, [2]);
  const [outFeatures, inFeatures] = linear.weight.shape as [number, number];
  const name = emitLinear(ctx.graph, input.name, {
    name: valueName(path, 'fc'),
    weight: ctx.data(linear.weight),
    weightShape: [outFeatures, inFeatures],
    bias: ctx.data(linear.bias),
    mode: 'gemm',
  });
  return { name, rank: 2 };
});

registerOnnxEmitter(InferenceBatchNorm, (ctx, bn, input, path) => {
  const name = emitBatchNorm(ctx.graph, input.name, {
    name: valueName(path, 'bn'),
    runningMean: ctx.data(bn.runningMean),
    runningVar: ctx.data(bn.runningVar),
    ...(bn.weight !== null ? { weight: ctx.data(bn.weight) } : {}),
    ...(bn.bias !== null ? { bias: ctx.data(bn.bias) } : {}),
    eps: bn.eps,
  });
  return { name, rank: input.rank };
});

const emitChain = (ctx: OnnxExportContext, chain: InferenceChain, input: OnnxValue, path: string): OnnxValue => {
  let x = input;
  for (const [name, child] of chain.namedChildren()) x = ctx.emit(child, x, join(path, name));
  return x;
};
registerOnnxEmitter(InferenceChain, emitChain);
registerOnnxEmitter(FoldedBackbone, emitChain);

registerOnnxEmitter(InferenceResidual, (ctx, unit, input, path) => {
  let out = input;
  let shortcut = input;
  for (const [name, child] of unit.namedChildren()) {
    if (child === unit.shortcut) shortcut = ctx.emit(child, input, join(path, name));
    else out = ctx.emit(child, out, join(path, name));
  }
  return { name: emitAdd(ctx.graph, out.name, shortcut.name, valueName(path, 'residual')), rank: out.rank };
});

// ---- export ------------------------------------------------------------------------------------

function tensorData(tensor: Tensor): Float32Array {
  let source = tensor;
  const temporaries: Tensor[] = [];
  if (source.device !== 'cpu') {
    source = source.to('cpu');
    temporaries.push(source);
  }
  if (source.dtype !== 'float32') {
    source = source.to('float32');
    temporaries.push(source);
  }
  try {
    const data = source.dataSync();
    if (!(data instanceof Float32Array)) throw new Error(`ONNX export: expected float32 data, got ${source.dtype}`);
    return data;
  } finally {
    for (const t of temporaries) t.dispose();
  }
}

class ExportContext implements OnnxExportContext {
  constructor(readonly graph: OnnxGraphBuilder) {}

  emit(module: AnyModule, input: OnnxValue, path: string): OnnxValue {
    if (hasEmitMethod(module)) return module.emitOnnx(this, input, path);
    const emitter = emitters.get(module.constructor);
    if (emitter === undefined) {
      throw new Error(
        `ONNX export: no emitter for ${module.typeName} at '${path || '<root>'}'; register one with registerOnnxEmitter(${module.typeName}, (context, module, input, path) => ...) or give the class an emitOnnx method`,
      );
    }
    return emitter(this, module, input, path);
  }

  data(tensor: Tensor): Float32Array {
    return tensorData(tensor);
  }
}

export interface ExportOnnxOptions {
  /** Default-domain opset (13..21; default 17). */
  opset?: number;
  /** Symbolic batch dimension 'N' (default true); false fixes it to `batchSize`. */
  dynamicBatch?: boolean;
  /** The fixed batch size when dynamicBatch is false (default 1). */
  batchSize?: number;
  /** Append an L2 normalization so the model outputs unit-length embeddings (default false). */
  l2Normalize?: boolean;
  /** Extra metadata_props entries. */
  metadata?: Record<string, string>;
  /**
   * Write the BN-folded inference form (foldBatchNorm: fewer nodes, same outputs) when the backbone
   * is one foldBatchNorm knows (default true); false writes every BatchNormalization node.
   */
  foldBatchNorm?: boolean;
}

/** The graph's input and output names. */
export const ONNX_INPUT_NAME = 'input';
export const ONNX_OUTPUT_NAME = 'embedding';

/**
 * Writes `backbone` as an ONNX model: input `input` float32 [N, ...inputShape], output `embedding`
 * float32 [N, embeddingSize]. The graph computes the eval-mode forward (running BN statistics, no
 * dropout) whatever mode the module is in, with the BNs folded into the neighbouring layers unless
 * `foldBatchNorm` is false. Returns the ModelProto bytes.
 */
export function exportOnnx(backbone: Backbone, options: ExportOnnxOptions = {}): Uint8Array {
  const inputShape = backbone.inputShape;
  if (!Array.isArray(inputShape) || inputShape.length === 0 || !inputShape.every((d) => Number.isInteger(d) && d > 0)) {
    throw new Error(`ONNX export: backbone ${backbone.typeName} has no valid inputShape (got ${JSON.stringify(inputShape)})`);
  }
  const embeddingSize = backbone.embeddingSize;
  if (!Number.isInteger(embeddingSize) || embeddingSize < 1) throw new Error(`ONNX export: backbone ${backbone.typeName} has no valid embeddingSize (got ${String(embeddingSize)})`);
  const opset = options.opset ?? 17;
  if (!Number.isInteger(opset) || opset < MIN_OPSET || opset > MAX_OPSET) throw new Error(`ONNX export: opset ${opset} is not supported (use ${MIN_OPSET}..${MAX_OPSET})`);
  const dynamicBatch = options.dynamicBatch ?? true;
  const batchSize = options.batchSize ?? 1;
  if (!dynamicBatch) positiveInteger(batchSize, 'ONNX export: batchSize');
  const batchDim: OnnxDim = dynamicBatch ? 'N' : batchSize;

  const graph = new OnnxGraphBuilder(backbone.typeName);
  const context = new ExportContext(graph);
  const input: OnnxValue = { name: graph.input(ONNX_INPUT_NAME, 'float32', [batchDim, ...inputShape]), rank: inputShape.length + 1 };
  const folded = (options.foldBatchNorm ?? true) && canFoldBatchNorm(backbone) ? foldBatchNorm(backbone) : null;
  let output: OnnxValue;
  try {
    output = context.emit((folded ?? backbone) as AnyModule, input, '');
  } finally {
    folded?.dispose();
  }
  if (output.rank !== 2) throw new Error(`ONNX export: ${backbone.typeName} produced a rank ${output.rank} output, expected [N, ${embeddingSize}]`);
  if (options.l2Normalize) output = { name: emitL2Normalize(graph, output.name, 1), rank: 2 };
  graph.node('Identity', [output.name], [ONNX_OUTPUT_NAME]);
  graph.output(ONNX_OUTPUT_NAME, 'float32', [batchDim, embeddingSize]);
  return graph.toBytes({
    opset,
    docString: `plsc ${backbone.typeName} backbone: ${ONNX_INPUT_NAME} [N, ${inputShape.join(', ')}] -> ${ONNX_OUTPUT_NAME} [N, ${embeddingSize}]`,
    metadata: {
      'plsc.backbone': backbone.typeName,
      'plsc.embedding_size': String(embeddingSize),
      'plsc.input_shape': JSON.stringify(inputShape),
      'plsc.l2_normalized': String(options.l2Normalize ?? false),
      ...(options.metadata ?? {}),
    },
  });
}
