// IEEE 754 binary16 <-> binary32 conversion for fp16 weights (ONNX initializers, safetensors).

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Decode one binary16 bit pattern to a number. */
export function halfBitsToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** Encode a number to binary16 bits with round-to-nearest-even (overflow goes to +-Infinity). */
export function floatToHalfBits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    if (halfExponent < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - halfExponent;
    let half = mantissa >> shift;
    const remainder = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (remainder > halfway || (remainder === halfway && (half & 1) !== 0)) half += 1;
    return sign | half;
  }
  let half = (halfExponent << 10) | (mantissa >> 13);
  const remainder = mantissa & 0x1fff;
  if (remainder > 0x1000 || (remainder === 0x1000 && (half & 1) !== 0)) half += 1;
  return sign | half;
}

// A 65536-entry lookup table makes bulk fp16 -> fp32 conversion a single indexed load per element.
let halfTable: Float32Array | undefined;
function table(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits++) halfTable[bits] = halfBitsToFloat(bits);
  }
  return halfTable;
}

/** Convert binary16 bit patterns to float32, writing into `out` (allocated when omitted). */
export function halfToFloat32(bits: Uint16Array, out?: Float32Array): Float32Array {
  const result = out ?? new Float32Array(bits.length);
  if (result.length < bits.length) throw new RangeError(`output holds ${result.length} values, need ${bits.length}`);
  const lookup = table();
  for (let i = 0; i < bits.length; i++) result[i] = lookup[bits[i]!]!;
  return result;
}

/** Convert float32 values to binary16 bit patterns. */
export function float32ToHalf(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = floatToHalfBits(values[i]!);
  return out;
}
