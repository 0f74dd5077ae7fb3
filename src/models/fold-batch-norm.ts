// A backbone's inference form with its BatchNorms folded into the neighbouring convolutions and
// linear layers. In eval mode a BatchNorm is the per-channel affine map y = s * x + t with
// s = gamma / sqrt(running_var + eps) and t = beta - running_mean * s, so
//   BN after conv/linear:  w' = w * s (per output channel),     b' = s * b + t
//   BN before conv/linear: w' = w * s (per input channel),      b' = b + sum(w * t)
// The second is exact only when the convolution has no padding: a zero-padded border of an
// affine-mapped input is not the affine map of a zero border. The IR blocks' leading BN (before a
// 3x3 conv with padding 1) therefore stays a separate operator.
//
// The trained model is not modified: folded weights are new tensors (computed in float64, stored in
// the original dtype and memory layout), a BN that stays reads the original statistics through new
// handles, and layers with nothing to fold (PReLU, pooling, modules of classes without a rule) are
// shared with the original.
import type { Tensor } from '../torch/tensor.js';
import * as F from '../torch/ops.js';
import { tidy } from '../torch/scope.js';
import { noGrad } from '../torch/autograd.js';
import type { AnyModule } from '../torch/nn/module.js';
import { Conv2d } from '../torch/nn/conv.js';
import { BatchNorm1d, BatchNorm2d } from '../torch/nn/batchnorm.js';
import { Linear } from '../torch/nn/linear.js';
import { Dropout } from '../torch/nn/dropout.js';
import { Flatten, Identity } from '../torch/nn/shape.js';
import { PReLU, ReLU } from '../torch/nn/activation.js';
import { Sequential, type TensorModule } from '../torch/nn/sequential.js';
import type { Backbone } from './backbone.js';
import { IBasicBlock, IResNet } from './iresnet.js';
import { MfnConvBlock, MfnDepthWise, MfnGDC, MfnLinearBlock, MfnResidual, MobileFaceNet } from './mobilefacenet.js';
import { FeatureMLP } from './feature-mlp.js';
import { FoldedConv2d, FoldedLinear, InferenceBatchNorm, InferenceChain, InferenceResidual } from './folded-modules.js';

type BatchNorm = BatchNorm1d | BatchNorm2d;
type NamedStep = readonly [string, TensorModule];

/** A layer's weight and bias while BNs are folded into it (float64; bias null until one is needed). */
interface AffineWeights {
  weight: Tensor;
  bias: Tensor | null;
}

/** A BN's eval-mode map y = scale * x + shift, per channel, in float64. */
interface ChannelAffine {
  scale: Tensor;
  shift: Tensor;
}

function pathOf(parent: string, child: string): string {
  return parent === '' ? child : `${parent}.${child}`;
}

function hasRunningStats(bn: BatchNorm): boolean {
  return bn.runningMean !== null && bn.runningVar !== null;
}

function channelAffine(bn: BatchNorm): ChannelAffine {
  const mean = F.to(bn.runningMean as Tensor, 'float64');
  const variance = F.to(bn.runningVar as Tensor, 'float64');
  let scale = F.pow(F.add(variance, bn.eps), -0.5);
  if (bn.weight !== null) scale = F.mul(scale, F.to(bn.weight, 'float64'));
  const shift = bn.bias === null ? F.mul(F.mul(mean, scale), -1) : F.sub(F.to(bn.bias, 'float64'), F.mul(mean, scale));
  return { scale, shift };
}

function startWeights(weight: Tensor, bias: Tensor | null): AffineWeights {
  return { weight: F.to(weight, 'float64'), bias: bias === null ? null : F.to(bias, 'float64') };
}

/** A BN applied to the layer's output: scales output channel o by s[o]. */
function foldOutputAffine(layer: AffineWeights, bn: ChannelAffine): AffineWeights {
  const outChannels = layer.weight.shape[0] as number;
  const broadcast = [outChannels, ...new Array<number>(layer.weight.ndim - 1).fill(1)];
  const weight = F.mul(layer.weight, F.reshape(bn.scale, broadcast));
  const bias = layer.bias === null ? bn.shift : F.add(F.mul(layer.bias, bn.scale), bn.shift);
  return { weight, bias };
}

/** A BN applied to an unpadded convolution's input (input channels split into `groups`). */
function foldConvInputAffine(layer: AffineWeights, bn: ChannelAffine, groups: number): AffineWeights {
  const [outChannels, inPerGroup, kernelH, kernelW] = layer.weight.shape as [number, number, number, number];
  const grouped = F.reshape(layer.weight, [groups, outChannels / groups, inPerGroup, kernelH, kernelW]);
  const perInput = (values: Tensor): Tensor => F.reshape(values, [groups, 1, inPerGroup, 1, 1]);
  const weight = F.reshape(F.mul(grouped, perInput(bn.scale)), [outChannels, inPerGroup, kernelH, kernelW]);
  const added = F.reshape(F.sum(F.mul(grouped, perInput(bn.shift)), [2, 3, 4]), [outChannels]);
  return { weight, bias: layer.bias === null ? added : F.add(layer.bias, added) };
}

/**
 * A BN over C channels applied to a linear layer's input, where each channel covers `inFeatures / C`
 * consecutive features (a flattened [C, H, W] map; 1 for a [N, C] input).
 */
function foldLinearInputAffine(layer: AffineWeights, bn: ChannelAffine): AffineWeights {
  const inFeatures = layer.weight.shape[1] as number;
  const channels = bn.scale.shape[0] as number;
  const perChannel = inFeatures / channels;
  const expand = (values: Tensor): Tensor => F.reshape(F.expand(F.reshape(values, [channels, 1]), [channels, perChannel]), [inFeatures]);
  const weight = F.mul(layer.weight, F.reshape(expand(bn.scale), [1, inFeatures]));
  const added = F.matmul(layer.weight, expand(bn.shift));
  return { weight, bias: layer.bias === null ? added : F.add(layer.bias, added) };
}

/** `value` in `like`'s dtype and memory layout (channels-last weights stay channels-last). */
function storedLike(value: Tensor, like: Tensor): Tensor {
  const converted = F.to(value, like.dtype);
  return like.ndim === 4 && !like.isContiguous() ? F.contiguous(converted, 'channels_last') : F.contiguous(converted);
}

function finishedBias(layer: AffineWeights, like: Tensor): Tensor {
  const outChannels = layer.weight.shape[0] as number;
  return F.to(layer.bias ?? F.zeros([outChannels], { dtype: 'float64', device: like.device }), like.dtype);
}

/** What a module's `inferenceSteps` method gets: the inference form of any module (null: drop it). */
export interface BatchNormFolder {
  fold(module: AnyModule): TensorModule | null;
}

/**
 * A module class of your own opts into folding with this method: it returns its forward as named
 * steps applied in order, each made with `folder.fold(child)` (a Sequential child gets the folds
 * inside it). Without it, a module of an unknown class is used unchanged.
 */
export interface BatchNormFoldable {
  inferenceSteps(folder: BatchNormFolder): readonly (readonly [string, TensorModule | null])[];
}

function hasInferenceSteps(module: AnyModule): module is AnyModule & BatchNormFoldable {
  return typeof (module as Partial<BatchNormFoldable>).inferenceSteps === 'function';
}

/** Builds the folded tree and remembers which modules it created (it owns only those). */
class FoldContext implements BatchNormFolder {
  readonly created = new Set<TensorModule>();

  own<M extends TensorModule>(module: M): M {
    this.created.add(module);
    return module;
  }

  convModule(conv: Conv2d, layer: AffineWeights): FoldedConv2d {
    return this.own(
      new FoldedConv2d(storedLike(layer.weight, conv.weight), finishedBias(layer, conv.weight), {
        stride: conv.stride,
        padding: conv.padding,
        dilation: conv.dilation,
        groups: conv.groups,
      }),
    );
  }

  linearModule(linear: Linear, layer: AffineWeights): FoldedLinear {
    return this.own(new FoldedLinear(storedLike(layer.weight, linear.weight), finishedBias(layer, linear.weight)));
  }

  /** conv -> BN as one convolution. */
  convBn(conv: Conv2d, bn: BatchNorm2d): FoldedConv2d {
    return this.convModule(conv, foldOutputAffine(startWeights(conv.weight, conv.bias), channelAffine(bn)));
  }

  /** A BN that stays: eval-mode normalization with the original's statistics (new handles on them). */
  keptBatchNorm(bn: BatchNorm): InferenceBatchNorm {
    return this.own(
      new InferenceBatchNorm({
        runningMean: (bn.runningMean as Tensor).detach(),
        runningVar: (bn.runningVar as Tensor).detach(),
        weight: bn.weight === null ? null : bn.weight.detach(),
        bias: bn.bias === null ? null : bn.bias.detach(),
        eps: bn.eps,
      }),
    );
  }

  chain(entries: readonly NamedStep[]): InferenceChain {
    return this.own(new InferenceChain(entries));
  }

  /**
   * The inference form of one module, or null when it computes nothing in eval mode (Dropout).
   * Classes without a rule are returned as they are (shared with the original).
   */
  fold(module: AnyModule): TensorModule | null {
    const type = module.constructor;
    if (type === Dropout) return null;
    if ((type === BatchNorm1d || type === BatchNorm2d) && hasRunningStats(module as BatchNorm)) return this.keptBatchNorm(module as BatchNorm);
    if (type === Sequential) return this.chain(this.sequence((module as Sequential).namedChildren() as NamedStep[], false));
    const backboneSteps = this.backboneSteps(module);
    if (backboneSteps !== null) return this.chain(backboneSteps);
    if (type === IBasicBlock) return this.basicBlock(module as IBasicBlock);
    if (type === MfnConvBlock || type === MfnLinearBlock || type === MfnResidual || type === MfnGDC) {
      return this.chain([['layers', this.fold((module as MfnConvBlock | MfnGDC).layers) as TensorModule]]);
    }
    if (type === MfnDepthWise) {
      const unit = module as MfnDepthWise;
      const layers: NamedStep = ['layers', this.fold(unit.layers) as TensorModule];
      return unit.residual ? this.own(new InferenceResidual([layers], null)) : this.chain([layers]);
    }
    return module as TensorModule;
  }

  /** The top-level steps of a built-in backbone, or null for any other module. */
  backboneSteps(module: AnyModule): NamedStep[] | null {
    const type = module.constructor;
    if (type === IResNet) return this.iresnet(module as IResNet);
    if (type === FeatureMLP) return this.featureMlp(module as FeatureMLP);
    if (type === MobileFaceNet) {
      const net = module as MobileFaceNet;
      return this.present([['layers', this.fold(net.layers)], ['conv_sep', this.fold(net.convSep)], ['features', this.fold(net.features)]]);
    }
    if (hasInferenceSteps(module)) return this.present(module.inferenceSteps(this));
    return null;
  }

  private present(entries: readonly (readonly [string, TensorModule | null])[]): NamedStep[] {
    return entries.filter((entry): entry is NamedStep => entry[1] !== null);
  }

  /**
   * The steps of a chain with every exact fold applied: conv -> BN2d; BN2d -> unpadded conv (-> BN2d);
   * and on [N, F] input (`flatInput`, or after a Flatten(1)) linear -> BN1d and BN1d -> linear (-> BN1d).
   * A folded layer keeps the conv's / linear's name.
   */
  sequence(children: readonly NamedStep[], flatInput: boolean): NamedStep[] {
    const steps: NamedStep[] = [];
    const items = children.filter(([, child]) => child.constructor !== Dropout);
    let flat = flatInput;
    let i = 0;
    const at = (index: number): TensorModule | undefined => items[index]?.[1];
    const isBn2d = (m: TensorModule | undefined, channels: number): m is BatchNorm2d =>
      m?.constructor === BatchNorm2d && (m as BatchNorm2d).numFeatures === channels && hasRunningStats(m as BatchNorm2d);
    const isBn1d = (m: TensorModule | undefined, channels: number): m is BatchNorm1d =>
      m?.constructor === BatchNorm1d && (m as BatchNorm1d).numFeatures === channels && hasRunningStats(m as BatchNorm1d);
    while (i < items.length) {
      const [name, child] = items[i] as NamedStep;
      const next = at(i + 1);
      if (child.constructor === BatchNorm2d && next?.constructor === Conv2d) {
        const conv = next as Conv2d;
        if (isBn2d(child, conv.inChannels) && conv.padding[0] === 0 && conv.padding[1] === 0) {
          const convName = (items[i + 1] as NamedStep)[0];
          let layer = foldConvInputAffine(startWeights(conv.weight, conv.bias), channelAffine(child), conv.groups);
          i += 2;
          if (isBn2d(at(i), conv.outChannels)) layer = foldOutputAffine(layer, channelAffine(at(i++) as BatchNorm2d));
          steps.push([convName, this.convModule(conv, layer)]);
          continue;
        }
      }
      if (child.constructor === Conv2d && isBn2d(next, (child as Conv2d).outChannels)) {
        steps.push([name, this.convBn(child as Conv2d, next)]);
        i += 2;
        continue;
      }
      if (flat && child.constructor === BatchNorm1d && next?.constructor === Linear && isBn1d(child, (next as Linear).inFeatures)) {
        const linear = next as Linear;
        let layer = foldLinearInputAffine(startWeights(linear.weight, linear.bias), channelAffine(child as BatchNorm1d));
        const linearName = (items[i + 1] as NamedStep)[0];
        i += 2;
        if (isBn1d(at(i), linear.outFeatures)) layer = foldOutputAffine(layer, channelAffine(at(i++) as BatchNorm1d));
        steps.push([linearName, this.linearModule(linear, layer)]);
        continue;
      }
      if (flat && child.constructor === Linear && isBn1d(next, (child as Linear).outFeatures)) {
        const linear = child as Linear;
        steps.push([name, this.linearModule(linear, foldOutputAffine(startWeights(linear.weight, linear.bias), channelAffine(next)))]);
        i += 2;
        continue;
      }
      const folded = this.fold(child);
      if (folded !== null) steps.push([name, folded]);
      // What keeps a [N, F] input [N, F'] (so a later linear -> BN1d still folds exactly).
      const type = child.constructor;
      if (type === Flatten) flat = (child as Flatten).startDim === 1 && (child as Flatten).endDim === -1;
      else if (!(flat && (type === Linear || type === BatchNorm1d || folded === null || isElementwise(child)))) flat = false;
      i += 1;
    }
    return steps;
  }

  private iresnet(net: IResNet): NamedStep[] {
    const steps: NamedStep[] = [['conv1', this.convBn(net.conv1, net.bn1)], ['prelu', net.prelu]];
    net.stages.forEach((stage, index) => steps.push([`layer${index + 1}`, this.fold(stage) as TensorModule]));
    // bn2 -> flatten -> dropout (identity) -> fc -> features: one linear layer. bn2 meets the fc
    // without padding in between, so its fold is exact.
    steps.push(['flatten', this.own(new Flatten(1))]);
    let head = foldLinearInputAffine(startWeights(net.fc.weight, net.fc.bias), channelAffine(net.bn2));
    head = foldOutputAffine(head, channelAffine(net.features));
    steps.push(['fc', this.linearModule(net.fc, head)]);
    return steps;
  }

  private basicBlock(block: IBasicBlock): InferenceResidual {
    const main: NamedStep[] = [
      ['bn1', this.keptBatchNorm(block.bn1)],
      ['conv1', this.convBn(block.conv1, block.bn2)],
      ['prelu', block.prelu],
      ['conv2', this.convBn(block.conv2, block.bn3)],
    ];
    const shortcut: NamedStep | null = block.downsample === null ? null : ['downsample', this.fold(block.downsample) as TensorModule];
    return this.own(new InferenceResidual(main, shortcut));
  }

  private featureMlp(mlp: FeatureMLP): NamedStep[] {
    const steps: NamedStep[] = [];
    if (mlp.layers.length > 0) steps.push(['layers', this.chain(this.sequence(mlp.layers.namedChildren() as NamedStep[], true))]);
    steps.push(['fc', this.linearModule(mlp.fc, foldOutputAffine(startWeights(mlp.fc.weight, mlp.fc.bias), channelAffine(mlp.features)))]);
    return steps;
  }
}

/** Layers that keep their input's shape whatever it is (the input stays [N, F] through them). */
function isElementwise(module: TensorModule): boolean {
  const type = module.constructor;
  return type === PReLU || type === ReLU || type === Identity;
}

/**
 * A backbone's inference form: the same embeddings as the eval-mode forward of the backbone it was
 * folded from, with fewer operators. Its layers carry the original module names (`conv1`,
 * `layer1.0.conv1`, `fc`...). dispose() frees what the fold created, never the original's tensors.
 */
export class FoldedBackbone extends InferenceChain implements Backbone {
  readonly embeddingSize: number;
  readonly inputShape: readonly number[];
  /** Class name of the backbone it was folded from. */
  readonly sourceTypeName: string;
  private readonly created: ReadonlySet<TensorModule>;

  constructor(source: Backbone, entries: readonly NamedStep[], created: ReadonlySet<TensorModule>) {
    super(entries);
    this.embeddingSize = source.embeddingSize;
    this.inputShape = [...source.inputShape];
    this.sourceTypeName = source.typeName;
    this.created = created;
  }

  override forward(x: Tensor): Tensor {
    const shape = this.inputShape;
    if (x.ndim !== shape.length + 1 || shape.some((d, i) => x.shape[i + 1] !== d)) {
      throw new Error(`${this.sourceTypeName} (folded): expected input [N, ${shape.join(', ')}], got [${x.shape.join(', ')}]`);
    }
    return super.forward(x);
  }

  override dispose(): void {
    for (const module of this.created) {
      for (const tensor of [...module.parameters({ recurse: false }), ...module.buffers({ recurse: false })]) tensor.dispose();
    }
  }
}

/** True when foldBatchNorm knows `backbone`'s class (otherwise it can only wrap it unchanged). */
export function canFoldBatchNorm(backbone: Backbone): boolean {
  const type = backbone.constructor;
  return type === IResNet || type === MobileFaceNet || type === FeatureMLP || hasInferenceSteps(backbone as unknown as AnyModule);
}

/**
 * The inference form of `backbone` with every BatchNorm folded where that is exact (see the top of
 * this file): its forward equals the eval-mode forward of `backbone` up to float rounding. The
 * backbone is not modified. Modules of classes without a fold rule are used as they are, in the mode
 * they are in, so put the backbone in eval mode before running the result. Dispose the result when
 * done (that frees only its own tensors); it reads the original's BN statistics and PReLU slopes, so
 * it must not outlive the backbone.
 */
export function foldBatchNorm(backbone: Backbone): FoldedBackbone {
  const context = new FoldContext();
  try {
    return noGrad(() =>
      tidy(() => {
        const steps = context.backboneSteps(backbone as unknown as AnyModule) ?? [['backbone', backbone]];
        return new FoldedBackbone(backbone, steps, context.created);
      }),
    );
  } catch (error) {
    for (const module of context.created) {
      for (const tensor of [...module.parameters({ recurse: false }), ...module.buffers({ recurse: false })]) tensor.dispose();
    }
    throw error;
  }
}

/** Runs `use` on the folded form of `backbone` and disposes it afterwards. */
export async function withFoldedBatchNorm<T>(backbone: Backbone, use: (folded: Backbone) => Promise<T> | T): Promise<T> {
  const folded = foldBatchNorm(backbone);
  try {
    return await use(folded);
  } finally {
    folded.dispose();
  }
}
