/**
 * onnxruntime-node (the native onnxruntime with its CPU execution provider),
 * pinned to the version of `./ort.ts`, and imported only when a model asks
 * for `device: "native"`: it is an optional peer dependency, a native addon
 * that Node, Bun and Deno (with `--allow-ffi`) load and browsers and edge
 * runtimes cannot. Its `Tensor` class is not onnxruntime-web's: its sessions
 * read any object with `type`, `dims` and `data` as a feed, and return their
 * own tensors (see `src/model/native_session.ts`, which wraps them back).
 * @module
 */

/** onnxruntime-node's module namespace (`InferenceSession`, `Tensor`, `env`, ...). */
export type OrtNode = typeof import("npm:onnxruntime-node@1.30.0");

/**
 * Imports onnxruntime-node. It is a CommonJS package: Deno and Bun give its
 * exports as named exports, Node (for the npm build) may give them only as
 * `default`, so both are accepted. The runtime caches the module.
 *
 * @example
 * ```ts
 * import { importOrtNode } from "./ort_node.ts";
 * const ortNode = await importOrtNode();
 * declare const bytes: Uint8Array;
 * const session = await ortNode.InferenceSession.create(bytes, { intraOpNumThreads: 2 });
 * console.log(session.inputNames);
 * ```
 */
export async function importOrtNode(): Promise<OrtNode> {
  // The pinned specifier lives here, like the static re-exports of ./ort.ts.
  // deno-lint-ignore no-import-prefix
  const mod = await import("npm:onnxruntime-node@1.30.0");
  return (mod.InferenceSession ? mod : (mod as { default: OrtNode }).default) as OrtNode;
}
