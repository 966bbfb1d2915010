// examples/workerd: the demo worker bundled with esbuild and run by Cloudflare's workerd (npm `workerd`), where
// compiling WebAssembly at run time is forbidden: onnxruntime's wasm and the LoRA kernel come in as precompiled
// modules, the model files as data modules. The base and the adapter reproduce the reference generations.
// Runs once, in the Deno suite.
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFile, mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { bundleWorker, startWorkerd, type Workerd } from "./support/workerd.ts";

const repo = fileURLToPath(new URL("..", import.meta.url));
const isBun = (globalThis as { Bun?: unknown }).Bun !== undefined;
const ORT = join(repo, "node_modules/onnxruntime-web/dist");
const BASE = join(repo, "examples/demo/byte-llama");
const ADAPTER = join(repo, "examples/demo/byte-llama-python-lora");

test("workerd runs the demo worker with precompiled modules and reproduces the reference generations", {
  skip: isBun ? "runs in the Deno suite" : false,
  timeout: 180_000,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), "peft-edge-workerd-"));
  let workerd: Workerd | undefined;
  try {
    await mkdir(join(dir, "files"));
    const copies: Array<[string, string]> = [
      [join(repo, "examples/workerd/config.capnp"), "config.capnp"],
      [join(repo, "examples/workerd/ort_factory.js"), "ort_factory.js"],
      [join(ORT, "ort-wasm-simd-threaded.mjs"), "ort-wasm-simd-threaded.mjs"],
      [join(ORT, "ort-wasm-simd-threaded.wasm"), "ort-wasm-simd-threaded.wasm"],
      [join(repo, "wasm/lora_kernel.wasm"), "lora_kernel.wasm"],
      [join(BASE, "onnx/model.onnx"), "files/model.onnx.bin"],
      [join(ADAPTER, "adapter_config.json"), "files/adapter_config.json.bin"],
      [join(ADAPTER, "adapter_model.safetensors"), "files/adapter_model.safetensors.bin"],
      ...["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]
        .map((f): [string, string] => [join(BASE, f), `files/${f}.bin`]),
    ];
    for (const [from, to] of copies) await copyFile(from, join(dir, to));
    await bundleWorker("examples/workerd/worker.ts", dir, ["./files/*", "./lora_kernel.wasm"]);
    workerd = await startWorkerd(dir);
    const { port, child: running, log } = workerd;
    const ask = async (model: string, prompt: string) => {
      for (let i = 0;; i++) {
        try {
          const response = await fetch(`http://127.0.0.1:${port}/`, {
            method: "POST",
            body: JSON.stringify({ model, prompt, max_tokens: 120 }),
          });
          const body = await response.text();
          assert.equal(response.status, 200, `${body}\n${log()}`);
          return JSON.parse(body).text as string;
        } catch (error) {
          if (i > 100 || running.exitCode !== null || error instanceof assert.AssertionError) throw error;
          await new Promise((resolve) => setTimeout(resolve, 100)); // not listening yet
        }
      }
    };
    const reference = JSON.parse(await readFile(join(repo, "examples/demo/reference_generations.json"), "utf8"));
    for (const g of reference.generations as Array<{ prompt: string; variant: string; text: string }>) {
      if (g.prompt !== "def " && g.prompt !== "The ") continue;
      assert.equal(await ask(g.variant === "base" ? "base" : "python", g.prompt), g.text, `${g.variant} ${g.prompt}`);
    }
  } finally {
    await workerd?.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
