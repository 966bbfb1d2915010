/// <reference lib="dom" />
/**
 * The browser demo: loads the demo base model and its Python LoRA adapter
 * from the page's server, switches between them per generation and streams
 * the text into the page. Bundle it with esbuild (see README.md here) and
 * serve onnxruntime-web's `dist/` files under `ort/`, the only setting it
 * needs (`wasmPaths`).
 *
 * The model files are fetched here and handed over with `memorySource`;
 * with URL locations, `loadBaseModel(new URL("models/byte-llama/", location.href).href)`
 * does the same.
 * @module
 */
import { fromPretrained, loadBaseModel, memorySource, type PeftModel } from "../../mod.ts";

const BASE_FILES = [
  "config.json",
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "onnx/model.onnx",
];
const ADAPTER_FILES = ["adapter_config.json", "adapter_model.safetensors"];

async function fetchFolder(url: URL, files: string[]) {
  const entries = await Promise.all(files.map(async (file) => {
    const response = await fetch(new URL(file, url));
    if (!response.ok) throw new Error(`${new URL(file, url)}: HTTP ${response.status}`);
    return [file, new Uint8Array(await response.arrayBuffer())] as const;
  }));
  return memorySource(url.href, Object.fromEntries(entries));
}

/** Loads the base and adapter once. */
export async function loadDemo(root: URL): Promise<PeftModel> {
  const [baseFiles, adapterFiles] = await Promise.all([
    fetchFolder(new URL("models/byte-llama/", root), BASE_FILES),
    fetchFolder(new URL("models/byte-llama-python-lora/", root), ADAPTER_FILES),
  ]);
  const base = await loadBaseModel(baseFiles, { device: "wasm", wasmPaths: new URL("ort/", root).href });
  return await fromPretrained(base, adapterFiles, { adapterName: "python" });
}

/** Streams a greedy generation with the base (`"base"`) or the adapter into `output`; resolves to the text. */
export async function generateInto(
  model: PeftModel,
  which: "base" | "python",
  prompt: string,
  maxNewTokens: number,
  output: { textContent: string | null },
): Promise<string> {
  output.textContent = "";
  const adapter = which === "base" ? null : "python";
  for await (const piece of model.stream(prompt, { maxNewTokens, temperature: 0, adapter })) {
    output.textContent += piece;
  }
  return output.textContent ?? "";
}

interface DemoPage {
  ready: Promise<void>;
  generate(which: "base" | "python", prompt: string, maxNewTokens: number): Promise<string>;
}

if (typeof document !== "undefined") {
  const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
  const root = new URL("./", location.href);
  const loading = loadDemo(root);
  const generate = async (which: "base" | "python", prompt: string, maxNewTokens: number) =>
    generateInto(await loading, which, prompt, maxNewTokens, $("output"));
  const page: DemoPage = {
    ready: loading.then(() => {
      $("status").textContent = "ready";
      $<HTMLButtonElement>("generate").disabled = false;
    }, (error) => {
      $("status").textContent = `failed: ${error.message}`;
      throw error;
    }),
    generate,
  };
  (globalThis as { peftDemo?: DemoPage }).peftDemo = page;
  $("generate").addEventListener("click", () => {
    const which = $<HTMLSelectElement>("model").value as "base" | "python";
    const tokens = Number($<HTMLInputElement>("tokens").value) || 60;
    generate(which, $<HTMLInputElement>("prompt").value, tokens).catch((error) => {
      $("status").textContent = `failed: ${error.message}`;
    });
  });
}
