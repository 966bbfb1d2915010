/**
 * onnxruntime-web's WASM-only build, pinned. Every other module imports ORT
 * from here so the version lives in one place and URL importers need no
 * import map. Deno, Bun and Node resolve this specifier (export condition
 * `node`) to onnxruntime-web's Node build, which is WASM-only and runs
 * threads on worker_threads; its browser build `onnxruntime-web/wasm` (no
 * WebGPU code, one `ort-wasm-simd-threaded.wasm`) fails there with more than
 * one thread. Browser bundles map this specifier to `onnxruntime-web/wasm`
 * (the npm package through its `imports` field, a bundle of `mod.ts` through
 * `examples/browser/tsconfig.json`). The WebGPU build is `./ort_webgpu.ts`,
 * loaded only when used.
 * @module
 */
export * as ort from "npm:onnxruntime-web@1.30.0";
export { Tensor } from "npm:onnxruntime-web@1.30.0";
export type { InferenceSession } from "npm:onnxruntime-web@1.30.0";
