/**
 * Shapes and layouts shared by the LoRA kernels.
 *
 * @module
 */

/**
 * How a base weight `W` is stored, row-major:
 * - `"out_in"`: `[out, in]` (torch `Linear.weight`, ONNX `Gemm` with `transB=1`);
 * - `"in_out"`: `[in, out]` (ONNX `MatMul` weight, `Gemm` with `transB=0`, GPT-2 `Conv1D`).
 *
 * @example
 * ```ts
 * import type { WeightLayout } from "./types.ts";
 * const layout: WeightLayout = "in_out"; // an ONNX MatMul initializer
 * ```
 */
export type WeightLayout = "out_in" | "in_out";

/**
 * Dims of one LoRA pair on a linear layer: `A` is `[rank, inFeatures]`,
 * `B` is `[outFeatures, rank]` (PEFT's `lora_A` / `lora_B` shapes), and `W`
 * holds `outFeatures * inFeatures` values in its {@linkcode WeightLayout}.
 *
 * @example
 * ```ts
 * import type { LoraDims } from "./types.ts";
 * const dims: LoraDims = { outFeatures: 4096, inFeatures: 4096, rank: 16 };
 * ```
 */
export interface LoraDims {
  /** Output features of the layer (rows of `B`). */
  outFeatures: number;
  /** Input features of the layer (columns of `A`). */
  inFeatures: number;
  /** LoRA rank `r` (rows of `A`, columns of `B`). */
  rank: number;
}

/**
 * A loaded set of LoRA kernels. Every method validates all its arguments
 * (dims positive integers, lengths equal to the dims' products, finite scale,
 * known layout) and throws `KernelError` before touching any array.
 * Shapes follow PEFT: `A` is `[rank, in]`, `B` is `[out, rank]`.
 *
 * An instance owns its WebAssembly memory (for `"wasm-simd"`), which grows to
 * the largest call it has served; drop the instance to release it.
 *
 * @example
 * ```ts
 * import type { LoraKernels } from "./types.ts";
 * import { loadKernels } from "./kernels.ts";
 * const k: LoraKernels = await loadKernels();
 * const w = new Float32Array(6); // [out=2, in=3]
 * k.mergeLora(w, new Float32Array([1, 2, 3]), new Float32Array([1, -1]),
 *   { outFeatures: 2, inFeatures: 3, rank: 1 }, 2, "out_in");
 * console.log(k.backend, w); // "wasm-simd" [2, 4, 6, -2, -4, -6]
 * ```
 */
export interface LoraKernels {
  /** Which implementation runs the math. */
  readonly backend: "wasm-simd" | "js";
  /** `W += scale * B @ A` in place, in `W`'s layout. */
  mergeLora(
    w: Float32Array,
    a: Float32Array,
    b: Float32Array,
    dims: LoraDims,
    scale: number,
    layout: WeightLayout,
  ): void;
  /** Per output feature L2 norm (over the input dim) of `W + scale * B @ A`; `w` is unchanged. */
  doraNorms(
    w: Float32Array,
    a: Float32Array,
    b: Float32Array,
    dims: LoraDims,
    scale: number,
    layout: WeightLayout,
  ): Float32Array;
  /** Multiplies output feature `o`'s weights by `factors[o]` in place. */
  scaleOutputs(
    w: Float32Array,
    factors: Float32Array,
    dims: LoraDims,
    layout: WeightLayout,
  ): void;
}
