import { test } from "node:test";
import assert from "node:assert/strict";
import {
  AdapterConfigError,
  AdapterMismatchError,
  type AdapterMode,
  fromPretrained,
  loadBaseModel,
  memorySource,
  SafetensorsError,
  UnsupportedError,
} from "../mod.ts";
import { readFile } from "node:fs/promises";
import { sessionsCreated } from "./support/sessions.ts";
import { parseSafetensors, serializeSafetensors } from "../src/safetensors/mod.ts";
import { expected, fixture, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";
import { countWasmCompiles } from "./support/wasm_compiles.ts";

const ATOL = 1e-4;
const MODES: AdapterMode[] = ["dynamic", "merged"];

/** Prefill logits of a model (or of a run with options) against a fixture's expected ones. */
async function distance(model: Parameters<typeof prefillAndStep>[0], name: string): Promise<number> {
  const e = await expected(name);
  return maxAbsDiff((await prefillAndStep(model, e)).logits, e.logits);
}

/** The same model object, run with a fixed `adapter` option. */
function withAdapter(model: Awaited<ReturnType<typeof fromPretrained>>, adapter: string | string[] | null) {
  return {
    inputNames: model.inputNames,
    config: model.config,
    run: (feeds: Parameters<typeof model.run>[0]) => model.run(feeds, { adapter }),
  };
}

for (const mode of MODES) {
  test(`${mode}: loadAdapter does not activate; setAdapter, per-run adapter, disableAdapter, deleteAdapter`, async () => {
    const base = await loadBaseModel(fixture("llama-tiny"));
    const model = await fromPretrained(base, fixture("llama-tiny-lora-qv"), { mode, adapterName: "qv" });
    await model.loadAdapter(fixture("llama-tiny-dora-qv"), "dora");
    assert.deepEqual(model.listAdapters(), ["qv", "dora"]);
    assert.equal(model.activeAdapter, "qv");
    assert.ok(await distance(model, "llama-tiny-lora-qv") < ATOL);

    model.setAdapter("dora");
    assert.equal(model.activeAdapter, "dora");
    assert.ok(await distance(model, "llama-tiny-dora-qv") < ATOL);
    // A run may name its adapter, or none, regardless of the active one.
    assert.ok(await distance(withAdapter(model, "qv"), "llama-tiny-lora-qv") < ATOL);
    assert.ok(await distance(withAdapter(model, null), "llama-tiny") < ATOL);

    {
      using _off = model.disableAdapter();
      assert.ok(await distance(model, "llama-tiny") < ATOL);
    }
    assert.ok(await distance(model, "llama-tiny-dora-qv") < ATOL);

    // Deleting the active adapter activates the first remaining one (PEFT's delete_adapter).
    await model.deleteAdapter("dora");
    assert.deepEqual(model.listAdapters(), ["qv"]);
    assert.deepEqual(model.activeAdapters, ["qv"]);
    assert.throws(() => model.setAdapter("dora"), AdapterConfigError);
    await assert.rejects(() => model.deleteAdapter("nope"), AdapterConfigError);
    // Concurrent loads both land (each builds on the engine the previous one committed).
    await Promise.all([
      model.loadAdapter(fixture("llama-tiny-lora-mlp-b"), "mlp"),
      model.loadAdapter(fixture("llama-tiny-lora-embed"), "embed"),
    ]);
    assert.ok(await distance(withAdapter(model, "mlp"), "llama-tiny-lora-mlp-b") < ATOL);
    assert.ok(await distance(withAdapter(model, "embed"), "llama-tiny-lora-embed") < ATOL);
    assert.ok(await distance(model, "llama-tiny-lora-qv") < ATOL);
    await model.release();
    await base.release();
  });

  test(`${mode}: concurrent runs with different adapters each get their own outputs`, async () => {
    const base = await loadBaseModel(fixture("llama-tiny"));
    const model = await fromPretrained(base, fixture("llama-tiny-lora-qv"), { mode, adapterName: "qv" });
    await model.loadAdapter(fixture("llama-tiny-lora-mlp-b"), "mlp");
    const cases: Array<[string | null, string]> = [["qv", "llama-tiny-lora-qv"], ["mlp", "llama-tiny-lora-mlp-b"], [
      null,
      "llama-tiny",
    ]];
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => cases[i % 3]).map(([adapter, name]) =>
        distance(withAdapter(model, adapter), name)
      ),
    );
    for (const d of results) assert.ok(d < ATOL);
    await model.release();
    await base.release();
  });

  test(`${mode}: a failed loadAdapter leaves the model as it was`, async () => {
    const base = await loadBaseModel(fixture("llama-tiny"));
    const model = await fromPretrained(base, fixture("llama-tiny-lora-qv"), { mode });
    const broken = memorySource("broken", {
      "adapter_config.json": new TextEncoder().encode('{"peft_type":"LORA","r":8,"target_modules":["q_proj"]}'),
      "adapter_model.safetensors": new Uint8Array([1, 2, 3]),
    });
    await assert.rejects(() => model.loadAdapter(broken, "broken"), SafetensorsError);
    await assert.rejects(() => model.loadAdapter(fixture("llama-tiny-lora-qv"), "default"), AdapterConfigError); // name taken
    await assert.rejects(() => model.loadAdapter(fixture("llama-tiny-lora-qv"), "../x"), AdapterConfigError);
    assert.deepEqual(model.listAdapters(), ["default"]);
    assert.ok(await distance(model, "llama-tiny-lora-qv") < ATOL);
    await model.release();
    await base.release();
  });

  test(`${mode}: mergeAndUnload gives a base with the adapter merged; unload gives the base; both leave the model usable`, async () => {
    const base = await loadBaseModel(fixture("gpt2-tiny"));
    const model = await fromPretrained(base, fixture("gpt2-tiny-lora-c_attn"), { mode });
    const merged = await model.mergeAndUnload({ safeMerge: true });
    assert.ok(await distance(merged, "gpt2-tiny-lora-c_attn") < ATOL);
    assert.equal(model.unload(), base);
    assert.ok(await distance(base, "gpt2-tiny") < ATOL);
    assert.ok(await distance(model, "gpt2-tiny-lora-c_attn") < ATOL);
    await merged.release();
    await model.release();
    await base.release();
  });
}

test("merged mode runs one adapter at a time and says so", async () => {
  const base = await loadBaseModel(fixture("llama-tiny"));
  const model = await fromPretrained(base, fixture("llama-tiny-lora-qv"), { mode: "merged", adapterName: "qv" });
  await model.loadAdapter(fixture("llama-tiny-lora-mlp-b"), "mlp");
  assert.throws(() => model.setAdapter(["qv", "mlp"]), UnsupportedError);
  assert.equal(model.activeAdapter, "qv");
  await model.release();
  await base.release();
});

test("dynamic: several active adapters add up, weights scale them, and mergeAndUnload merges them all", async () => {
  const base = await loadBaseModel(fixture("llama-tiny"));
  const model = await fromPretrained(base, fixture("llama-tiny-lora-qv"), { adapterName: "qv" });
  await model.loadAdapter(fixture("llama-tiny-lora-mlp-b"), "mlp");
  const e = await expected("llama-tiny");
  const logits = async (m: Parameters<typeof prefillAndStep>[0]) => (await prefillAndStep(m, e)).logits;

  // Reference: both adapters merged, in merged mode, one after the other.
  model.setAdapter(["qv", "mlp"]);
  assert.deepEqual(model.activeAdapters, ["qv", "mlp"]);
  const both = await logits(model);
  const merged = await model.mergeAndUnload({ adapterNames: ["qv", "mlp"] });
  assert.ok(maxAbsDiff(both, await logits(merged)) < ATOL);
  // Not the same as either adapter alone.
  assert.ok(maxAbsDiff(both, await logits(withAdapter(model, "qv"))) > 0.01);
  assert.ok(maxAbsDiff(both, await logits(withAdapter(model, "mlp"))) > 0.01);

  // A weighted combination ("cat"): weight 1 each equals the sum; weight 0 for one equals the other alone.
  await model.addWeightedAdapter(["qv", "mlp"], [1, 0], "qv_only", { combinationType: "cat" });
  assert.ok(maxAbsDiff(await logits(withAdapter(model, "qv_only")), await logits(withAdapter(model, "qv"))) < ATOL);
  await model.addWeightedAdapter(["qv", "mlp"], [0.5, 2], "mix", { combinationType: "cat" });
  const mix = await logits(withAdapter(model, "mix"));
  const mergedMix = await model.mergeAndUnload({ adapterNames: ["mix"] });
  assert.ok(maxAbsDiff(mix, await logits(mergedMix)) < ATOL);
  await model.deleteAdapter("qv_only"); // a weighted adapter is an adapter of its own: its sources stay
  await assert.rejects(
    () => model.addWeightedAdapter(["qv"], [1, 2], "bad", { combinationType: "cat" }),
    AdapterConfigError,
  );
  await assert.rejects(
    () => model.addWeightedAdapter(["qv", "mlp"], [1, 1], "bad", { combinationType: "nope" as "cat" }),
    AdapterConfigError,
  );
  await merged.release();
  await mergedMix.release();
  await model.release();
  await base.release();
});

test("dynamic: a graph prepared for all linear modules serves adapters without a rewrite; new modules trigger one", async () => {
  const base = await loadBaseModel(fixture("llama-tiny"));
  const prepared = await fromPretrained(base, fixture("llama-tiny-lora-qv"), { prepareModules: "all-linear" });
  await prepared.loadAdapter(fixture("llama-tiny-lora-all-rslora-f16"), "all");
  prepared.setAdapter("all");
  assert.ok(await distance(prepared, "llama-tiny-lora-all-rslora-f16") < ATOL);

  const lazy = await fromPretrained(base, fixture("llama-tiny-lora-qv"));
  await lazy.loadAdapter(fixture("llama-tiny-lora-embed"), "embed"); // embed_tokens: not branched yet
  assert.ok(await distance(withAdapter(lazy, "embed"), "llama-tiny-lora-embed") < ATOL);
  assert.ok(await distance(lazy, "llama-tiny-lora-qv") < ATOL);
  await prepared.release();
  await lazy.release();
  await base.release();
});

test("a trained base_layer bias is applied in dynamic mode as in merged mode (bias delta input)", async () => {
  const base = await loadBaseModel(fixture("gpt2-tiny"));
  const files = {
    "adapter_config.json": await readFile(`${fixture("gpt2-tiny-lora-c_attn")}/adapter_config.json`),
    "adapter_model.safetensors": await readFile(`${fixture("gpt2-tiny-lora-c_attn")}/adapter_model.safetensors`),
  };
  const st = parseSafetensors(new Uint8Array(files["adapter_model.safetensors"]));
  const tensors = Object.fromEntries(
    st.names().map((n) => [n, { dtype: st.get(n).dtype, shape: st.get(n).shape, data: st.get(n).bytes }]),
  );
  // bias: "all" / "lora_only" saves the trained bias of a LoRA-wrapped layer under `base_layer` (as PEFT does).
  tensors["base_model.model.transformer.h.0.attn.c_attn.base_layer.bias"] = {
    dtype: "F32",
    shape: [192],
    data: new Uint8Array(192 * 4),
  };
  const source = memorySource("with-bias", {
    "adapter_config.json": new Uint8Array(files["adapter_config.json"]),
    "adapter_model.safetensors": serializeSafetensors(tensors),
  });
  // Merged mode applies it: the c_attn bias of layer 0 is replaced by zeros.
  const merged = await fromPretrained(base, source, { mode: "merged" });
  assert.ok(await distance(merged, "gpt2-tiny-lora-c_attn") > 1e-3);
  const dynamic = await fromPretrained(base, source, { mode: "dynamic" });
  const e = await expected("gpt2-tiny-lora-c_attn");
  const [m, d] = [await prefillAndStep(merged, e), await prefillAndStep(dynamic, e)];
  assert.ok(maxAbsDiff(m.logits, d.logits) < 1e-4 && maxAbsDiff(m.nextLogits, d.nextLogits) < 1e-4);
  await dynamic.release();
  await merged.release();
  await base.release();
});

test("dynamic: switching adapters and disabling create no session; 50 concurrent runs over 3 adapters and the base", async () => {
  const base = await loadBaseModel(fixture("llama-tiny"));
  const model = await fromPretrained(base, fixture("llama-tiny-lora-qv"), {
    adapterName: "qv",
    prepareModules: "all-linear",
  });
  await model.loadAdapter(fixture("llama-tiny-dora-qv"), "dora");
  await model.loadAdapter(fixture("llama-tiny-lora-mlp-b"), "mlp");
  // No onnxruntime session is created from here on.
  const created = await sessionsCreated(async () => {
    for (
      const [name, fixtureName] of [["dora", "llama-tiny-dora-qv"], ["qv", "llama-tiny-lora-qv"], [
        "mlp",
        "llama-tiny-lora-mlp-b",
      ], ["qv", "llama-tiny-lora-qv"]]
    ) {
      model.setAdapter(name);
      assert.ok(await distance(model, fixtureName) < ATOL, name);
    }
    {
      using _off = model.disableAdapter();
      assert.ok(await distance(model, "llama-tiny") < ATOL);
    }
    const cases: Array<[string | null, string]> = [
      ["qv", "llama-tiny-lora-qv"],
      ["dora", "llama-tiny-dora-qv"],
      ["mlp", "llama-tiny-lora-mlp-b"],
      [null, "llama-tiny"],
    ];
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => cases[i % 4]).map(([a, n]) => distance(withAdapter(model, a), n)),
    );
    assert.equal(results.filter((d) => d < ATOL).length, 50);
  });
  assert.equal(created, 0);
  await model.release();
  await base.release();
});

test("errors leave the model unchanged: unknown adapter, adapter for another base, name taken, deleting none", async () => {
  const base = await loadBaseModel(fixture("llama-tiny"));
  const model = await fromPretrained(base, fixture("llama-tiny-lora-qv"), { adapterName: "qv" });
  await assert.rejects(() => model.run({}, { adapter: "nope" }), AdapterConfigError);
  assert.throws(() => model.setAdapter("nope"), AdapterConfigError);
  await assert.rejects(() => model.loadAdapter(fixture("gpt2-tiny-lora-c_attn"), "gpt2"), AdapterMismatchError);
  await assert.rejects(() => model.loadAdapter(fixture("llama-tiny-lora-mlp-b"), "qv"), AdapterConfigError);
  await assert.rejects(() => model.deleteAdapter("nope"), AdapterConfigError);
  assert.deepEqual(model.listAdapters(), ["qv"]);
  assert.equal(model.activeAdapter, "qv");
  assert.ok(await distance(model, "llama-tiny-lora-qv") < ATOL);
  await model.release();
  await base.release();
});

test("a base compiles the LoRA kernel once for all its adapters and models, in both modes", async () => {
  await using base = await loadBaseModel(fixture("llama-tiny"));
  const { result: models, compiles } = await countWasmCompiles(async () => {
    const dynamic = await fromPretrained(base, fixture("llama-tiny-lora-qv"));
    await dynamic.loadAdapter(fixture("llama-tiny-dora-qv"), "dora");
    const merged = await fromPretrained(base, fixture("llama-tiny-lora-mlp-b"), { mode: "merged" });
    await merged.loadAdapter(fixture("llama-tiny-lora-qv"), "qv");
    return [dynamic, merged];
  });
  assert.equal(compiles, 1);
  assert.ok(await distance(models[0], "llama-tiny-lora-qv") < ATOL);
  assert.ok(await distance(models[1], "llama-tiny-lora-mlp-b") < ATOL);
  // Another base owns kernels of its own.
  await using other = await loadBaseModel(fixture("llama-tiny"));
  const again = await countWasmCompiles(() => fromPretrained(other, fixture("llama-tiny-lora-qv")));
  assert.equal(again.compiles, 1);
  for (const m of [...models, again.result]) await m.release();
});

test("await using releases a PeftModel and its base", async () => {
  const calls: string[] = [];
  {
    await using base = await loadBaseModel(fixture("llama-tiny"));
    const releaseBase = base.release.bind(base);
    base.release = () => (calls.push("base"), releaseBase());
    await using model = await fromPretrained(base, fixture("llama-tiny-lora-qv"));
    const releaseModel = model.release.bind(model);
    model.release = () => (calls.push("model"), releaseModel());
    assert.ok(await distance(model, "llama-tiny-lora-qv") < ATOL);
  }
  assert.deepEqual(calls, ["model", "base"]); // disposed in reverse order of declaration
});

test("the session counter counts the sessions src/ creates (so the 'no new session' checks can fail)", async () => {
  const created = await sessionsCreated(async () => {
    const base = await loadBaseModel(fixture("llama-tiny"));
    assert.ok(await distance(base, "llama-tiny") < ATOL);
    const model = await fromPretrained(base, fixture("llama-tiny-lora-qv"));
    await model.release();
    await base.release();
  });
  assert.equal(created, 2); // the base's session (its first run made it) and the branched graph's
});

test("the base and its dynamic adapters share one session; the base's logits stay its own", async () => {
  const alone = await loadBaseModel(fixture("llama-tiny"));
  const e = await expected("llama-tiny");
  const want = (await prefillAndStep(alone, e)).logits;
  await alone.release();
  let model!: Awaited<ReturnType<typeof fromPretrained>>;
  const base = await loadBaseModel(fixture("llama-tiny"));
  const created = await sessionsCreated(async () => {
    model = await fromPretrained(base, fixture("llama-tiny-lora-qv"));
    // Base runs (of the base itself, and of the model without an adapter) go through the branched session.
    assert.deepEqual((await prefillAndStep(base, e)).logits, want);
    assert.deepEqual((await prefillAndStep(withAdapter(model, null), e)).logits, want);
    assert.ok(await distance(model, "llama-tiny-lora-qv") < ATOL);
  });
  assert.equal(created, 1, "only the branched graph's session: the base never made one of its own");
  // Released with the model, the base makes its own session again (its weights read again from the files).
  await model.release();
  const again = await sessionsCreated(async () => {
    assert.deepEqual((await prefillAndStep(base, e)).logits, want);
  });
  assert.equal(again, 1);
  // A base that has its own session gives it up to the first dynamic model.
  const next = await fromPretrained(base, fixture("llama-tiny-lora-qv"));
  assert.deepEqual((await prefillAndStep(base, e)).logits, want);
  await next.release();
  await base.release();
});

test('dynamic, prepareModules "all-linear" on an export naming modules otherwise than the adapter (OPT torchscript: decoder.* vs model.decoder.*): one branch per node, PEFT\'s logits', async () => {
  const { comparedDiff, realExpected, realManifest, realPath } = await import("./support/real_fixtures.ts");
  const opt = (await realManifest()).bases.find((b) => b.name === "opt-torchscript")!;
  await using base = await loadBaseModel(realPath(opt.path));
  assert.ok(base.weights.modules.includes("decoder.layers.0.self_attn.q_proj")); // the export's own names
  await using model = await fromPretrained(base, realPath("adapters/opt-lora-all-linear"), {
    prepareModules: "all-linear",
    onWarning: () => {},
  });
  const e = await realExpected("adapters/opt-lora-all-linear", opt.inputs);
  const diff = comparedDiff(opt, e, (await model.run(e.feeds)).logits.data as Float32Array);
  assert.ok(diff < 1e-4, `max abs diff ${diff}`);
});
