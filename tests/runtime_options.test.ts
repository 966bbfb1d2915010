// Runtime settings of loadBaseModel: numThreads (default, validation, the process-wide env of onnxruntime-web),
// and the LoRA kernel where compiling WebAssembly is forbidden (a precompiled module, or the TypeScript fallback
// announced once through onWarning).
import { test } from "node:test";
import assert from "node:assert/strict";
import { fromPretrained, loadBaseModel, UnsupportedError } from "../mod.ts";
import { ort } from "../src/deps/ort.ts";
import { loadKernels, mergeLoraReference } from "../src/kernels/mod.ts";
import { compileEmbeddedKernel } from "../src/kernels/wasm_backend.ts";
import { applyRuntimeSettings, markStarted, resolveRuntimeOptions } from "../src/model/runtime_options.ts";
import { defaultNumThreads } from "../src/runtime/threads.ts";
import { expected, fixture, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";

/** Runs `fn` while `WebAssembly.compile` refuses bytes as workerd does, then restores it. */
async function withoutWasmCodegen<T>(fn: () => Promise<T>): Promise<T> {
  const wasm = WebAssembly as unknown as { compile: (...args: unknown[]) => Promise<unknown> };
  const original = wasm.compile;
  wasm.compile = () =>
    Promise.reject(new WebAssembly.CompileError("WebAssembly.compile(): Wasm code generation disallowed by embedder"));
  try {
    return await fn();
  } finally {
    wasm.compile = original;
  }
}

test("numThreads defaults to every core in Deno, Bun and Node, and onnxruntime runs with it", async () => {
  const cores = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
  assert.equal(
    await defaultNumThreads(),
    cores && cores > 0 ? cores : (await import("node:os")).availableParallelism(),
  );
  await using base = await loadBaseModel(fixture("llama-tiny"));
  assert.equal(base.settings.runtime?.numThreads, await defaultNumThreads());
  assert.equal(ort.env.wasm.numThreads, base.settings.runtime?.numThreads);
});

test("a numThreads that is not a positive integer is refused, naming the option", async () => {
  for (const bad of [0, -1, 1.5, Number.NaN]) {
    await assert.rejects(
      loadBaseModel(fixture("llama-tiny"), { numThreads: bad }),
      (e: unknown) => e instanceof UnsupportedError && e.key === "numThreads",
    );
  }
});

test("a later load asking for other onnxruntime settings than those in force gets an UnsupportedError", async () => {
  await using base = await loadBaseModel(fixture("llama-tiny"));
  const inForce = ort.env.wasm.numThreads!;
  await assert.rejects(
    loadBaseModel(fixture("llama-tiny"), { numThreads: inForce + 1 }),
    (e: unknown) => e instanceof UnsupportedError && e.key === "numThreads" && /once per process/.test(e.message),
  );
  await using same = await loadBaseModel(fixture("llama-tiny"), { numThreads: inForce });
  assert.deepEqual(same.inputNames, base.inputNames);
});

test("settings are written before a build's first session and only checked after it", async () => {
  const env = { wasm: {} as { numThreads?: number; wasmPaths?: unknown } };
  applyRuntimeSettings(
    env,
    await resolveRuntimeOptions({ numThreads: 3, wasmPaths: new URL("https://cdn.test/ort/") }),
  );
  assert.deepEqual(env.wasm, { numThreads: 3, wasmPaths: "https://cdn.test/ort/" });
  markStarted(env);
  applyRuntimeSettings(env, await resolveRuntimeOptions({ wasmPaths: "https://cdn.test/ort/" })); // same: fine
  assert.throws(
    () => applyRuntimeSettings(env, { numThreads: 1, threadsRequested: true }),
    (e: unknown) => e instanceof UnsupportedError && e.key === "numThreads",
  );
  assert.throws(
    () => applyRuntimeSettings(env, { numThreads: 3, threadsRequested: false, wasmPaths: "/other/" }),
    (e: unknown) => e instanceof UnsupportedError && e.key === "wasmPaths",
  );
  assert.equal(env.wasm.numThreads, 3);
});

test("where compiling is forbidden the kernels fall back to TypeScript, saying so once; a precompiled module runs", async () => {
  const module = await compileEmbeddedKernel();
  const warnings: string[] = [];
  const [fallback, precompiled] = await withoutWasmCodegen(() =>
    Promise.all([
      loadKernels({ onWarning: (m) => warnings.push(m) }),
      loadKernels({ module, onWarning: (m) => warnings.push(m) }),
    ])
  );
  assert.equal(fallback.backend, "js");
  assert.equal(precompiled.backend, "wasm-simd");
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /disallowed by embedder.*TypeScript kernels.*kernelModule/s);
  const dims = { outFeatures: 5, inFeatures: 3, rank: 2 };
  const a = Float32Array.from({ length: 6 }, (_, i) => i / 7 - 0.3);
  const b = Float32Array.from({ length: 10 }, (_, i) => 0.2 - i / 11);
  const expected = Float32Array.from({ length: 15 }, (_, i) => i / 13);
  const w = expected.slice();
  mergeLoraReference(expected, a, b, dims, 1.5, "out_in");
  precompiled.mergeLora(w, a, b, dims, 1.5, "out_in");
  for (let i = 0; i < w.length; i++) assert.ok(Math.abs(w[i] - expected[i]) < 1e-6);
});

test("a base whose kernels cannot be compiled merges with the TypeScript kernels: same logits, one warning", async () => {
  const warnings: string[] = [];
  await using base = await loadBaseModel(fixture("llama-tiny"), { onWarning: (m) => warnings.push(m) });
  await using reference = await loadBaseModel(fixture("llama-tiny"));
  const adapter = fixture("llama-tiny-lora-qv");
  const [slow, fast] = [
    await withoutWasmCodegen(async () => {
      const first = await fromPretrained(base, adapter, { mode: "merged", onWarning: () => {} });
      await first.loadAdapter(adapter, "again", { onWarning: () => {} });
      return first;
    }),
    await fromPretrained(reference, adapter, { mode: "merged", onWarning: () => {} }),
  ];
  assert.equal(slow.mergeBackend, "js");
  assert.equal(fast.mergeBackend, "wasm-simd");
  assert.equal(warnings.length, 1);
  const e = await expected("llama-tiny-lora-qv");
  const [got, want] = [await prefillAndStep(slow, e), await prefillAndStep(fast, e)];
  assert.ok(maxAbsDiff(got.logits, want.logits) < 1e-5);
  assert.ok(maxAbsDiff(got.nextLogits, want.nextLogits) < 1e-5);
  assert.ok(maxAbsDiff(got.logits, e.logits) < 1e-4, "PEFT's logits");
  await slow.release();
  await fast.release();
});
