// onnxruntime-web's Emscripten factory, given the precompiled onnxruntime module: workerd forbids compiling
// WebAssembly at run time ("Wasm code generation disallowed by embedder"), and onnxruntime-web 1.30 has no option
// that takes a WebAssembly.Module, so the worker names this file as `wasmPaths.mjs` and onnxruntime imports it.
// @ts-ignore: modules of the workerd bundle (config.capnp), copied next to this file by the build
import factory from "./ort-wasm-simd-threaded.mjs";
// @ts-ignore: see above
import ortModule from "./ort-wasm-simd-threaded.wasm";

export default function createOrtModule(moduleArg = {}) {
  return factory({
    ...moduleArg,
    instantiateWasm(imports, done) {
      WebAssembly.instantiate(ortModule, imports).then((instance) => done(instance, ortModule));
      return {};
    },
  });
}
