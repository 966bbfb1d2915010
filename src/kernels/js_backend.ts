/**
 * The `"js"` kernel backend: the TypeScript reference behind the
 * {@linkcode LoraKernels} interface, with the same argument checks as the
 * wasm backend.
 *
 * @module
 */

import { doraNormsReference, mergeLoraReference, scaleOutputsReference } from "./reference.ts";
import type { LoraKernels } from "./types.ts";
import { checkLoraArgs, checkScaleOutputsArgs } from "./validate.ts";

/**
 * Creates a `"js"` backend instance (no WebAssembly needed).
 *
 * @example
 * ```ts
 * import { createJsKernels } from "./js_backend.ts";
 * const k = createJsKernels();
 * const w = new Float32Array(2); // [out=2, in=1]
 * k.mergeLora(w, new Float32Array([1]), new Float32Array([1, 2]), { outFeatures: 2, inFeatures: 1, rank: 1 }, 1, "out_in");
 * console.log(w); // [1, 2]
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
    } satisfies LoraKernels,
  );
}
