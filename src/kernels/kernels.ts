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
import { compileEmbeddedKernel, createWasmKernels } from "./wasm_backend.ts";

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
   * `"auto"` (default): `"wasm-simd"` when the engine validates SIMD128 code
   * and lets it be compiled (or `module` is given), else `"js"`.
   * `"wasm-simd"` throws {@linkcode KernelError} where SIMD128 is missing.
   */
  backend?: "auto" | "wasm-simd" | "js";
  /**
   * The kernel (`wasm/lora_kernel.wasm`) compiled ahead of time, for runtimes
   * that forbid compiling WebAssembly from bytes; used instead of the
   * embedded copy.
   */
  module?: WebAssembly.Module;
  /** Told once, when `"auto"` falls back to `"js"` because compiling is forbidden. */
  onWarning?: (message: string) => void;
}

/**
 * Loads a fresh kernel instance. The wasm binary is embedded in the module
 * graph (base64), so this needs no file system or network access. Each call
 * compiles (unless `module` is given) and instantiates its own module
 * (about 20 KB, a few ms); keep the instance and reuse it.
 *
 * @throws {KernelError} for an unknown backend, or `"wasm-simd"` without SIMD128 or when it cannot be compiled.
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
        throw new KernelError("this WebAssembly engine does not support SIMD128", { key: "loadKernels" });
      }
      return await createWasmKernels(options.module ?? await compileOrThrow());
    case "auto": {
      if (!simdSupported()) return createJsKernels();
      if (options.module) return await createWasmKernels(options.module);
      let module: WebAssembly.Module;
      try {
        module = await compileEmbeddedKernel();
      } catch (error) {
        (options.onWarning ?? console.warn)(
          `the WebAssembly LoRA kernel could not be compiled here (${
            (error as Error).message
          }); using the TypeScript kernels, which give the same results more slowly. Pass kernelModule (wasm/lora_kernel.wasm imported as a module) to use the fast kernel.`,
        );
        return createJsKernels();
      }
      return await createWasmKernels(module);
    }
    default:
      throw new KernelError(
        `backend must be "auto", "wasm-simd" or "js", got ${String(backend)}`,
        { key: "loadKernels" },
      );
  }
}

async function compileOrThrow(): Promise<WebAssembly.Module> {
  try {
    return await compileEmbeddedKernel();
  } catch (cause) {
    throw new KernelError(`the WebAssembly kernel cannot be compiled here: ${(cause as Error).message}`, {
      key: "loadKernels",
      cause,
    });
  }
}
