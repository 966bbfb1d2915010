// The native backend (device: "native", onnxruntime-node's CPU execution provider) against the WebAssembly one on
// fixtures made by the real Hugging Face stack: the same logits (atol 1e-4) for a real PEFT LoRA in dynamic and
// merged mode on the fp32 and the q4 (MatMulNBits) file, PEFT's own numbers within the fixtures' tolerance, the
// demo's reference greedy generations, mixed-adapter batches, serving, and the typed error where it cannot load.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { type BaseModel, DeviceUnavailableError, fromPretrained, loadBaseModel, type PeftModel } from "../mod.ts";
import { BASE_ADAPTER } from "../src/model/peft_model.ts";
import { generate, generateBatch, type TokenizerLike } from "../src/generate/mod.ts";
import { loadNativeOrt, nativeSessionOptions } from "../src/model/native_session.ts";
import { nativeAddonsBlocked } from "../src/runtime/native_addons.ts";
import { createAdapterPool } from "../src/serving/mod.ts";
import { createApp } from "../src/server/mod.ts";
import { fixture } from "./support/fixtures.ts";
import { reference, relDiff, safetensorsAt, tempDir, tensorRelDiff, trainCase } from "./support/train.ts";
import {
  adapterAtol,
  baseNamed,
  comparedDiff,
  quantMergeRef,
  quantRefLogits,
  realExpected,
  realManifest,
  realPath,
} from "./support/real_fixtures.ts";

const isDeno = (globalThis as { Deno?: unknown }).Deno !== undefined;
const demo = (p: string) => fileURLToPath(new URL(`../examples/demo/${p}`, import.meta.url));
const manifest = await realManifest();
const llama = baseNamed(manifest, "llama-torchscript");
const lora = manifest.adapters.find((a) => a.name === "llama-lora-attn")!;
const dora = manifest.adapters.find((a) => a.name === "llama-dora")!;
const ATOL = 1e-4;

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= max)) max = d; // NaN fails
  }
  return max;
}

const logitsOf = async (lm: BaseModel | PeftModel, feeds: Parameters<BaseModel["run"]>[0]) =>
  (await lm.run(feeds)).logits.data as Float32Array;

for (const file of ["onnx/model.onnx", "onnx/model_q4.onnx"]) {
  test(`native and wasm agree (${ATOL}) on ${llama.name} ${file}: the base and ${lora.name} in both modes, and PEFT's numbers hold`, async () => {
    const variant = llama.variants.find((v) => v.file === file)!;
    const quantRef = await quantMergeRef();
    const wasm = await loadBaseModel(realPath(llama.path), { file, device: "wasm" });
    const native = await loadBaseModel(realPath(llama.path), { file, device: "native" });
    try {
      assert.equal(native.device, "native");
      const e = await realExpected(llama.path, llama.inputs);
      const nativeBase = await logitsOf(native, e.feeds);
      assert.ok(maxAbsDiff(nativeBase, await logitsOf(wasm, e.feeds)) < ATOL, "base");
      if (variant.dtype === "q4") {
        // onnxruntime (Python, native CPU) ran this very file for the quantized-merge reference.
        const ref = { ...e, logits: await quantRefLogits(llama, `base/${file}`) };
        assert.ok(comparedDiff(llama, ref, nativeBase) < ATOL, "base vs onnxruntime's own run of the file");
      }
      const ea = await realExpected(lora.path, llama.inputs);
      for (const mode of ["dynamic", "merged"] as const) {
        const [w, n] = await Promise.all(
          [wasm, native].map((b) => fromPretrained(b, realPath(lora.path), { mode, onWarning: () => {} })),
        );
        const out = await logitsOf(n, ea.feeds);
        const diff = maxAbsDiff(out, await logitsOf(w, ea.feeds));
        assert.ok(diff < ATOL, `${mode}: native vs wasm ${diff}`);
        const refCase = quantRef.cases.find((c) => c.adapter === lora.name && c.base === llama.name && c.file === file);
        if (mode === "merged" && variant.dtype === "q4") {
          // Merged into q4: PEFT's merge on the quantized base, run by onnxruntime, is the reference.
          const ref = { ...ea, logits: await quantRefLogits(llama, refCase!.key!) };
          assert.ok(comparedDiff(llama, ref, out) < quantRef.atol, `${mode} vs PEFT's merge on the q4 base`);
        } else {
          const atol = adapterAtol(lora, llama, variant, mode);
          assert.ok(lora.delta_from_base > 2 * atol, "the adapter's effect is larger than the tolerance");
          assert.ok(comparedDiff(llama, ea, out) < atol, `${mode} vs PEFT`);
        }
        await Promise.all([w.release(), n.release()]);
      }
    } finally {
      await Promise.all([wasm.release(), native.release()]);
    }
  });
}

test("a mixed-adapter batch on native equals wasm's, and each row equals that row run alone", async () => {
  const models = await Promise.all((["wasm", "native"] as const).map(async (device) => {
    const base = await loadBaseModel(realPath(llama.path), { device });
    const model = await fromPretrained(base, realPath(lora.path), { adapterName: "lora" });
    await model.loadAdapter(realPath(dora.path), "dora");
    return model;
  }));
  try {
    const e = await realExpected(lora.path, llama.inputs); // two rows
    const rows = e.feeds.input_ids.dims[0];
    assert.ok(rows >= 2);
    const names = ["dora", BASE_ADAPTER, "lora", "dora"].slice(0, rows);
    const [wasm, native] = await Promise.all(
      models.map(async (m) => (await m.run(e.feeds, { adapterNames: names })).logits.data as Float32Array),
    );
    assert.ok(maxAbsDiff(native, wasm) < ATOL, "native vs wasm");
    const per = native.length / rows;
    for (const [i, name] of names.entries()) {
      const alone = (await models[1].run(e.feeds, { adapter: name === BASE_ADAPTER ? null : name })).logits
        .data as Float32Array;
      const d = maxAbsDiff(native.subarray(i * per, (i + 1) * per), alone.subarray(i * per, (i + 1) * per));
      assert.ok(d < ATOL, `row ${i} (${name}) vs alone: ${d}`);
    }
  } finally {
    for (const m of models) {
      await m.release();
      await m.base.release();
    }
  }
});

test("generate on native reproduces the demo's greedy reference generations; generateBatch rows equal them", async () => {
  const reference = (await import("../examples/demo/reference_generations.json", { with: { type: "json" } })).default;
  const base = await loadBaseModel(demo("byte-llama"), { device: "native", numThreads: 1 });
  const model = await fromPretrained(base, demo("byte-llama-python-lora"));
  try {
    const bytes: TokenizerLike = {
      encode: (t) => [...new TextEncoder().encode(t)],
      decode: (ids) => String.fromCharCode(...ids),
    };
    const refs = reference.generations.filter((g) => g.prompt === "def " || g.prompt === "The ");
    for (const ref of refs) {
      const lm = ref.variant === "base" ? base : model;
      const result = await lm.generate(ref.prompt, { maxNewTokens: 120, temperature: 0 });
      assert.deepEqual(result.tokenIds, ref.generated_ids, `${ref.variant} ${JSON.stringify(ref.prompt)}`);
    }
    const names = refs.map((r) => r.variant === "base" ? BASE_ADAPTER : "default");
    const batch = await generateBatch(model, bytes, refs.map((r) => r.prompt), {
      maxNewTokens: 40,
      temperature: 0,
      eosTokenId: [],
      adapterNames: names,
    });
    for (const [i, ref] of refs.entries()) {
      assert.deepEqual(batch[i].tokenIds, ref.generated_ids.slice(0, 40), `batch row ${i} (${names[i]})`);
    }
    const alone = await generate(model, bytes, "def ", { maxNewTokens: 8, temperature: 0, eosTokenId: [] });
    assert.equal(alone.tokenIds.length, 8);
  } finally {
    await model.release();
    await base.release();
  }
});

test("the server on a native base answers concurrent completions (batched) with the reference generations", async () => {
  const reference = (await import("../examples/demo/reference_generations.json", { with: { type: "json" } })).default;
  const base = await loadBaseModel(demo("byte-llama"), { device: "native" });
  const pool = await createAdapterPool(base, { baseName: "byte-llama" });
  await pool.load("python", { kind: "local", path: demo("byte-llama-python-lora") });
  const app = createApp({ pool });
  try {
    const refs = reference.generations.filter((g) => g.prompt === "def " || g.prompt === "The ");
    const texts = await Promise.all(refs.map(async (ref) => {
      const response = await app.fetch(
        new Request("http://localhost/v1/completions", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            model: ref.variant === "base" ? "byte-llama" : "python",
            prompt: ref.prompt,
            max_tokens: 24,
            temperature: 0,
          }),
        }),
      );
      assert.equal(response.status, 200);
      return ((await response.json()) as { choices: { text: string }[] }).choices[0].text;
    }));
    for (const [i, ref] of refs.entries()) {
      assert.equal(texts[i], new TextDecoder().decode(new Uint8Array(ref.generated_ids.slice(0, 24))), `${i}`);
    }
    assert.ok(pool.batchStats.maxRows > 1, "the requests shared decode steps");
  } finally {
    await pool.close();
    await base.release();
  }
});

test("training on native: per-call loss and grad norm, and the trained tensors, match PyTorch + PEFT (1e-4 relative)", async () => {
  const name = "llama-qv-adamw-accum";
  const ref = await reference(name);
  const base = await loadBaseModel(fixture(ref.base), { device: "native" });
  const model = await fromPretrained(base, trainCase(name, "start"), { isTrainable: true, onWarning: () => {} });
  try {
    const trainer = model.trainer(ref.trainer);
    for (const [i, batch] of ref.batches.entries()) {
      const r = await trainer.step(batch);
      const want = ref.calls[i];
      assert.ok(relDiff(r.loss, want.loss) < 1e-4, `call ${i}: loss ${r.loss} vs ${want.loss}`);
      if (want.gradNorm !== null) assert.ok(relDiff(r.gradNorm!, want.gradNorm) < 1e-4, `call ${i}: grad norm`);
    }
    const out = await tempDir();
    await model.savePretrained(out);
    const ours = await safetensorsAt(`${out}/adapter_model.safetensors`);
    const theirs = await safetensorsAt(trainCase(name, "end", "adapter_model.safetensors"));
    for (const key of theirs.names()) assert.ok(tensorRelDiff(ours.toFloat32(key), theirs.toFloat32(key)) < 1e-4, key);
  } finally {
    await model.release();
    await base.release();
  }
});

test("numThreads becomes onnxruntime-node's intraOpNumThreads unless sessionOptions set it; the CPU EP by default", () => {
  assert.deepEqual(nativeSessionOptions({}, 3), { executionProviders: ["cpu"], intraOpNumThreads: 3 });
  assert.deepEqual(nativeSessionOptions({ intraOpNumThreads: 1, graphOptimizationLevel: "basic" }, 3), {
    executionProviders: ["cpu"],
    intraOpNumThreads: 1,
    graphOptimizationLevel: "basic",
  });
});

test("native addons: allowed in Node and Bun, in Deno only with the ffi permission, never in browsers", () => {
  const deno = (state: string) => ({ Deno: { permissions: { querySync: () => ({ state }) } } });
  assert.equal(nativeAddonsBlocked(deno("granted")), undefined);
  assert.match(nativeAddonsBlocked(deno("prompt"))!, /--allow-ffi/);
  assert.match(nativeAddonsBlocked(deno("denied"))!, /--allow-ffi/);
  assert.equal(nativeAddonsBlocked({ Bun: {} }), undefined);
  assert.equal(nativeAddonsBlocked({ process: { versions: { node: "20.0.0" } } }), undefined);
  assert.match(nativeAddonsBlocked({})!, /only Node, Bun and Deno/);
});

test("device native where onnxruntime-node cannot load is a DeviceUnavailableError saying why", async () => {
  const missing = () => Promise.reject(new Error("Cannot find module 'onnxruntime-node'"));
  await assert.rejects(loadNativeOrt(missing, undefined), (e: unknown) => {
    assert.ok(e instanceof DeviceUnavailableError);
    assert.equal(e.key, "device");
    assert.match(e.message, /onnxruntime-node@1\.30\.0 .*could not be loaded \(Cannot find module/);
    return true;
  });
  await assert.rejects(loadNativeOrt(missing, "browsers load no native addons"), (e: unknown) => {
    assert.ok(e instanceof DeviceUnavailableError);
    assert.match(e.message, /device "native" is not available: browsers load no native addons/);
    return true;
  });
});

test("Deno without --allow-ffi: loadBaseModel({ device: 'native' }) rejects with DeviceUnavailableError, no prompt", {
  skip: isDeno ? false : "runs in the Deno suite",
}, async () => {
  const script = `import { loadBaseModel } from ${JSON.stringify(new URL("../mod.ts", import.meta.url).href)};
try { await loadBaseModel(${JSON.stringify(realPath(llama.path))}, { device: "native" }); console.log("loaded"); }
catch (e) { console.log(e.name, e.message); }`;
  // `deno eval` grants every permission: the script runs from a file with read, env and sys only.
  const dir = await mkdtemp(join(tmpdir(), "peft-edge-native-"));
  await writeFile(join(dir, "load.ts"), script);
  const out = await new Promise<string>((resolve, reject) =>
    execFile(
      process.execPath,
      ["run", "--no-check", "--no-prompt", "--allow-read", "--allow-env", "--allow-sys", join(dir, "load.ts")],
      { timeout: 120_000 },
      (error, stdout, stderr) => error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout),
    )
  ).finally(() => rm(dir, { recursive: true, force: true }));
  assert.match(out, /^DeviceUnavailableError device: device "native" is not available: .*--allow-ffi/);
});
