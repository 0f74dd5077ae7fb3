/**
 * Synthetic datasets for demos, tests and benchmarks, deterministic in (seed, index):
 *
 * - SyntheticFaces: raw RGB images drawn procedurally. Each class has its own background gradient,
 *   stripe texture, "face" oval and arrangement of colored blobs; each sample varies by a small
 *   shift, per-blob jitter, brightness/contrast, color cast and pixel noise. Rendered straight into
 *   CHW bytes in plain TypeScript (no codec), so generation is cheap.
 * - SyntheticFeatures: feature vectors around per-class unit centroids (text/news-style use).
 */
import { Rng, hashSeeds } from './random.js';
import { checkIndex, type SampleSource, type SamplePayload } from './source.js';
import { integer, integerAtLeast, positiveInteger } from '../util/validate.js';

export interface SyntheticFacesOptions {
  numClasses: number;
  imagesPerClass: number;
  /** Side length in pixels. Default 112. */
  size?: number;
  /** Default 0. */
  seed?: number;
  /** Amplitude of uniform per-pixel noise, in pixel levels. Default 12. */
  noise?: number;
  /** Largest per-sample shift in pixels. Default size / 28 (4 px at 112). */
  maxShift?: number;
}

const BLOBS_PER_CLASS = 6;

interface ClassStyle {
  bgTop: [number, number, number];
  bgBottom: [number, number, number];
  stripeCos: number;
  stripeSin: number;
  stripeInvPeriod: number;
  stripePhase: number;
  stripeWeights: [number, number, number];
  faceX: number;
  faceY: number;
  faceRx: number;
  faceRy: number;
  skin: [number, number, number];
  blobX: Float64Array;
  blobY: Float64Array;
  blobR: Float64Array;
  blobColor: Float64Array; // 3 per blob
}

export class SyntheticFaces implements SampleSource {
  readonly length: number;
  readonly numClasses: number;
  readonly imagesPerClass: number;
  readonly size: number;
  readonly seed: number;
  private readonly noise: number;
  private readonly maxShift: number;
  private readonly scratch: Float32Array;
  private readonly styleCache = new Map<number, ClassStyle>();

  constructor(options: SyntheticFacesOptions) {
    const { numClasses, imagesPerClass } = options;
    positiveInteger(numClasses, 'numClasses');
    positiveInteger(imagesPerClass, 'imagesPerClass');
    if (numClasses * imagesPerClass > 0x7fffffff) throw new RangeError('numClasses * imagesPerClass must stay below 2^31');
    this.size = options.size ?? 112;
    integerAtLeast(this.size, 'size', 8);
    this.seed = options.seed ?? 0;
    integer(this.seed, 'seed');
    this.noise = options.noise ?? 12;
    this.maxShift = options.maxShift ?? this.size / 28;
    this.numClasses = numClasses;
    this.imagesPerClass = imagesPerClass;
    this.length = numClasses * imagesPerClass;
    this.scratch = new Float32Array(3 * this.size * this.size);
  }

  /** Samples are grouped by class: index i has label floor(i / imagesPerClass). */
  label(index: number): number {
    checkIndex(index, this.length);
    return Math.floor(index / this.imagesPerClass);
  }

  describe(index: number): string {
    return `synthetic sample ${index} (class ${this.label(index)})`;
  }

  async read(index: number): Promise<SamplePayload> {
    return { kind: 'raw', pixels: this.render(index), width: this.size, height: this.size, layout: 'chw' };
  }

  readChwInto(index: number, width: number, height: number, out: Uint8Array, offset: number): boolean {
    if (width !== this.size || height !== this.size) return false;
    this.render(index, out, offset);
    return true;
  }

  /** Draw sample `index` as CHW RGB into out[offset...] (allocated when omitted). */
  render(index: number, out?: Uint8Array, offset = 0): Uint8Array {
    const label = this.label(index);
    const S = this.size;
    const plane = S * S;
    const target = out ?? new Uint8Array(3 * plane);
    if (offset + 3 * plane > target.length) throw new RangeError('render target too small');
    const style = this.style(label);
    const rng = new Rng(hashSeeds(this.seed, 0x5a3c, index));
    const dx = rng.uniform(-this.maxShift, this.maxShift);
    const dy = rng.uniform(-this.maxShift, this.maxShift);
    const gain = rng.uniform(0.8, 1.2);
    const bias = rng.uniform(-20, 20);
    const cast0 = rng.uniform(-8, 8);
    const cast1 = rng.uniform(-8, 8);
    const cast2 = rng.uniform(-8, 8);
    const P = this.scratch;

    // Background: vertical gradient plus a class-specific stripe texture.
    const { bgTop, bgBottom, stripeCos, stripeSin, stripeInvPeriod, stripePhase, stripeWeights } = style;
    for (let y = 0; y < S; y++) {
      const t = y / (S - 1);
      const base0 = bgTop[0] + (bgBottom[0] - bgTop[0]) * t;
      const base1 = bgTop[1] + (bgBottom[1] - bgTop[1]) * t;
      const base2 = bgTop[2] + (bgBottom[2] - bgTop[2]) * t;
      let u = ((0 - dx) * stripeCos + (y - dy) * stripeSin) * stripeInvPeriod + stripePhase;
      const du = stripeCos * stripeInvPeriod;
      const row = y * S;
      for (let x = 0; x < S; x++, u += du) {
        const f = u - Math.floor(u);
        const w = 4 * Math.abs(f - 0.5) - 1;
        P[row + x] = base0 + w * stripeWeights[0];
        P[plane + row + x] = base1 + w * stripeWeights[1];
        P[2 * plane + row + x] = base2 + w * stripeWeights[2];
      }
    }
    // Face oval, then blobs on top (filled row spans, no per-pixel distance tests).
    fillEllipse(P, S, style.faceX + dx, style.faceY + dy, style.faceRx, style.faceRy, style.skin[0], style.skin[1], style.skin[2]);
    const jitter = S / 56;
    for (let b = 0; b < BLOBS_PER_CLASS; b++) {
      const r = style.blobR[b]! * rng.uniform(0.9, 1.1);
      const cx = style.blobX[b]! + dx + rng.uniform(-jitter, jitter);
      const cy = style.blobY[b]! + dy + rng.uniform(-jitter, jitter);
      fillEllipse(P, S, cx, cy, r, r, style.blobColor[3 * b]!, style.blobColor[3 * b + 1]!, style.blobColor[3 * b + 2]!);
    }
    // Brightness/contrast, color cast and uniform noise; Uint8ClampedArray rounds and clamps.
    const clamped = new Uint8ClampedArray(target.buffer, target.byteOffset + offset, 3 * plane);
    let state = (rng.nextU32() | 1) >>> 0;
    const noiseScale = (2 * this.noise) / 4294967296;
    const casts = [cast0, cast1, cast2];
    for (let c = 0; c < 3; c++) {
      const shift = bias + casts[c]! - this.noise;
      const start = c * plane;
      for (let p = start; p < start + plane; p++) {
        state ^= state << 13;
        state ^= state >>> 17;
        state ^= state << 5;
        clamped[p] = P[p]! * gain + shift + (state >>> 0) * noiseScale;
      }
    }
    return target;
  }

  private style(label: number): ClassStyle {
    const cached = this.styleCache.get(label);
    if (cached !== undefined) return cached;
    const S = this.size;
    const rng = new Rng(hashSeeds(this.seed, 0xc1a55, label));
    const color = (lo: number, hi: number): [number, number, number] => [rng.uniform(lo, hi), rng.uniform(lo, hi), rng.uniform(lo, hi)];
    const angle = rng.uniform(0, Math.PI);
    const amplitude = rng.uniform(10, 40);
    const faceRx = rng.uniform(0.26, 0.36) * S;
    const faceRy = rng.uniform(0.32, 0.44) * S;
    const faceX = S / 2 + rng.uniform(-S / 16, S / 16);
    const faceY = S / 2 + rng.uniform(-S / 16, S / 16);
    const style: ClassStyle = {
      bgTop: color(0, 255),
      bgBottom: color(0, 255),
      stripeCos: Math.cos(angle),
      stripeSin: Math.sin(angle),
      stripeInvPeriod: 1 / rng.uniform(S / 16, S / 5),
      stripePhase: rng.uniform(0, 1),
      stripeWeights: [amplitude * rng.uniform(-1, 1), amplitude * rng.uniform(-1, 1), amplitude * rng.uniform(-1, 1)],
      faceX,
      faceY,
      faceRx,
      faceRy,
      skin: color(50, 230),
      blobX: new Float64Array(BLOBS_PER_CLASS),
      blobY: new Float64Array(BLOBS_PER_CLASS),
      blobR: new Float64Array(BLOBS_PER_CLASS),
      blobColor: new Float64Array(3 * BLOBS_PER_CLASS),
    };
    for (let b = 0; b < BLOBS_PER_CLASS; b++) {
      style.blobX[b] = faceX + rng.uniform(-0.7, 0.7) * faceRx;
      style.blobY[b] = faceY + rng.uniform(-0.7, 0.7) * faceRy;
      style.blobR[b] = rng.uniform(0.05, 0.11) * S;
      for (let c = 0; c < 3; c++) style.blobColor[3 * b + c] = rng.uniform(0, 255);
    }
    if (this.styleCache.size >= 4096) this.styleCache.clear();
    this.styleCache.set(label, style);
    return style;
  }
}

function fillEllipse(P: Float32Array, S: number, cx: number, cy: number, rx: number, ry: number, c0: number, c1: number, c2: number): void {
  const plane = S * S;
  const y0 = Math.max(0, Math.ceil(cy - ry));
  const y1 = Math.min(S - 1, Math.floor(cy + ry));
  for (let y = y0; y <= y1; y++) {
    const t = (y - cy) / ry;
    const half = rx * Math.sqrt(Math.max(0, 1 - t * t));
    const x0 = Math.max(0, Math.ceil(cx - half));
    const x1 = Math.min(S - 1, Math.floor(cx + half));
    if (x1 < x0) continue;
    const row = y * S;
    P.fill(c0, row + x0, row + x1 + 1);
    P.fill(c1, plane + row + x0, plane + row + x1 + 1);
    P.fill(c2, 2 * plane + row + x0, 2 * plane + row + x1 + 1);
  }
}

export interface SyntheticFeaturesOptions {
  numClasses: number;
  samplesPerClass: number;
  dim: number;
  /** Default 0. */
  seed?: number;
  /** Norm of the noise relative to the unit-norm centroid. Default 0.5. */
  noise?: number;
}

/** A batch of feature vectors, row-major [N, D]. */
export interface FeatureBatch {
  features: Float32Array;
  labels: Int32Array;
  indices: Int32Array;
  shape: [number, number];
}

/** Read-only access to a feature-vector dataset (what FeatureLoader consumes). */
export interface FeatureSource {
  readonly length: number;
  readonly numClasses: number;
  readonly dim: number;
  label(index: number): number;
  /** Write sample `index`'s vector into out[offset...offset+dim). */
  featuresInto(index: number, out: Float32Array, offset: number): void;
}

/**
 * Gaussian clusters: class c has a unit centroid drawn from (seed, c); sample i is
 * centroid(label) + noise * g / sqrt(dim), g standard normal from (seed, i). Centroids are
 * regenerated on demand, so memory does not grow with the class count.
 */
export class SyntheticFeatures implements FeatureSource {
  readonly length: number;
  readonly numClasses: number;
  readonly samplesPerClass: number;
  readonly dim: number;
  readonly seed: number;
  readonly noise: number;

  constructor(options: SyntheticFeaturesOptions) {
    const { numClasses, samplesPerClass, dim } = options;
    for (const [name, value] of [['numClasses', numClasses], ['samplesPerClass', samplesPerClass], ['dim', dim]] as const) {
      positiveInteger(value, name);
    }
    if (numClasses * samplesPerClass > 0x7fffffff) throw new RangeError('numClasses * samplesPerClass must stay below 2^31');
    this.numClasses = numClasses;
    this.samplesPerClass = samplesPerClass;
    this.dim = dim;
    this.length = numClasses * samplesPerClass;
    this.seed = options.seed ?? 0;
    integer(this.seed, 'seed');
    this.noise = options.noise ?? 0.5;
  }

  label(index: number): number {
    checkIndex(index, this.length);
    return Math.floor(index / this.samplesPerClass);
  }

  /** Class `label`'s unit-norm centroid. */
  centroid(label: number, out: Float32Array = new Float32Array(this.dim), offset = 0): Float32Array {
    checkIndex(label, this.numClasses, 'class');
    const rng = new Rng(hashSeeds(this.seed, 0xce7, label));
    let norm = 0;
    for (let d = 0; d < this.dim; d++) {
      const v = rng.normal();
      out[offset + d] = v;
      norm += v * v;
    }
    const inv = 1 / Math.sqrt(norm);
    for (let d = 0; d < this.dim; d++) out[offset + d]! *= inv;
    return out;
  }

  featuresInto(index: number, out: Float32Array, offset: number): void {
    this.centroid(this.label(index), out, offset);
    const rng = new Rng(hashSeeds(this.seed, 0xfea7, index));
    const scale = this.noise / Math.sqrt(this.dim);
    for (let d = 0; d < this.dim; d++) out[offset + d]! += scale * rng.normal();
  }

  /** Sample `index`'s vector. */
  features(index: number): Float32Array {
    const out = new Float32Array(this.dim);
    this.featuresInto(index, out, 0);
    return out;
  }
}

/** Gather samples `indices` of a FeatureSource into one batch. */
export function gatherFeatures(source: FeatureSource, indices: ArrayLike<number>): FeatureBatch {
  const n = indices.length;
  const features = new Float32Array(n * source.dim);
  const labels = new Int32Array(n);
  const idx = Int32Array.from(indices);
  for (let i = 0; i < n; i++) {
    source.featuresInto(idx[i]!, features, i * source.dim);
    labels[i] = source.label(idx[i]!);
  }
  return { features, labels, indices: idx, shape: [n, source.dim] };
}
