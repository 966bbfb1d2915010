/**
 * The kernel API the rest of peft-edge uses, and {@linkcode loadKernels},
 * which picks a backend: SIMD128 WebAssembly when the engine supports it,
 * otherwise the plain TypeScript reference.
 *
 * @module
 */

import { KernelError } from "../errors.ts";
import { createJsKernels } from "./js_backend.ts";
import { simdSupported } from "./simd.ts";
import type { LoraDims, WeightLayout } from "./types.ts";
import { createWasmKernels } from "./wasm_backend.ts";

/**
 * A loaded set of LoRA kernels. Every method validates all its arguments
 * (dims positive integers, lengths equal to the dims' products, finite scale,
 * known layout) and throws {@linkcode KernelError} before touching any array.
 * Shapes follow PEFT: `A` is `[rank, in]`, `B` is `[out, rank]`.
 *
 * An instance owns its WebAssembly memory (for `"wasm-simd"`), which grows to
 * the largest call it has served; drop the instance to release it.
 *
 * @example
 * ```ts
 * import { loadKernels } from "./kernels.ts";
 * const k = await loadKernels();
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
  /** `y[rows, out] += scale * (x[rows, in] @ A^T) @ B^T`. */
  loraForward(
    x: Float32Array,
    rows: number,
    a: Float32Array,
    b: Float32Array,
    dims: LoraDims,
    scale: number,
    y: Float32Array,
  ): void;
  /**
   * IEEE binary16 bit patterns to `float32`, exactly (NaN payloads kept).
   * Writes into `dst` (same length as `src`) when given, else a new array.
   */
  f16ToF32(src: Uint16Array, dst?: Float32Array): Float32Array;
  /** bfloat16 bit patterns to `float32`, exactly; `dst` as for `f16ToF32`. */
  bf16ToF32(src: Uint16Array, dst?: Float32Array): Float32Array;
  /**
   * `float32` to binary16 bit patterns, round to nearest, ties to even;
   * magnitudes from 65520 become infinity; NaN stays (quiet) NaN.
   * `dst` as for `f16ToF32`.
   */
  f32ToF16(src: Float32Array, dst?: Uint16Array): Uint16Array;
}

/**
 * Options of {@linkcode loadKernels}.
 *
 * @example
 * ```ts
 * import type { LoadKernelsOptions } from "./kernels.ts";
 * const opts: LoadKernelsOptions = { backend: "js" };
 * ```
 */
export interface LoadKernelsOptions {
  /**
   * `"auto"` (default): `"wasm-simd"` when the engine validates SIMD128 code,
   * else `"js"`. `"wasm-simd"` throws {@linkcode KernelError} where SIMD128 is
   * missing.
   */
  backend?: "auto" | "wasm-simd" | "js";
}

/**
 * Loads a fresh kernel instance. The wasm binary is embedded in the module
 * graph (base64), so this needs no file system or network access. Each call
 * compiles and instantiates its own module (about 20 KB, a few ms); keep the
 * instance and reuse it.
 *
 * @throws {KernelError} for an unknown backend, or `"wasm-simd"` without SIMD128.
 * @example
 * ```ts
 * import { loadKernels } from "./kernels.ts";
 * const fast = await loadKernels(); // "wasm-simd" where supported
 * const ref = await loadKernels({ backend: "js" });
 * console.log(fast.backend, ref.backend);
 * ```
 */
export async function loadKernels(
  options: LoadKernelsOptions = {},
): Promise<LoraKernels> {
  const backend = options.backend ?? "auto";
  switch (backend) {
    case "js":
      return createJsKernels();
    case "wasm-simd":
      if (!simdSupported()) {
        throw new KernelError(
          "this WebAssembly engine does not support SIMD128",
          {
            key: "loadKernels",
          },
        );
      }
      return await createWasmKernels();
    case "auto":
      return simdSupported() ? await createWasmKernels() : createJsKernels();
    default:
      throw new KernelError(
        `backend must be "auto", "wasm-simd" or "js", got ${String(backend)}`,
        { key: "loadKernels" },
      );
  }
}
