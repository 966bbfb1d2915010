/**
 * The one operation the merged path needs from a kernel backend: merge a
 * LoRA (and DoRA) update into one weight. CPU kernels (wasm SIMD or the TS
 * fallback) and the WGSL kernels on a WebGPU device both provide it.
 * @module
 */
import type { LoraKernels } from "../kernels/kernels.ts";
import type { LoraDims, WeightLayout } from "../kernels/reference.ts";

/** Merges `W += s·B@A` (then DoRA's rescale when `magnitude` is given) in place. */
export interface WeightMerger {
  /** Which kernels do the work (`"wasm-simd"`, `"js"` or `"webgpu"`). */
  readonly backend: string;
  mergeWeight(
    w: Float32Array,
    a: Float32Array,
    b: Float32Array,
    dims: LoraDims,
    scale: number,
    layout: WeightLayout,
    magnitude?: Float32Array,
  ): Promise<void>;
}

/**
 * A merger on the CPU kernels. DoRA follows PEFT's merge: the norm is taken
 * of the merged weight, per output feature, and each output is scaled by
 * `m / norm`.
 *
 * @example
 * ```ts
 * import { cpuMerger } from "./merger.ts";
 * import { loadKernels } from "../kernels/kernels.ts";
 * const merger = cpuMerger(await loadKernels());
 * const w = new Float32Array([1, 2, 3, 4, 5, 6]);
 * await merger.mergeWeight(w, new Float32Array([1, 1, 1]), new Float32Array([1, -1]), { outFeatures: 2, inFeatures: 3, rank: 1 }, 1, "out_in");
 * ```
 */
export function cpuMerger(kernels: LoraKernels): WeightMerger {
  return {
    backend: kernels.backend,
    mergeWeight(w, a, b, dims, scale, layout, magnitude) {
      const norms = magnitude ? kernels.doraNorms(w, a, b, dims, scale, layout) : undefined;
      kernels.mergeLora(w, a, b, dims, scale, layout);
      if (norms && magnitude) {
        const factors = new Float32Array(magnitude.length);
        for (let o = 0; o < magnitude.length; o++) factors[o] = magnitude[o] / norms[o];
        kernels.scaleOutputs(w, factors, dims, layout);
      }
      return Promise.resolve();
    },
  };
}
