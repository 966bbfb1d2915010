/**
 * Portable IEEE 754 half precision (F16) and bfloat16 (BF16) conversions to
 * and from float32, on raw bits (a `Uint32Array` alias of the float32 side),
 * so they allocate nothing per element and need no table. `./float16.ts`
 * uses them where the runtime has no `Float16Array` (Node 20, older
 * browsers); the scalar and BF16 ones everywhere.
 *
 * @module
 */

import { SafetensorsError } from "../errors.ts";

/** 2^-24: the value of the least significant bit of an F16 subnormal. */
const F16_SUBNORMAL_UNIT = 2 ** -24;

/**
 * Throws unless a conversion's `dst` has as many elements as its `src`.
 *
 * @throws {SafetensorsError} naming the conversion.
 * @example
 * ```ts
 * import { checkLengths } from "./float16_portable.ts";
 * checkLengths("f16ToF32", 3, 3); // ok
 * ```
 */
export function checkLengths(fn: string, src: number, dst: number): void {
  if (src !== dst) {
    throw new SafetensorsError(
      `dst has ${dst} elements but src has ${src}; pass a dst of the same length (or a subarray)`,
      { key: fn },
    );
  }
}

/**
 * Converts F16 bit patterns to float32 values, exactly (every F16 value,
 * subnormals included, is representable in float32; NaN stays NaN, keeping
 * its payload bits).
 *
 * @param src F16 bit patterns, one per element.
 * @param dst Where to write; a new array when omitted. Must have `src.length` elements.
 * @returns `dst`.
 * @example
 * ```ts
 * import { f16ToF32Portable } from "./float16_portable.ts";
 * f16ToF32Portable(new Uint16Array([0x3c00, 0xc000, 0x0001])); // [1, -2, 5.96e-8]
 * ```
 */
export function f16ToF32Portable(
  src: Uint16Array,
  dst: Float32Array = new Float32Array(src.length),
): Float32Array {
  checkLengths("f16ToF32", src.length, dst.length);
  const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) {
    const h = src[i];
    const sign = (h & 0x8000) << 16;
    const magnitude = h & 0x7fff;
    if (magnitude >= 0x7c00) {
      // Inf/NaN: max exponent, mantissa moved to the top of float32's.
      out[i] = sign | 0x7f800000 | ((magnitude & 0x3ff) << 13);
    } else if (magnitude >= 0x0400) {
      // Normal: shift into place and rebias the exponent by 127 - 15.
      out[i] = sign | ((magnitude << 13) + 0x38000000);
    } else {
      // Subnormal or zero: an integer count of 2^-24, exact in float32.
      const value = magnitude * F16_SUBNORMAL_UNIT;
      dst[i] = sign ? -value : value;
    }
  }
  return dst;
}

/**
 * Converts BF16 bit patterns to float32 values, exactly (BF16 is the top
 * half of a float32).
 *
 * @param src BF16 bit patterns, one per element.
 * @param dst Where to write; a new array when omitted. Must have `src.length` elements.
 * @returns `dst`.
 * @example
 * ```ts
 * import { bf16ToF32 } from "./float16_portable.ts";
 * bf16ToF32(new Uint16Array([0x3f80, 0x4049])); // [1, 3.140625]
 * ```
 */
export function bf16ToF32(
  src: Uint16Array,
  dst: Float32Array = new Float32Array(src.length),
): Float32Array {
  checkLengths("bf16ToF32", src.length, dst.length);
  const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
  return dst;
}

/**
 * Rounds float32 bits to F16 bits, to nearest with ties to even. Magnitudes
 * of 65520 and above become infinity; NaN stays NaN (quiet, top payload bits
 * kept).
 *
 * @example
 * ```ts
 * import { f32BitsToF16Bits } from "./float16_portable.ts";
 * console.log(f32BitsToF16Bits(0x3f800000).toString(16)); // "3c00"
 * ```
 */
export function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const abs = x & 0x7fffffff;
  if (abs >= 0x7f800000) {
    if (abs === 0x7f800000) return sign | 0x7c00;
    // Force the quiet bit so a NaN whose payload sits in dropped bits
    // cannot turn into infinity.
    return sign | 0x7e00 | ((abs >>> 13) & 0x3ff);
  }
  // 65520 (0x477ff000) is halfway between 65504 (odd mantissa) and 2^16:
  // ties to even rounds it up, to infinity.
  if (abs >= 0x477ff000) return sign | 0x7c00;
  if (abs >= 0x38800000) {
    // Normal result: rebias, then drop 13 mantissa bits rounding to even.
    // A carry out of the mantissa correctly bumps the exponent.
    const v = abs - 0x38000000;
    return sign | ((v + 0x0fff + ((v >>> 13) & 1)) >>> 13);
  }
  if (abs > 0x33000000) {
    // Subnormal result, in units of 2^-24: the 24-bit significand shifted
    // right by 126 - exponent (14..24), rounding to even.
    const shift = 126 - (abs >>> 23);
    const m = (abs & 0x7fffff) | 0x800000;
    return sign |
      ((m + (1 << (shift - 1)) - 1 + ((m >>> shift) & 1)) >>> shift);
  }
  // At most 2^-25: rounds to zero (2^-25 itself is a tie, and 0 is even).
  return sign;
}

/**
 * Converts float32 values to F16 bit patterns, rounding to nearest with ties
 * to even; subnormals are rounded correctly, magnitudes of 65520 and above
 * overflow to infinity, NaN stays NaN.
 *
 * @param src float32 values.
 * @param dst Where to write; a new array when omitted. Must have `src.length` elements.
 * @returns `dst`.
 * @example
 * ```ts
 * import { f32ToF16Portable } from "./float16_portable.ts";
 * f32ToF16Portable(new Float32Array([1, 65520, 1e-8])); // [0x3c00, 0x7c00, 0x0000]
 * ```
 */
export function f32ToF16Portable(
  src: Float32Array,
  dst: Uint16Array = new Uint16Array(src.length),
): Uint16Array {
  checkLengths("f32ToF16", src.length, dst.length);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) dst[i] = f32BitsToF16Bits(bits[i]);
  return dst;
}

/**
 * Converts one F16 bit pattern (only the low 16 bits of `bits` are used) to
 * its numeric value.
 *
 * @example
 * ```ts
 * import { f16BitsToF32 } from "./float16_portable.ts";
 * console.log(f16BitsToF32(0x3555)); // 0.333251953125
 * ```
 */
export function f16BitsToF32(bits: number): number {
  const negative = (bits & 0x8000) !== 0;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  let value: number;
  if (exponent === 0) value = mantissa * F16_SUBNORMAL_UNIT;
  else if (exponent === 0x1f) value = mantissa ? NaN : Infinity;
  else value = (0x400 + mantissa) * 2 ** (exponent - 25);
  return negative ? -value : value;
}
