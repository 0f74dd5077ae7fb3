// IR-ResNet ("iresnet") as insightface's arcface_torch defines it: pre-activation style IBasicBlocks
// (BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus a conv1x1+BN shortcut when the shape
// changes) in four stride-2 stages, and the BN -> Dropout -> FC -> BN embedding head. Module and
// tensor names follow insightface's state_dict keys, so its checkpoints (converted to safetensors)
// load with loadStateDict.
import type { Tensor } from '../torch/tensor.js';
import * as F from '../torch/ops.js';
import { tidy } from '../torch/scope.js';
import { noGrad } from '../torch/autograd.js';
import { Module } from '../torch/nn/module.js';
import { Conv2d } from '../torch/nn/conv.js';
import { BatchNorm1d, BatchNorm2d } from '../torch/nn/batchnorm.js';
import { PReLU } from '../torch/nn/activation.js';
import { Linear } from '../torch/nn/linear.js';
import { Dropout } from '../torch/nn/dropout.js';
import { Sequential } from '../torch/nn/sequential.js';
import { halve, imageSize, type Backbone } from './backbone.js';
import { inRange, positiveInteger } from '../util/validate.js';

/** Blocks per stage of each published depth. */
export const IRESNET_LAYERS = {
  iresnet18: [2, 2, 2, 2],
  iresnet34: [3, 4, 6, 3],
  iresnet50: [3, 4, 14, 3],
  iresnet100: [3, 13, 30, 3],
} as const satisfies Record<string, readonly [number, number, number, number]>;

export type IResNetDepth = keyof typeof IRESNET_LAYERS;

/** Output channels of the four stages. */
export const IRESNET_WIDTHS = [64, 128, 256, 512] as const;

const BN_EPS = 1e-5;

/**
 * One residual block: bn1 -> conv1 (3x3) -> bn2 -> prelu -> conv2 (3x3, stride) -> bn3, added to the
 * input or to downsample(input) (conv1x1 with the stride, then BN) when the shape changes.
 */
export class IBasicBlock extends Module {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly stride: number;
  readonly bn1: BatchNorm2d;
  readonly conv1: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly prelu: PReLU;
  readonly conv2: Conv2d;
  readonly bn3: BatchNorm2d;
  /** conv1x1(stride) + BN shortcut (children '0' and '1'), or null for the identity shortcut. */
  readonly downsample: Sequential | null;

  constructor(inChannels: number, outChannels: number, stride = 1) {
    super();
    this.inChannels = inChannels;
    this.outChannels = outChannels;
    this.stride = stride;
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(inChannels, { eps: BN_EPS }));
    this.conv1 = this.registerModule('conv1', new Conv2d(inChannels, outChannels, 3, { padding: 1, bias: false }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(outChannels, { eps: BN_EPS }));
    this.prelu = this.registerModule('prelu', new PReLU(outChannels));
    this.conv2 = this.registerModule('conv2', new Conv2d(outChannels, outChannels, 3, { stride, padding: 1, bias: false }));
    this.bn3 = this.registerModule('bn3', new BatchNorm2d(outChannels, { eps: BN_EPS }));
    this.downsample =
      stride !== 1 || inChannels !== outChannels
        ? this.registerModule(
            'downsample',
            new Sequential(new Conv2d(inChannels, outChannels, 1, { stride, bias: false }), new BatchNorm2d(outChannels, { eps: BN_EPS })),
          )
        : null;
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      let out = this.bn1.call(x);
      out = this.conv1.call(out);
      out = this.bn2.call(out);
      out = this.prelu.call(out);
      out = this.conv2.call(out);
      out = this.bn3.call(out);
      const identity = this.downsample === null ? x : this.downsample.call(x);
      return F.add(out, identity);
    });
  }
}

export interface IResNetOptions {
  /** Blocks in each of the four stages, e.g. [3, 4, 14, 3] for IR-50. */
  layers: readonly [number, number, number, number];
  /** Embedding width D (default 512). */
  embeddingSize?: number;
  /** Input side (square) or [height, width] (default 112). */
  inputSize?: number | readonly [number, number];
  /** Dropout probability before the FC layer (default 0, as arcface_torch). */
  dropout?: number;
  /** Zero-initialize each block's bn2 weight (arcface_torch's zero_init_residual; default false). */
  zeroInitResidual?: boolean;
}

/**
 * The IR-ResNet backbone. Input [N, 3, H, W]; every stage halves the spatial size (rounding up), so
 * the FC layer sees 512 * ceil(H/16) * ceil(W/16) features: 512 * 7 * 7 at the standard 112x112.
 * Any input size works, but weights only transfer between models of the same FC input size.
 */
export class IResNet extends Module implements Backbone {
  readonly embeddingSize: number;
  readonly inputShape: readonly [number, number, number];
  readonly layerCounts: readonly [number, number, number, number];
  /** Spatial size of the last stage's output: [ceil(H/16), ceil(W/16)]. */
  readonly featureMapSize: readonly [number, number];

  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly prelu: PReLU;
  readonly layer1: Sequential;
  readonly layer2: Sequential;
  readonly layer3: Sequential;
  readonly layer4: Sequential;
  readonly bn2: BatchNorm2d;
  readonly dropout: Dropout;
  readonly fc: Linear;
  /** BatchNorm1d over the embedding; its weight is fixed at 1 (not trained), as in insightface. */
  readonly features: BatchNorm1d;

  constructor(options: IResNetOptions) {
    super();
    const layers = options.layers;
    if (!Array.isArray(layers) || layers.length !== 4 || !layers.every((n) => Number.isInteger(n) && n >= 1)) {
      throw new Error(`IResNet: layers must be four positive integers, got ${JSON.stringify(layers)}`);
    }
    const embeddingSize = options.embeddingSize ?? 512;
    positiveInteger(embeddingSize, 'IResNet: embeddingSize');
    const dropout = options.dropout ?? 0;
    inRange(dropout, 'IResNet: dropout', { min: 0, max: 1, maxExclusive: true });
    const [height, width] = imageSize(options.inputSize ?? 112, 'IResNet');
    this.embeddingSize = embeddingSize;
    this.inputShape = [3, height, width];
    this.layerCounts = [layers[0], layers[1], layers[2], layers[3]];
    this.featureMapSize = [halve(halve(halve(halve(height)))), halve(halve(halve(halve(width))))];

    this.conv1 = this.registerModule('conv1', new Conv2d(3, 64, 3, { stride: 1, padding: 1, bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(64, { eps: BN_EPS }));
    this.prelu = this.registerModule('prelu', new PReLU(64));
    let channels = 64;
    const stage = (name: string, outChannels: number, blocks: number): Sequential => {
      const seq = new Sequential(new IBasicBlock(channels, outChannels, 2));
      for (let i = 1; i < blocks; i++) seq.append(new IBasicBlock(outChannels, outChannels, 1));
      channels = outChannels;
      return this.registerModule(name, seq);
    };
    this.layer1 = stage('layer1', IRESNET_WIDTHS[0], layers[0]);
    this.layer2 = stage('layer2', IRESNET_WIDTHS[1], layers[1]);
    this.layer3 = stage('layer3', IRESNET_WIDTHS[2], layers[2]);
    this.layer4 = stage('layer4', IRESNET_WIDTHS[3], layers[3]);
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(512, { eps: BN_EPS }));
    this.dropout = this.registerModule('dropout', new Dropout(dropout));
    const fcInputs = 512 * this.featureMapSize[0] * this.featureMapSize[1];
    this.fc = this.registerModule('fc', new Linear(fcInputs, embeddingSize));
    this.features = this.registerModule('features', new BatchNorm1d(embeddingSize, { eps: BN_EPS }));

    // arcface_torch's initialization: conv weights N(0, 0.1), BN scale 1 / shift 0, the embedding
    // BN's scale frozen at 1; the FC keeps PyTorch's default init.
    noGrad(() => {
      for (const module of this.modules()) {
        if (module instanceof Conv2d) module.weight.normal_(0, 0.1);
        else if (module instanceof BatchNorm2d) {
          module.weight?.fill_(1);
          module.bias?.zero_();
        }
      }
      this.features.weight?.fill_(1);
      if (options.zeroInitResidual) for (const module of this.modules()) if (module instanceof IBasicBlock) module.bn2.weight?.zero_();
    });
    this.features.weight?.requiresGrad_(false);
  }

  /** The four stages in order. */
  get stages(): [Sequential, Sequential, Sequential, Sequential] {
    return [this.layer1, this.layer2, this.layer3, this.layer4];
  }

  forward(x: Tensor): Tensor {
    const [channels, height, width] = this.inputShape;
    if (x.ndim !== 4 || x.shape[1] !== channels || x.shape[2] !== height || x.shape[3] !== width) {
      throw new Error(`IResNet: expected input [N, ${channels}, ${height}, ${width}], got [${x.shape.join(', ')}]`);
    }
    return tidy(() => {
      let out = this.conv1.call(x);
      out = this.bn1.call(out);
      out = this.prelu.call(out);
      out = this.layer1.call(out);
      out = this.layer2.call(out);
      out = this.layer3.call(out);
      out = this.layer4.call(out);
      out = this.bn2.call(out);
      out = F.flatten(out, 1);
      out = this.dropout.call(out);
      out = this.fc.call(out);
      return this.features.call(out);
    });
  }
}

export type IResNetBuildOptions = Omit<IResNetOptions, 'layers'>;

export function iresnet18(options: IResNetBuildOptions = {}): IResNet {
  return new IResNet({ ...options, layers: IRESNET_LAYERS.iresnet18 });
}
export function iresnet34(options: IResNetBuildOptions = {}): IResNet {
  return new IResNet({ ...options, layers: IRESNET_LAYERS.iresnet34 });
}
export function iresnet50(options: IResNetBuildOptions = {}): IResNet {
  return new IResNet({ ...options, layers: IRESNET_LAYERS.iresnet50 });
}
export function iresnet100(options: IResNetBuildOptions = {}): IResNet {
  return new IResNet({ ...options, layers: IRESNET_LAYERS.iresnet100 });
}
