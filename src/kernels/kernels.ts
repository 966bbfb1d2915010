/**
 * {@linkcode loadKernels}, which picks a backend: SIMD128 WebAssembly when the engine supports it,
 * otherwise the plain TypeScript reference.
 *
 * @module
 */

import { KernelError } from "../errors.ts";
import { createJsKernels } from "./js_backend.ts";
import { simdSupported } from "./simd.ts";
import type { LoraKernels } from "./types.ts";
import { createWasmKernels } from "./wasm_backend.ts";

export type { LoraKernels } from "./types.ts";
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
