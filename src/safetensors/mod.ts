/**
 * Strict safetensors reading and writing (the F16/BF16/F8 conversions live in `src/numeric`).
 *
 * @example
 * ```ts
 * import { parseSafetensors, serializeSafetensors } from "./mod.ts";
 * const bytes = serializeSafetensors({ w: { dtype: "F16", shape: [1], data: new Uint16Array([0x3c00]) } });
 * console.log(parseSafetensors(bytes).toFloat32("w")); // Float32Array [ 1 ]
 * ```
 * @module
 */

export { type Dtype, DTYPE_SIZES, DTYPES, dtypeSize, isDtype } from "./dtype.ts";
export { bytesToFloat32, bytesToTypedArray, type SafetensorsTypedArray } from "./convert.ts";
export {
  MAX_HEADER_LENGTH,
  parseSafetensorsHeader,
  readHeaderLength,
  readSafetensorsHeader,
  type SafetensorsHeader,
  type TensorInfo,
} from "./header.ts";
export { parseSafetensors, Safetensors, type TensorView } from "./read.ts";
export { serializeSafetensors, type TensorInput } from "./write.ts";
