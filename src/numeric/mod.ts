/**
 * Numeric formats shared by the safetensors reader, the ONNX weight code and
 * the LoRA feeds: F16 and BF16 to and from float32 (native `Float16Array`
 * where the runtime has it), and the two F8 formats.
 *
 * @example
 * ```ts
 * import { f16ToF32, f32ToF16 } from "./mod.ts";
 * console.log(f16ToF32(f32ToF16(new Float32Array([0.1])))); // [0.0999755859375]
 * ```
 * @module
 */

export { bf16ToF32, f16BitsToF32, f16ToF32, f32ToF16, f32ToF16Bits, hasNativeFloat16 } from "./float16.ts";
export { f8E4M3ToF32, f8E5M2ToF32 } from "./float8.ts";
