/**
 * F16 and BF16 conversions to and from float32 for whole arrays. F16 uses
 * the runtime's `Float16Array` where it exists (Deno, Bun, current
 * browsers), and the portable bit-level code of `./float16_portable.ts`
 * elsewhere (Node 20). Both are exact one way and round to nearest, ties to
 * even, the other; they differ only in NaN payloads: `Float16Array` quiets
 * a NaN (and drops a float32 NaN's payload), the portable code keeps the
 * payload bits that fit. A NaN stays a NaN of the same sign either way.
 *
 * @module
 */

import { checkLengths, f16ToF32Portable, f32BitsToF16Bits, f32ToF16Portable } from "./float16_portable.ts";

export { bf16ToF32, f16BitsToF32 } from "./float16_portable.ts";

/** The subset of `Float16Array` used here (ES2025; not yet in every lib.d.ts). */
interface Float16ArrayLike extends ArrayLike<number> {
  set(values: ArrayLike<number>): void;
}
type Float16ArrayConstructorLike = new (
  buffer: ArrayBufferLike,
  byteOffset?: number,
  length?: number,
) => Float16ArrayLike;

/** The runtime's `Float16Array`, or `undefined` where it has none. */
const NATIVE_F16 = (globalThis as { Float16Array?: Float16ArrayConstructorLike }).Float16Array;

/**
 * Whether this runtime has `Float16Array`, so {@linkcode f16ToF32} and
 * {@linkcode f32ToF16} run natively.
 *
 * @example
 * ```ts
 * import { hasNativeFloat16 } from "./float16.ts";
 * console.log(hasNativeFloat16()); // true in Deno 2 and Bun 1.4, false in Node 20
 * ```
 */
export function hasNativeFloat16(): boolean {
  return NATIVE_F16 !== undefined;
}

/**
 * Converts F16 bit patterns to float32 values, exactly (every F16 value,
 * subnormals included, is representable in float32; NaN stays NaN).
 *
 * @param src F16 bit patterns, one per element.
 * @param dst Where to write; a new array when omitted. Must have `src.length` elements.
 * @returns `dst`.
 * @throws {SafetensorsError} when `dst` has another length.
 * @example
 * ```ts
 * import { f16ToF32 } from "./float16.ts";
 * f16ToF32(new Uint16Array([0x3c00, 0xc000, 0x0001])); // [1, -2, 5.96e-8]
 * ```
 */
export function f16ToF32(src: Uint16Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  checkLengths("f16ToF32", src.length, dst.length);
  if (!NATIVE_F16) return f16ToF32Portable(src, dst);
  dst.set(new NATIVE_F16(src.buffer, src.byteOffset, src.length));
  return dst;
}

/**
 * Converts float32 values to F16 bit patterns, rounding to nearest with ties
 * to even; subnormals are rounded correctly, magnitudes of 65520 and above
 * overflow to infinity, NaN stays NaN.
 *
 * @param src float32 values.
 * @param dst Where to write; a new array when omitted. Must have `src.length` elements.
 * @returns `dst`.
 * @throws {SafetensorsError} when `dst` has another length.
 * @example
 * ```ts
 * import { f32ToF16 } from "./float16.ts";
 * f32ToF16(new Float32Array([1, 65520, 1e-8])); // [0x3c00, 0x7c00, 0x0000]
 * ```
 */
export function f32ToF16(src: Float32Array, dst: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  checkLengths("f32ToF16", src.length, dst.length);
  if (!NATIVE_F16) return f32ToF16Portable(src, dst);
  new NATIVE_F16(dst.buffer, dst.byteOffset, dst.length).set(src);
  return dst;
}

/**
 * Converts a number to F16 bits. `x` is first rounded to float32 (as it
 * would be when stored in a `Float32Array`), then to F16 with ties to even.
 *
 * @example
 * ```ts
 * import { f32ToF16Bits } from "./float16.ts";
 * console.log(f32ToF16Bits(-2).toString(16)); // "c000"
 * ```
 */
export function f32ToF16Bits(x: number): number {
  const f32 = new Float32Array([x]);
  return f32BitsToF16Bits(new Uint32Array(f32.buffer)[0]);
}
