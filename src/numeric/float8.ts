/**
 * Decoding of the two 8-bit float formats of safetensors: `F8_E5M2` and
 * `F8_E4M3` (the "FN" variant PyTorch calls `float8_e4m3fn`: no infinities,
 * only S.1111.111 is NaN).
 *
 * @module
 */

import { f16BitsToF32 } from "./float16_portable.ts";

/**
 * Value of one `F8_E5M2` byte. E5M2 is the top byte of an F16, so this is
 * exact and keeps infinities and NaN.
 *
 * @example
 * ```ts
 * import { f8E5M2ToF32 } from "./float8.ts";
 * console.log(f8E5M2ToF32(0x3c)); // 1
 * ```
 */
export function f8E5M2ToF32(byte: number): number {
  return f16BitsToF32((byte & 0xff) << 8);
}

/**
 * Value of one `F8_E4M3` (FN) byte: exponent bias 7, subnormals, no
 * infinities; `0x7f` and `0xff` are NaN.
 *
 * @example
 * ```ts
 * import { f8E4M3ToF32 } from "./float8.ts";
 * console.log(f8E4M3ToF32(0x38), f8E4M3ToF32(0x7e)); // 1 448
 * ```
 */
export function f8E4M3ToF32(byte: number): number {
  const negative = (byte & 0x80) !== 0;
  const exponent = (byte >>> 3) & 0xf;
  const mantissa = byte & 0x7;
  let value: number;
  if (exponent === 0xf && mantissa === 0x7) return NaN;
  if (exponent === 0) value = mantissa * 2 ** -9;
  else value = (8 + mantissa) * 2 ** (exponent - 10);
  return negative ? -value : value;
}
