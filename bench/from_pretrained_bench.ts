/**
 * fromPretrained (merged: merge + new session; dynamic: graph rewrite + new
 * session) against plain session creation of the same base, in one run:
 * `deno bench -A bench/from_pretrained_bench.ts`.
 * Deno prints each bench's time relative to the baseline.
 * @module
 */
import { readFile } from "node:fs/promises";
import { fromPretrained, loadBaseModel } from "../mod.ts";
import { ort } from "../src/deps/ort.ts";

const fixtures = new URL("../tests/fixtures/", import.meta.url);
const path = (name: string) => new URL(name, fixtures).pathname;

for (const baseName of ["llama-tiny", "gpt2-tiny"]) {
  const bytes = new Uint8Array(await readFile(path(`${baseName}/onnx/model.onnx`)));
  const base = await loadBaseModel(path(baseName));
  const group = `load ${baseName}`;

  Deno.bench({ name: "session create (base)", group, baseline: true }, async () => {
    const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
    await session.release();
  });

  const adapters = baseName === "llama-tiny"
    ? ["llama-tiny-lora-qv", "llama-tiny-lora-all-rslora-f16", "llama-tiny-dora-qv", "llama-tiny-lora-embed"]
    : ["gpt2-tiny-lora-c_attn"];
  for (const adapter of adapters) {
    for (const mode of ["merged", "dynamic"] as const) {
      Deno.bench({ name: `fromPretrained ${mode} ${adapter}`, group }, async () => {
        const model = await fromPretrained(base, path(adapter), { mode });
        await model.release();
      });
    }
  }
}
