import { test } from "node:test";
import assert from "node:assert/strict";
import { type AdapterMode, AdapterConfigError, fromPretrained, loadBaseModel, SafetensorsError, UnsupportedError, memorySource } from "../mod.ts";
import { expected, fixture, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";

const ATOL = 1e-4;
const MODES: AdapterMode[] = ["merged"];

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

    await assert.rejects(() => model.deleteAdapter("dora"), AdapterConfigError); // active
    model.setAdapter("qv");
    await model.deleteAdapter("dora");
    assert.deepEqual(model.listAdapters(), ["qv"]);
    assert.throws(() => model.setAdapter("dora"), AdapterConfigError);
    await assert.rejects(() => model.deleteAdapter("nope"), AdapterConfigError);
    assert.ok(await distance(model, "llama-tiny-lora-qv") < ATOL);
    await model.release();
    await base.release();
  });

  test(`${mode}: concurrent runs with different adapters each get their own outputs`, async () => {
    const base = await loadBaseModel(fixture("llama-tiny"));
    const model = await fromPretrained(base, fixture("llama-tiny-lora-qv"), { mode, adapterName: "qv" });
    await model.loadAdapter(fixture("llama-tiny-lora-mlp-b"), "mlp");
    const cases: Array<[string | null, string]> = [["qv", "llama-tiny-lora-qv"], ["mlp", "llama-tiny-lora-mlp-b"], [null, "llama-tiny"]];
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => cases[i % 3]).map(([adapter, name]) => distance(withAdapter(model, adapter), name)),
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
