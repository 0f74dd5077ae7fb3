// MobileFaceNet as insightface's arcface_torch builds it (`get_mbf`: blocks (1, 4, 6, 2), width scale
// 2): ConvBlock / LinearBlock / DepthWise / Residual units and a GDC head (a 7x7 depthwise "linear"
// conv, then Flatten -> Linear(no bias) -> BatchNorm1d). Child names match insightface's
// state_dict keys (`layers.0.layers.0.weight`, `conv_sep.layers.1.running_mean`,
// `features.layers.2.weight`, ...), so its checkpoints converted to safetensors load.
import type { Tensor } from '../torch/tensor.js';
import * as F from '../torch/ops.js';
import { tidy } from '../torch/scope.js';
import { noGrad } from '../torch/autograd.js';
import { Module } from '../torch/nn/module.js';
import { Conv2d } from '../torch/nn/conv.js';
import { BatchNorm1d, BatchNorm2d } from '../torch/nn/batchnorm.js';
import { PReLU } from '../torch/nn/activation.js';
import { Linear } from '../torch/nn/linear.js';
import { Flatten } from '../torch/nn/shape.js';
import { Sequential } from '../torch/nn/sequential.js';
import { kaimingNormal_ } from '../torch/nn/init.js';
import { halve, imageSize, type Backbone } from './backbone.js';
import { positiveInteger } from '../util/validate.js';

type Pair = readonly [number, number];

export interface MfnConvOptions {
  kernel?: number | Pair;
  stride?: number | Pair;
  padding?: number | Pair;
  groups?: number;
}

/**
 * The two plain blocks: conv (no bias; kernel 1, stride 1, no padding, 1 group unless given) ->
 * BatchNorm2d, then PReLU when `activated`, held in `layers` (0, 1[, 2]).
 */
abstract class MfnBlock extends Module {
  readonly layers: Sequential;
  protected constructor(inChannels: number, outChannels: number, options: MfnConvOptions, activated: boolean) {
    super();
    const { kernel = 1, stride = 1, padding = 0, groups = 1 } = options;
    const conv = new Conv2d(inChannels, outChannels, kernel, { stride, padding, groups, bias: false });
    const norm = new BatchNorm2d(outChannels);
    this.layers = this.registerModule('layers', activated ? new Sequential(conv, norm, new PReLU(outChannels)) : new Sequential(conv, norm));
  }
  forward(x: Tensor): Tensor {
    return this.layers.call(x);
  }
}

/** insightface `ConvBlock`: conv (no bias) -> BatchNorm2d -> PReLU. */
export class MfnConvBlock extends MfnBlock {
  constructor(inChannels: number, outChannels: number, options: MfnConvOptions = {}) {
    super(inChannels, outChannels, options, true);
  }
}

/** insightface `LinearBlock`: conv (no bias) -> BatchNorm2d, no activation. */
export class MfnLinearBlock extends MfnBlock {
  constructor(inChannels: number, outChannels: number, options: MfnConvOptions = {}) {
    super(inChannels, outChannels, options, false);
  }
}

/**
 * insightface `DepthWise`: an inverted bottleneck. 1x1 ConvBlock expanding to `groups` channels,
 * a depthwise (groups = channels) ConvBlock with the kernel/stride, a 1x1 LinearBlock projecting to
 * `outChannels`; with `residual`, the input is added to the result.
 */
export class MfnDepthWise extends Module {
  readonly residual: boolean;
  readonly layers: Sequential;
  constructor(inChannels: number, outChannels: number, options: { residual?: boolean; kernel?: number | Pair; stride?: number | Pair; padding?: number | Pair; groups: number }) {
    super();
    const groups = options.groups;
    this.residual = options.residual ?? false;
    this.layers = this.registerModule(
      'layers',
      new Sequential(
        new MfnConvBlock(inChannels, groups, { kernel: 1, padding: 0, stride: 1 }),
        new MfnConvBlock(groups, groups, { groups, kernel: options.kernel ?? 3, padding: options.padding ?? 1, stride: options.stride ?? 2 }),
        new MfnLinearBlock(groups, outChannels, { kernel: 1, padding: 0, stride: 1 }),
      ),
    );
    if (this.residual && inChannels !== outChannels) throw new Error(`MfnDepthWise: a residual unit needs inChannels == outChannels (${inChannels} vs ${outChannels})`);
  }
  forward(x: Tensor): Tensor {
    if (!this.residual) return this.layers.call(x);
    return tidy(() => F.add(x, this.layers.call(x)));
  }
}

/** insightface `Residual`: `numBlocks` stride-1 residual DepthWise units held in `layers`. */
export class MfnResidual extends Module {
  readonly layers: Sequential;
  constructor(channels: number, numBlocks: number, groups: number) {
    super();
    this.layers = this.registerModule('layers', new Sequential());
    for (let i = 0; i < numBlocks; i++) {
      this.layers.append(new MfnDepthWise(channels, channels, { residual: true, kernel: 3, stride: 1, padding: 1, groups }));
    }
  }
  forward(x: Tensor): Tensor {
    return this.layers.call(x);
  }
}

/**
 * insightface `GDC` (global depthwise conv) head: a depthwise LinearBlock whose kernel covers the
 * whole feature map (7x7 at 112x112 input), Flatten, Linear(512 -> D, no bias), BatchNorm1d(D).
 */
export class MfnGDC extends Module {
  readonly layers: Sequential;
  constructor(embeddingSize: number, kernel: Pair = [7, 7], channels = 512) {
    super();
    this.layers = this.registerModule(
      'layers',
      new Sequential(
        new MfnLinearBlock(channels, channels, { groups: channels, kernel, stride: 1, padding: 0 }),
        new Flatten(1),
        new Linear(channels, embeddingSize, { bias: false }),
        new BatchNorm1d(embeddingSize),
      ),
    );
  }
  forward(x: Tensor): Tensor {
    return this.layers.call(x);
  }
}

export interface MobileFaceNetOptions {
  /** Embedding width D (default 512). */
  embeddingSize?: number;
  /** Residual units in the four stages (default [1, 4, 6, 2]; arcface_torch's mbf_large: [2, 8, 12, 4]). */
  blocks?: readonly [number, number, number, number];
  /** Channel multiplier (default 2; mbf_large: 4). */
  scale?: number;
  /** Input side (square) or [height, width] (default 112). */
  inputSize?: number | readonly [number, number];
  /**
   * Stride of the stem conv (default 2, as insightface). 1 keeps the first stage at full
   * resolution, which suits small inputs (<= 64 px): a 32 px image then reaches the GDC head at 4x4
   * instead of 2x2.
   */
  stemStride?: 1 | 2;
}

/**
 * MobileFaceNet. Input [N, 3, H, W]; the stem and three DepthWise units halve the spatial size
 * (rounding up), so the GDC kernel is [ceil(H/16), ceil(W/16)]: 7x7 at 112x112, as in insightface.
 * Other sizes work; only the GDC depthwise weight's shape changes with them. With `stemStride: 1`
 * the stem keeps the size and the kernel is [ceil(H/8), ceil(W/8)].
 */
export class MobileFaceNet extends Module implements Backbone {
  readonly embeddingSize: number;
  readonly inputShape: readonly [number, number, number];
  readonly blocks: readonly [number, number, number, number];
  readonly scale: number;
  readonly stemStride: 1 | 2;
  /** Spatial size entering the GDC head. */
  readonly featureMapSize: readonly [number, number];
  /** insightface's `layers` ModuleList (applied in order). */
  readonly layers: Sequential;
  /** insightface `conv_sep`: 1x1 ConvBlock to 512 channels. */
  readonly convSep: MfnConvBlock;
  readonly features: MfnGDC;

  constructor(options: MobileFaceNetOptions = {}) {
    super();
    const embeddingSize = options.embeddingSize ?? 512;
    positiveInteger(embeddingSize, 'MobileFaceNet: embeddingSize');
    const blocks = options.blocks ?? [1, 4, 6, 2];
    if (!Array.isArray(blocks) || blocks.length !== 4 || !blocks.every((n) => Number.isInteger(n) && n >= 1)) {
      throw new Error(`MobileFaceNet: blocks must be four positive integers, got ${JSON.stringify(blocks)}`);
    }
    const scale = options.scale ?? 2;
    positiveInteger(scale, 'MobileFaceNet: scale');
    const stemStride = options.stemStride ?? 2;
    if (stemStride !== 1 && stemStride !== 2) throw new Error(`MobileFaceNet: stemStride must be 1 or 2, got ${String(stemStride)}`);
    const [height, width] = imageSize(options.inputSize ?? 112, 'MobileFaceNet');
    this.embeddingSize = embeddingSize;
    this.inputShape = [3, height, width];
    this.blocks = [blocks[0], blocks[1], blocks[2], blocks[3]];
    this.scale = scale;
    this.stemStride = stemStride;
    const stem = (side: number): number => (stemStride === 2 ? halve(side) : side);
    this.featureMapSize = [halve(halve(halve(stem(height)))), halve(halve(halve(stem(width))))];

    const c64 = 64 * scale;
    const c128 = 128 * scale;
    this.layers = this.registerModule('layers', new Sequential(new MfnConvBlock(3, c64, { kernel: 3, stride: stemStride, padding: 1 })));
    // The group counts below are insightface's literal values; they do not follow `scale`.
    if (blocks[0] === 1) this.layers.append(new MfnConvBlock(c64, c64, { kernel: 3, stride: 1, padding: 1, groups: 64 }));
    else this.layers.append(new MfnResidual(c64, blocks[0], 128));
    this.layers.append(new MfnDepthWise(c64, c64, { kernel: 3, stride: 2, padding: 1, groups: 128 }));
    this.layers.append(new MfnResidual(c64, blocks[1], 128));
    this.layers.append(new MfnDepthWise(c64, c128, { kernel: 3, stride: 2, padding: 1, groups: 256 }));
    this.layers.append(new MfnResidual(c128, blocks[2], 256));
    this.layers.append(new MfnDepthWise(c128, c128, { kernel: 3, stride: 2, padding: 1, groups: 512 }));
    this.layers.append(new MfnResidual(c128, blocks[3], 256));
    this.convSep = this.registerModule('conv_sep', new MfnConvBlock(c128, 512, { kernel: 1, stride: 1, padding: 0 }));
    this.features = this.registerModule('features', new MfnGDC(embeddingSize, this.featureMapSize));

    // arcface_torch's _initialize_weights: Kaiming normal (fan_out, relu) for convs and the linear
    // layer, BatchNorm2d scale 1 / shift 0 (already the BN defaults), PReLU slopes 0.25.
    noGrad(() => {
      for (const module of this.modules()) {
        if (module instanceof Conv2d || module instanceof Linear) {
          kaimingNormal_(module.weight, { mode: 'fan_out', nonlinearity: 'relu' });
          module.bias?.zero_();
        }
      }
    });
  }

  forward(x: Tensor): Tensor {
    const [channels, height, width] = this.inputShape;
    if (x.ndim !== 4 || x.shape[1] !== channels || x.shape[2] !== height || x.shape[3] !== width) {
      throw new Error(`MobileFaceNet: expected input [N, ${channels}, ${height}, ${width}], got [${x.shape.join(', ')}]`);
    }
    return tidy(() => this.features.call(this.convSep.call(this.layers.call(x))));
  }
}

/** arcface_torch `get_mbf`: blocks (1, 4, 6, 2), scale 2. */
export function mobileFaceNet(options: Omit<MobileFaceNetOptions, 'blocks' | 'scale'> = {}): MobileFaceNet {
  return new MobileFaceNet({ ...options, blocks: [1, 4, 6, 2], scale: 2 });
}

/** `get_mbf` with a stride-1 stem: for inputs of 64 px and less (see MobileFaceNetOptions.stemStride). */
export function mobileFaceNetS1(options: Omit<MobileFaceNetOptions, 'blocks' | 'scale' | 'stemStride'> = {}): MobileFaceNet {
  return new MobileFaceNet({ ...options, blocks: [1, 4, 6, 2], scale: 2, stemStride: 1 });
}

/** arcface_torch `get_mbf_large`: blocks (2, 8, 12, 4), scale 4. */
export function mobileFaceNetLarge(options: Omit<MobileFaceNetOptions, 'blocks' | 'scale'> = {}): MobileFaceNet {
  return new MobileFaceNet({ ...options, blocks: [2, 8, 12, 4], scale: 4 });
}
