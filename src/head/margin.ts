// Margin losses on cosine logits: target logit = s * (cos(m1*theta + m2) - m3), others s * cos.
import { Tensor } from '../torch/tensor.js';
import * as F from '../torch/ops.js';
import { tidy } from '../torch/scope.js';
import { finiteNumber, positiveNumber } from '../util/validate.js';

export interface MarginOptions {
  /** Logit scale s. */
  s: number;
  /** Multiplicative angular margin (SphereFace). */
  m1: number;
  /** Additive angular margin (ArcFace). */
  m2: number;
  /** Additive cosine margin (CosFace). */
  m3: number;
}

// acos' derivative is infinite at +-1; angles are taken on cos clamped just inside.
const ACOS_LIMIT = 1 - 1e-7;

/**
 * The combined margin of InsightFace/PLSC. Embeddings and class centres are L2-normalized, so
 * logits are cosines in [-1, 1] (clamped). When m1*theta + m2 would pass pi the target would start
 * increasing again with theta; beyond theta* = (pi - m2) / m1 we use the linear fallback
 * cos(theta) - m3 - (1 + cos(theta*)), which meets the margin curve at theta* (both equal -1 - m3)
 * and keeps the target monotonic and continuous. (insightface's "th/mm" variant, cos - m2*sin(m2),
 * jumps at that point.) Gradients flow through the margin (as PLSC v2), not straight-through.
 * `normalized: false` is plain softmax: an ordinary FC with bias, no normalization, no margin.
 */
export class CombinedMarginLoss {
  readonly s: number;
  readonly m1: number;
  readonly m2: number;
  readonly m3: number;
  readonly normalized: boolean;

  constructor(options: MarginOptions & { normalized?: boolean }) {
    const { s, m1, m2, m3 } = options;
    for (const [name, value] of Object.entries({ s, m1, m2, m3 })) {
      finiteNumber(value, `margin ${name}`);
    }
    positiveNumber(s, 'margin scale s');
    positiveNumber(m1, 'margin m1');
    this.s = s;
    this.m1 = m1;
    this.m2 = m2;
    this.m3 = m3;
    this.normalized = options.normalized ?? true;
    if (!this.normalized && (m1 !== 1 || m2 !== 0 || m3 !== 0)) {
      throw new RangeError('plain softmax (normalized: false) takes no margin');
    }
  }

  static arcface(s = 64, m = 0.5): CombinedMarginLoss {
    return new CombinedMarginLoss({ s, m1: 1, m2: m, m3: 0 });
  }
  static cosface(s = 64, m = 0.4): CombinedMarginLoss {
    return new CombinedMarginLoss({ s, m1: 1, m2: 0, m3: m });
  }
  static sphereface(s = 64, m = 1.35): CombinedMarginLoss {
    return new CombinedMarginLoss({ s, m1: m, m2: 0, m3: 0 });
  }
  /** Plain softmax: an ordinary FC with bias, no normalization, no margin, s = 1. */
  static softmax(): CombinedMarginLoss {
    return new CombinedMarginLoss({ s: 1, m1: 1, m2: 0, m3: 0, normalized: false });
  }

  /** True when the target needs the angle (m1 != 1 or m2 != 0); CosFace and softmax do not. */
  get angular(): boolean {
    return this.m1 !== 1 || this.m2 !== 0;
  }

  /** The margin as a plain function of one cosine (for reports and tests). */
  targetOf(cosine: number): number {
    if (!this.normalized) return cosine;
    const c = Math.min(1, Math.max(-1, cosine));
    if (!this.angular) return c - this.m3;
    const theta = Math.acos(Math.min(ACOS_LIMIT, Math.max(-ACOS_LIMIT, c)));
    const angle = this.m1 * theta + this.m2;
    if (angle <= Math.PI) return Math.cos(angle) - this.m3;
    return c - this.m3 - this.fallbackShift;
  }

  /** 1 + cos(theta*), theta* = (pi - m2) / m1: the offset of the linear fallback branch. */
  get fallbackShift(): number {
    return 1 + Math.cos((Math.PI - this.m2) / this.m1);
  }

  /**
   * The target value psi(cos) and d psi / d cos for a vector of target cosines (already clamped
   * to [-1, 1]); used by the sharded head, whose backward is written out by hand.
   */
  targetWithDerivative(cosine: Tensor): { value: Tensor; derivative: Tensor } {
    if (!this.normalized || !this.angular) {
      return { value: F.sub(cosine, this.m3), derivative: F.onesLike(cosine) };
    }
    return tidy(() => {
      const { clamped, angle, inRange } = this.angleOf(cosine);
      // d/dc cos(m1*acos(c) + m2) = m1 * sin(m1*theta + m2) / sqrt(1 - c^2)
      const sinTheta = F.sqrt(F.sub(F.neg(F.mul(clamped, clamped)), -1));
      const marginDerivative = F.div(F.mul(F.sin(angle), this.m1), sinTheta);
      return { value: this.psi(cosine, angle, inRange), derivative: F.where(inRange, marginDerivative, F.onesLike(cosine)) };
    });
  }

  /** psi(cos) built from differentiable ops (the dense reference path and single-device use). */
  target(cosine: Tensor): Tensor {
    if (!this.normalized || !this.angular) return F.sub(cosine, this.m3);
    return tidy(() => {
      const { angle, inRange } = this.angleOf(cosine);
      return this.psi(cosine, angle, inRange);
    });
  }

  // m1 * acos(c) + m2 on c clamped just inside [-1, 1], and where it stays within pi.
  private angleOf(cosine: Tensor): { clamped: Tensor; angle: Tensor; inRange: Tensor } {
    const clamped = F.clamp(cosine, -ACOS_LIMIT, ACOS_LIMIT);
    const angle = F.add(F.mul(F.acos(clamped), this.m1), this.m2);
    return { clamped, angle, inRange: F.le(angle, Math.PI) };
  }

  // cos(angle) - m3 within range, the linear fallback beyond it.
  private psi(cosine: Tensor, angle: Tensor, inRange: Tensor): Tensor {
    return F.where(inRange, F.sub(F.cos(angle), this.m3), F.sub(cosine, this.m3 + this.fallbackShift));
  }

  describe(): string {
    if (!this.normalized) return 'softmax';
    return `combined margin s=${this.s} m1=${this.m1} m2=${this.m2} m3=${this.m3}`;
  }
}

export type LossType = 'softmax' | 'arcface' | 'cosface' | 'dist_softmax' | 'dist_arcface' | 'dist_cosface';

export const LOSS_TYPES: readonly LossType[] = ['softmax', 'arcface', 'cosface', 'dist_softmax', 'dist_arcface', 'dist_cosface'];

/**
 * PLSC loss-type names. dist_* shard the FC over the workers (one shard on one worker); the plain
 * names keep the whole FC on every worker (data parallel only). `margins` overrides (m1, m2, m3).
 */
export function marginForLossType(lossType: string, options: { scale?: number; margins?: [number, number, number] } = {}): {
  margin: CombinedMarginLoss;
  sharded: boolean;
} {
  const sharded = lossType.startsWith('dist_');
  const base = sharded ? lossType.slice('dist_'.length) : lossType;
  const scale = options.scale ?? 64;
  let margin: CombinedMarginLoss;
  if (base === 'softmax') {
    margin = CombinedMarginLoss.softmax();
  } else if (base === 'arcface' || base === 'cosface' || base === 'combined') {
    const defaults: [number, number, number] = base === 'cosface' ? [1, 0, 0.4] : [1, 0.5, 0];
    const [m1, m2, m3] = options.margins ?? defaults;
    margin = new CombinedMarginLoss({ s: scale, m1, m2, m3 });
  } else {
    throw new RangeError(`unknown loss type '${lossType}' (expected one of ${LOSS_TYPES.join(', ')}, or combined/dist_combined with margins)`);
  }
  return { margin, sharded };
}
