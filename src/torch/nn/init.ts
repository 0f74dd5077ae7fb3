// Parameter initializers (torch.nn.init): in place, without autograd, returning the tensor.
import { Tensor } from '../tensor.js';
import { noGrad } from '../autograd.js';

export type Nonlinearity = 'linear' | 'conv1d' | 'conv2d' | 'conv3d' | 'sigmoid' | 'tanh' | 'relu' | 'leaky_relu' | 'selu';
export type FanMode = 'fan_in' | 'fan_out';

/** The recommended gain for a nonlinearity (torch.nn.init.calculate_gain); `param` is leaky_relu's slope. */
export function calculateGain(nonlinearity: Nonlinearity, param?: number): number {
  switch (nonlinearity) {
    case 'linear':
    case 'conv1d':
    case 'conv2d':
    case 'conv3d':
    case 'sigmoid':
      return 1;
    case 'tanh':
      return 5 / 3;
    case 'relu':
      return Math.SQRT2;
    case 'leaky_relu': {
      const slope = param ?? 0.01;
      return Math.sqrt(2 / (1 + slope * slope));
    }
    case 'selu':
      return 3 / 4;
    default:
      throw new Error(`calculateGain: unsupported nonlinearity '${String(nonlinearity)}'`);
  }
}

/** [fanIn, fanOut] of a weight: dim 1 and dim 0 times the receptive field (dims 2...). */
export function calculateFanInAndFanOut(tensor: Tensor): [number, number] {
  const shape = tensor.shape;
  if (shape.length < 2) {
    throw new Error(`fan in and fan out cannot be computed for a tensor with fewer than 2 dimensions (shape [${shape.join(', ')}])`);
  }
  let receptive = 1;
  for (const d of shape.slice(2)) receptive *= d;
  return [(shape[1] as number) * receptive, (shape[0] as number) * receptive];
}

function fanOf(tensor: Tensor, mode: FanMode): number {
  const [fanIn, fanOut] = calculateFanInAndFanOut(tensor);
  if (mode === 'fan_in') return fanIn;
  if (mode === 'fan_out') return fanOut;
  throw new Error(`unknown fan mode '${String(mode)}' (expected fan_in or fan_out)`);
}

export interface KaimingOptions {
  /** Negative slope of the rectifier after this layer (leaky_relu only). */
  a?: number;
  mode?: FanMode;
  nonlinearity?: Nonlinearity;
}

/** U(-bound, bound) with bound = gain * sqrt(3 / fan) (He et al.). Defaults as torch: a=0, fan_in, leaky_relu. */
export function kaimingUniform_(tensor: Tensor, options: KaimingOptions = {}): Tensor {
  const gain = calculateGain(options.nonlinearity ?? 'leaky_relu', options.a ?? 0);
  const std = gain / Math.sqrt(fanOf(tensor, options.mode ?? 'fan_in'));
  const bound = Math.sqrt(3) * std;
  return noGrad(() => tensor.uniform_(-bound, bound));
}

/** N(0, std^2) with std = gain / sqrt(fan). */
export function kaimingNormal_(tensor: Tensor, options: KaimingOptions = {}): Tensor {
  const gain = calculateGain(options.nonlinearity ?? 'leaky_relu', options.a ?? 0);
  const std = gain / Math.sqrt(fanOf(tensor, options.mode ?? 'fan_in'));
  return noGrad(() => tensor.normal_(0, std));
}

/** U(-a, a) with a = gain * sqrt(6 / (fanIn + fanOut)) (Glorot). */
export function xavierUniform_(tensor: Tensor, gain = 1): Tensor {
  const [fanIn, fanOut] = calculateFanInAndFanOut(tensor);
  const bound = gain * Math.sqrt(6 / (fanIn + fanOut));
  return noGrad(() => tensor.uniform_(-bound, bound));
}

/** N(0, std^2) with std = gain * sqrt(2 / (fanIn + fanOut)). */
export function xavierNormal_(tensor: Tensor, gain = 1): Tensor {
  const [fanIn, fanOut] = calculateFanInAndFanOut(tensor);
  const std = gain * Math.sqrt(2 / (fanIn + fanOut));
  return noGrad(() => tensor.normal_(0, std));
}

export function uniform_(tensor: Tensor, low = 0, high = 1): Tensor {
  return noGrad(() => tensor.uniform_(low, high));
}

export function normal_(tensor: Tensor, mean = 0, std = 1): Tensor {
  return noGrad(() => tensor.normal_(mean, std));
}

export function constant_(tensor: Tensor, value: number): Tensor {
  return noGrad(() => tensor.fill_(value));
}

export function zeros_(tensor: Tensor): Tensor {
  return noGrad(() => tensor.zero_());
}

export function ones_(tensor: Tensor): Tensor {
  return noGrad(() => tensor.fill_(1));
}

/**
 * PyTorch's default initialization of a Conv/Linear weight and bias: kaiming_uniform_ with
 * a = sqrt(5) (bound 1/sqrt(fanIn)), bias uniform in +-1/sqrt(fanIn).
 */
export function defaultWeightInit_(weight: Tensor, bias: Tensor | null): void {
  kaimingUniform_(weight, { a: Math.sqrt(5) });
  if (bias !== null) {
    const [fanIn] = calculateFanInAndFanOut(weight);
    const bound = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
    uniform_(bias, -bound, bound);
  }
}
