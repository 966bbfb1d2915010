/**
 * onnxruntime-web's WebGPU build, pinned to the same version as `./ort.ts`,
 * and loaded only when a session runs on WebGPU: runtimes without WebGPU
 * (Bun, Node) never evaluate it or fetch its wasm. It is a separate module
 * instance from `./ort.ts` (its own `env`, its own wasm); tensors created with
 * either `Tensor` class are accepted as feeds by both.
 * @module
 */

/** The WebGPU build's module namespace (`InferenceSession`, `Tensor`, `env`, ...). */
export type OrtWebGpu = typeof import("npm:onnxruntime-web@1.30.0/webgpu");

/**
 * Imports onnxruntime-web's WebGPU build. The runtime caches the module, so
 * every call after the first resolves to the same namespace.
 *
 * @example
 * ```ts
 * import { loadOrtWebGpu } from "./ort_webgpu.ts";
 * const ortGpu = await loadOrtWebGpu();
 * declare const bytes: Uint8Array;
 * const session = await ortGpu.InferenceSession.create(bytes, { executionProviders: ["webgpu"] });
 * console.log(session.inputNames);
 * ```
 */
export function loadOrtWebGpu(): Promise<OrtWebGpu> {
  // The pinned specifier lives here, like the static re-exports of ./ort.ts.
  // deno-lint-ignore no-import-prefix
  return import("npm:onnxruntime-web@1.30.0/webgpu");
}
