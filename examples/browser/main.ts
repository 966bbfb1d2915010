/// <reference lib="dom" />
/**
 * The browser demo: loads the demo base model and its Python LoRA adapter
 * from the page's server, switches between them per generation and streams
 * the text into the page. Bundle it with esbuild (see README.md here) and
 * serve onnxruntime-web's `dist/` files under `ort/`, the only setting it
 * needs (`wasmPaths`).
 *
 * Both are loaded by URL: a folder URL is a location like a path or Hub
 * id, its files fetched relative to it (streamed, sizes checked).
 * @module
 */
import { fromPretrained, loadBaseModel, type PeftModel } from "../../mod.ts";

/** Loads the base and adapter once, by URL, from the folders under `models/` next to the page. */
export async function loadDemo(root: URL): Promise<PeftModel> {
  const base = await loadBaseModel(new URL("models/byte-llama/", root), {
    device: "wasm",
    wasmPaths: new URL("ort/", root).href,
  });
  return await fromPretrained(base, new URL("models/byte-llama-python-lora/", root), { adapterName: "python" });
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
