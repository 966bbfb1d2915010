/**
 * The demo in Cloudflare's workerd: `POST /` with `{ "prompt", "model": "base" | "python", "max_tokens" }`
 * answers the greedy continuation. Everything the worker needs is a module of its bundle (workerd has no file
 * system and forbids compiling WebAssembly at run time): the model files as data modules, onnxruntime's wasm and
 * the LoRA kernel as precompiled wasm modules (see config.capnp and tests/workerd.test.ts, which builds it).
 * @module
 */
import { fromPretrained, loadBaseModel, memorySource, type PeftModel } from "../../mod.ts";
// @ts-ignore: data and wasm modules of the workerd bundle (config.capnp)
import config from "./files/config.json.bin";
// @ts-ignore: see above
import generationConfig from "./files/generation_config.json.bin";
// @ts-ignore: see above
import tokenizer from "./files/tokenizer.json.bin";
// @ts-ignore: see above
import tokenizerConfig from "./files/tokenizer_config.json.bin";
// @ts-ignore: see above
import onnx from "./files/model.onnx.bin";
// @ts-ignore: see above
import adapterConfig from "./files/adapter_config.json.bin";
// @ts-ignore: see above
import adapterWeights from "./files/adapter_model.safetensors.bin";
// @ts-ignore: see above
import kernelModule from "./lora_kernel.wasm";

const bytes = (data: ArrayBuffer) => new Uint8Array(data);

async function load(): Promise<PeftModel> {
  const base = await loadBaseModel(
    memorySource("byte-llama", {
      "config.json": bytes(config),
      "generation_config.json": bytes(generationConfig),
      "tokenizer.json": bytes(tokenizer),
      "tokenizer_config.json": bytes(tokenizerConfig),
      "onnx/model.onnx": bytes(onnx),
    }),
    { device: "wasm", wasmPaths: { mjs: "./ort_factory.js", wasm: "./ort-wasm-simd-threaded.wasm" }, kernelModule },
  );
  const adapter = memorySource("byte-llama-python-lora", {
    "adapter_config.json": bytes(adapterConfig),
    "adapter_model.safetensors": bytes(adapterWeights),
  });
  return await fromPretrained(base, adapter, { adapterName: "python" });
}

let model: Promise<PeftModel> | undefined;

export default {
  async fetch(request: Request): Promise<Response> {
    const { prompt, model: which, max_tokens: maxNewTokens } = await request.json();
    model ??= load();
    const { text } = await (await model).generate(String(prompt), {
      maxNewTokens: Number(maxNewTokens ?? 60),
      temperature: 0,
      adapter: which === "base" ? null : "python",
    });
    return Response.json({ text });
  },
};
