# workerd configuration of the demo worker; tests/workerd.test.ts writes the bundle (worker.js) and copies the
# files next to it, then runs `workerd serve config.capnp --socket-addr http=127.0.0.1:PORT`.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [(name = "main", worker = .demo)],
  sockets = [(name = "http", address = "127.0.0.1:8787", http = (), service = "main")],
);

const demo :Workerd.Worker = (
  modules = [
    (name = "worker", esModule = embed "worker.js"),
    (name = "./ort_factory.js", esModule = embed "ort_factory.js"),
    (name = "./ort-wasm-simd-threaded.mjs", esModule = embed "ort-wasm-simd-threaded.mjs"),
    (name = "./ort-wasm-simd-threaded.wasm", wasm = embed "ort-wasm-simd-threaded.wasm"),
    (name = "./lora_kernel.wasm", wasm = embed "lora_kernel.wasm"),
    (name = "./files/config.json.bin", data = embed "files/config.json.bin"),
    (name = "./files/generation_config.json.bin", data = embed "files/generation_config.json.bin"),
    (name = "./files/tokenizer.json.bin", data = embed "files/tokenizer.json.bin"),
    (name = "./files/tokenizer_config.json.bin", data = embed "files/tokenizer_config.json.bin"),
    (name = "./files/model.onnx.bin", data = embed "files/model.onnx.bin"),
    (name = "./files/adapter_config.json.bin", data = embed "files/adapter_config.json.bin"),
    (name = "./files/adapter_model.safetensors.bin", data = embed "files/adapter_model.safetensors.bin"),
  ],
  compatibilityDate = "2025-09-01",
  compatibilityFlags = ["nodejs_compat"],
);
