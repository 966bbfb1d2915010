/**
 * The element types of the safetensors format and their sizes.
 *
 * @module
 */

/**
 * Every dtype the safetensors format defines, in the reference
 * implementation's order of increasing alignment. The writer relies on this
 * order to lay tensors out (largest alignment first), so do not reorder it.
 *
 * @example
 * ```ts
 * import { DTYPES } from "./dtype.ts";
 * console.log(DTYPES.includes("F16")); // true
 * ```
 */
export const DTYPES = Object.freeze(
  [
    "BOOL",
    "U8",
    "I8",
    "F8_E5M2",
    "F8_E4M3",
    "I16",
    "U16",
    "F16",
    "BF16",
    "I32",
    "U32",
    "F32",
    "F64",
    "I64",
    "U64",
  ] as const,
);

/**
 * A safetensors element type, e.g. `"F32"` or `"BF16"`.
 *
 * @example
 * ```ts
 * import type { Dtype } from "./dtype.ts";
 * const d: Dtype = "F16";
 * ```
 */
export type Dtype = typeof DTYPES[number];

/**
 * Size in bytes of one element of each dtype.
 *
 * @example
 * ```ts
 * import { DTYPE_SIZES } from "./dtype.ts";
 * console.log(DTYPE_SIZES.BF16); // 2
 * ```
 */
export const DTYPE_SIZES: Readonly<Record<Dtype, number>> = Object.freeze({
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
});

/**
 * Whether `value` is one of the dtype names of the format.
 *
 * @example
 * ```ts
 * import { isDtype } from "./dtype.ts";
 * console.log(isDtype("F32"), isDtype("F4")); // true false
 * ```
 */
export function isDtype(value: unknown): value is Dtype {
  return typeof value === "string" &&
    Object.prototype.hasOwnProperty.call(DTYPE_SIZES, value);
}

/**
 * Size in bytes of one element of `dtype`.
 *
 * @example
 * ```ts
 * import { dtypeSize } from "./dtype.ts";
 * console.log(dtypeSize("I64")); // 8
 * ```
 */
export function dtypeSize(dtype: Dtype): number {
  return DTYPE_SIZES[dtype];
}
