/**
 * The `"js"` kernel backend: the TypeScript reference (and the float16
 * conversions from `src/safetensors`), behind the {@linkcode LoraKernels}
 * interface, with the same argument checks as the wasm backend.
 *
 * @module
 */

import { bf16ToF32, f16ToF32, f32ToF16 } from "../safetensors/float16.ts";
import type { LoraKernels } from "./kernels.ts";
import { doraNormsReference, loraForwardReference, mergeLoraReference, scaleOutputsReference } from "./reference.ts";
import { checkConversion, checkForwardArgs, checkLoraArgs, checkScaleOutputsArgs } from "./validate.ts";

/**
 * Creates a `"js"` backend instance (no WebAssembly needed).
 *
 * @example
 * ```ts
 * import { createJsKernels } from "./js_backend.ts";
 * const k = createJsKernels();
 * console.log(k.f16ToF32(new Uint16Array([0x3c00]))); // [1]
 * ```
 */
export function createJsKernels(): LoraKernels {
  return Object.freeze(
    {
      backend: "js" as const,
      mergeLora(w, a, b, dims, scale, layout) {
        checkLoraArgs("mergeLora", w, a, b, dims, scale, layout);
        mergeLoraReference(w, a, b, dims, scale, layout);
      },
      doraNorms(w, a, b, dims, scale, layout) {
        checkLoraArgs("doraNorms", w, a, b, dims, scale, layout);
        return doraNormsReference(w, a, b, dims, scale, layout);
      },
      scaleOutputs(w, factors, dims, layout) {
        checkScaleOutputsArgs("scaleOutputs", w, factors, dims, layout);
        scaleOutputsReference(w, factors, dims, layout);
      },
      loraForward(x, rows, a, b, dims, scale, y) {
        checkForwardArgs("loraForward", x, rows, a, b, dims, scale, y);
        loraForwardReference(x, rows, a, b, dims, scale, y);
      },
      f16ToF32(src, dst) {
        return f16ToF32(
          src,
          checkConversion("f16ToF32", src, Uint16Array, dst, Float32Array),
        );
      },
      bf16ToF32(src, dst) {
        return bf16ToF32(
          src,
          checkConversion("bf16ToF32", src, Uint16Array, dst, Float32Array),
        );
      },
      f32ToF16(src, dst) {
        return f32ToF16(
          src,
          checkConversion("f32ToF16", src, Float32Array, dst, Uint16Array),
        );
      },
    } satisfies LoraKernels,
  );
}
