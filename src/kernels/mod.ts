/**
 * LoRA math kernels: merge and DoRA norms and rescale, as SIMD128
 * WebAssembly with a TypeScript fallback and reference.
 *
 * @example
 * ```ts
 * import { loadKernels } from "./mod.ts";
 * const kernels = await loadKernels();
 * const w = new Float32Array(4);
 * kernels.mergeLora(w, new Float32Array([1, 1]), new Float32Array([1, 1]),
 *   { outFeatures: 2, inFeatures: 2, rank: 1 }, 1, "out_in");
 * ```
 * @module
 */

export type { LoraDims, LoraKernels, WeightLayout } from "./types.ts";
export { loadKernels } from "./kernels.ts";
export type { LoadKernelsOptions } from "./kernels.ts";
export { simdSupported } from "./simd.ts";
export { doraNormsReference, mergeLoraReference, scaleOutputsReference } from "./reference.ts";
