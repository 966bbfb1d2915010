/**
 * Interpreting a tensor's raw little-endian bytes as a typed array or as
 * float32 values. Typed-array views need their byte offset aligned to the
 * element size; unaligned data is copied first.
 *
 * @module
 */

import type { Dtype } from "./dtype.ts";
import { bf16ToF32, f16ToF32 } from "../numeric/float16.ts";
import { f8E4M3ToF32, f8E5M2ToF32 } from "../numeric/float8.ts";

/**
 * The typed arrays {@linkcode bytesToTypedArray} returns.
 *
 * @example
 * ```ts
 * import type { SafetensorsTypedArray } from "./convert.ts";
 * const a: SafetensorsTypedArray = new BigInt64Array(2);
 * ```
 */
export type SafetensorsTypedArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

/** A view of `bytes` made by `make`, or of a copy when `bytes` is unaligned. */
function view<T>(
  bytes: Uint8Array,
  size: number,
  make: (buffer: ArrayBufferLike, byteOffset: number, length: number) => T,
): T {
  const length = bytes.byteLength / size;
  if (bytes.byteOffset % size === 0) {
    return make(bytes.buffer, bytes.byteOffset, length);
  }
  // new Uint8Array(view) copies; a Node Buffer's slice() would be a view whose .buffer is its whole pool.
  return make(new Uint8Array(bytes).buffer, 0, length);
}

/**
 * Interprets little-endian tensor bytes as the typed array matching `dtype`:
 * `Uint8Array` for BOOL, U8 and both F8 types (raw bits), `Uint16Array` for
 * F16 and BF16 (raw bits), `BigInt64Array` / `BigUint64Array` for I64 / U64,
 * the obvious array otherwise. Returns a view sharing memory with `bytes`
 * when it is aligned, else a copy: treat the result as read-only.
 *
 * @example
 * ```ts
 * import { bytesToTypedArray } from "./convert.ts";
 * const a = bytesToTypedArray("I64", new Uint8Array([5, 0, 0, 0, 0, 0, 0, 0]));
 * console.log(a); // BigInt64Array [ 5n ]
 * ```
 */
export function bytesToTypedArray(
  dtype: Dtype,
  bytes: Uint8Array,
): SafetensorsTypedArray {
  switch (dtype) {
    case "BOOL":
    case "U8":
    case "F8_E5M2":
    case "F8_E4M3":
      return bytes.subarray();
    case "I8":
      return view(bytes, 1, (b, o, n) => new Int8Array(b, o, n));
    case "I16":
      return view(bytes, 2, (b, o, n) => new Int16Array(b, o, n));
    case "U16":
    case "F16":
    case "BF16":
      return view(bytes, 2, (b, o, n) => new Uint16Array(b, o, n));
    case "I32":
      return view(bytes, 4, (b, o, n) => new Int32Array(b, o, n));
    case "U32":
      return view(bytes, 4, (b, o, n) => new Uint32Array(b, o, n));
    case "F32":
      return view(bytes, 4, (b, o, n) => new Float32Array(b, o, n));
    case "F64":
      return view(bytes, 8, (b, o, n) => new Float64Array(b, o, n));
    case "I64":
      return view(bytes, 8, (b, o, n) => new BigInt64Array(b, o, n));
    case "U64":
      return view(bytes, 8, (b, o, n) => new BigUint64Array(b, o, n));
  }
}

/**
 * Converts little-endian tensor bytes of any dtype to a new `Float32Array`
 * (never a view, so it is safe to modify). F16, BF16 and F8 convert exactly;
 * F64 and integers wider than 24 bits round to nearest float32; BOOL gives
 * 0 or 1.
 *
 * @example
 * ```ts
 * import { bytesToFloat32 } from "./convert.ts";
 * console.log(bytesToFloat32("F16", new Uint8Array([0x00, 0x3c]))); // Float32Array [ 1 ]
 * ```
 */
export function bytesToFloat32(dtype: Dtype, bytes: Uint8Array): Float32Array {
  switch (dtype) {
    case "F32": {
      const out = new Float32Array(bytes.byteLength / 4);
      new Uint8Array(out.buffer).set(bytes);
      return out;
    }
    case "F16":
      return f16ToF32(bytesToTypedArray(dtype, bytes) as Uint16Array);
    case "BF16":
      return bf16ToF32(bytesToTypedArray(dtype, bytes) as Uint16Array);
    case "BOOL":
      return Float32Array.from(bytes, (b) => b ? 1 : 0);
    case "F8_E5M2":
      return Float32Array.from(bytes, f8E5M2ToF32);
    case "F8_E4M3":
      return Float32Array.from(bytes, f8E4M3ToF32);
    case "I64":
    case "U64": {
      const big = bytesToTypedArray(dtype, bytes) as
        | BigInt64Array
        | BigUint64Array;
      const out = new Float32Array(big.length);
      for (let i = 0; i < big.length; i++) out[i] = Number(big[i]);
      return out;
    }
    default: {
      // U8, I8, I16, U16, I32, U32, F64: `set` converts numerically.
      const src = bytesToTypedArray(dtype, bytes) as Exclude<
        SafetensorsTypedArray,
        BigInt64Array | BigUint64Array
      >;
      const out = new Float32Array(src.length);
      out.set(src);
      return out;
    }
  }
}
