/**
 * Plain TypeScript reference for the LoRA math: clear loops, `float64`
 * accumulation, results rounded once when stored into `float32`. The wasm
 * kernels are tested against these, and the `"js"` backend runs them.
 *
 * Shapes follow PEFT: `A` is `[rank, in]`, `B` is `[out, rank]`; `W` is
 * stored in the given {@linkcode WeightLayout}.
 *
 * @module
 */

import type { LoraDims, WeightLayout } from "./types.ts";
import { checkLoraArgs, checkScaleOutputsArgs } from "./validate.ts";

export type { LoraDims, WeightLayout } from "./types.ts";

/** Element strides of `W[o, i]` for a layout: `index = o * so + i * si`. */
function strides(dims: LoraDims, layout: WeightLayout): [number, number] {
  return layout === "out_in" ? [dims.inFeatures, 1] : [1, dims.outFeatures];
}

/** `(B @ A)[o, i]` in float64. */
function delta(
  a: Float32Array,
  b: Float32Array,
  dims: LoraDims,
  o: number,
  i: number,
): number {
  const { inFeatures: inf, rank } = dims;
  let sum = 0;
  for (let k = 0; k < rank; k++) sum += b[o * rank + k] * a[k * inf + i];
  return sum;
}

/**
 * Merges a LoRA pair into a weight in place: `W += scale * B @ A`, written in
 * `W`'s layout.
 *
 * @param w Base weight, `outFeatures * inFeatures` values in `layout`; updated in place.
 * @param a `lora_A`, `[rank, inFeatures]`.
 * @param b `lora_B`, `[outFeatures, rank]`.
 * @param dims Layer dims.
 * @param scale LoRA scaling (`lora_alpha / r`, or `/ sqrt(r)` with rsLoRA).
 * @param layout How `w` is stored.
 * @throws {KernelError} on bad dims, lengths, scale or layout (before writing).
 * @example
 * ```ts
 * import { mergeLoraReference } from "./reference.ts";
 * const w = new Float32Array([1, 0, 0, 1]); // [2, 2]
 * mergeLoraReference(w, new Float32Array([1, 2]), new Float32Array([3, 4]),
 *   { outFeatures: 2, inFeatures: 2, rank: 1 }, 0.5, "out_in");
 * console.log(w); // [2.5, 3, 2, 5]
 * ```
 */
export function mergeLoraReference(
  w: Float32Array,
  a: Float32Array,
  b: Float32Array,
  dims: LoraDims,
  scale: number,
  layout: WeightLayout,
): void {
  checkLoraArgs("mergeLoraReference", w, a, b, dims, scale, layout);
  const [so, si] = strides(dims, layout);
  for (let o = 0; o < dims.outFeatures; o++) {
    for (let i = 0; i < dims.inFeatures; i++) {
      w[o * so + i * si] += scale * delta(a, b, dims, o, i);
    }
  }
}

/**
 * DoRA weight norms: for each output feature `o`, the L2 norm over the input
 * dim of the merged weight `W + scale * B @ A` (PEFT's `get_weight_norm`),
 * the merged values rounded to `float32` first as PEFT computes them.
 * `w` is not modified.
 *
 * @returns `outFeatures` norms.
 * @throws {KernelError} on bad dims, lengths, scale or layout.
 * @example
 * ```ts
 * import { doraNormsReference } from "./reference.ts";
 * const norms = doraNormsReference(new Float32Array([3, 0, 0, 0]), new Float32Array(2),
 *   new Float32Array(2), { outFeatures: 2, inFeatures: 2, rank: 1 }, 1, "out_in");
 * console.log(norms); // [3, 0]
 * ```
 */
export function doraNormsReference(
  w: Float32Array,
  a: Float32Array,
  b: Float32Array,
  dims: LoraDims,
  scale: number,
  layout: WeightLayout,
): Float32Array {
  checkLoraArgs("doraNormsReference", w, a, b, dims, scale, layout);
  const [so, si] = strides(dims, layout);
  const norms = new Float32Array(dims.outFeatures);
  for (let o = 0; o < dims.outFeatures; o++) {
    let sum = 0;
    for (let i = 0; i < dims.inFeatures; i++) {
      const v = Math.fround(
        w[o * so + i * si] + scale * delta(a, b, dims, o, i),
      );
      sum += v * v;
    }
    norms[o] = Math.sqrt(sum);
  }
  return norms;
}

/**
 * Multiplies every weight of output feature `o` by `factors[o]` in place
 * (the DoRA rescale by `magnitude / norm`). `dims.rank` is not used.
 *
 * @throws {KernelError} on bad dims, lengths or layout (before writing).
 * @example
 * ```ts
 * import { scaleOutputsReference } from "./reference.ts";
 * const w = new Float32Array([1, 2, 3, 4]); // [in, out] = [2, 2]
 * scaleOutputsReference(w, new Float32Array([10, 100]),
 *   { outFeatures: 2, inFeatures: 2, rank: 1 }, "in_out");
 * console.log(w); // [10, 200, 30, 400]
 * ```
 */
export function scaleOutputsReference(
  w: Float32Array,
  factors: Float32Array,
  dims: LoraDims,
  layout: WeightLayout,
): void {
  checkScaleOutputsArgs("scaleOutputsReference", w, factors, dims, layout);
  const [so, si] = strides(dims, layout);
  for (let o = 0; o < dims.outFeatures; o++) {
    for (let i = 0; i < dims.inFeatures; i++) w[o * so + i * si] *= factors[o];
  }
}
