/**
 * PEFT's injection rules decide what an adapter changes, not its keys
 * (`inject_adapter`, `check_target_module_exists`, `_create_new_module`,
 * `set_peft_model_state_dict`), planned against real exports
 * (tests/fixtures/index) with a real PEFT adapter's keys.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { AdapterConfigError, UnsupportedError } from "../mod.ts";
import { parseLoraConfig } from "../src/config/mod.ts";
import { groupAdapterKeys } from "../src/lora/adapter_weights.ts";
import { type LoraPatch, planAdapter } from "../src/lora/plan.ts";
import { decodeModel } from "../src/onnx/model_file.ts";
import { indexWeights } from "../src/onnx/weight_index.ts";
import { parseSafetensors } from "../src/safetensors/mod.ts";
import { fixture } from "./support/fixtures.ts";

async function setup(name: string) {
  const dir = fixture(`index/${name}`);
  const weights = indexWeights(
    decodeModel(new Uint8Array(await readFile(`${dir}/onnx/model.onnx`)), "model.onnx").graph!,
    "onnx/model.onnx",
  );
  const raw = JSON.parse(await readFile(`${dir}/adapter/adapter_config.json`, "utf8"));
  const st = parseSafetensors(new Uint8Array(await readFile(`${dir}/adapter/adapter_model.safetensors`)));
  const plan = (overrides: Record<string, unknown>) =>
    planAdapter(
      parseLoraConfig({ ...raw, ...overrides }, { onWarning: () => {} }),
      groupAdapterKeys(st.names()),
      (k) => st.info(k).shape,
      weights,
    );
  return { plan, keys: st.names() };
}

const lora = (patches: ReadonlyArray<{ kind: string }>) =>
  patches.filter((p): p is LoraPatch => p.kind === "lora").map((p) => p.module).sort();

for (const name of ["llama-torchscript", "llama-dynamo"]) {
  test(`${name}: the config selects, keys of unselected modules are unexpected and not applied`, async () => {
    const { plan } = await setup(name);
    const all = plan({});
    assert.equal(lora(all.patches).length, 5); // q_proj and v_proj of 2 layers, embed_tokens
    // PEFT also saves the targeted embedding's own weight (`save_embedding_layers`); not applied (yet).
    assert.deepEqual(all.unmatchedKeys, ["base_model.model.model.embed_tokens.base_layer.weight"]);
    const onlyQ = plan({ target_modules: ["q_proj"] });
    assert.deepEqual(lora(onlyQ.patches), ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"]);
    assert.ok(onlyQ.unmatchedKeys.some((k) => k.includes("v_proj.lora_A")));
    assert.ok(onlyQ.unmatchedKeys.some((k) => k.includes("embed_tokens.lora_embedding_A")));
    const layer1 = plan({ target_modules: ["q_proj", "v_proj"], layers_to_transform: [1], layers_pattern: "layers" });
    assert.deepEqual(lora(layer1.patches), ["model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]);
    const regex = plan({ target_modules: String.raw`.*\.0\.self_attn\.(q|v)_proj` });
    assert.deepEqual(lora(regex.patches), ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"]);
    const excluded = plan({ exclude_modules: ["embed_tokens"] });
    assert.ok(!lora(excluded.patches).includes("model.embed_tokens"));
  });

  test(`${name}: PEFT's errors where the config selects nothing or what LoRA cannot wrap`, async () => {
    const { plan } = await setup(name);
    assert.throws(() => plan({ target_modules: ["nope_proj"] }), (e) => {
      assert.ok(e instanceof AdapterConfigError);
      assert.match((e as Error).message, /Target modules \{'nope_proj'\} not found in the base model/);
      return true;
    });
    assert.throws(
      () => plan({ target_modules: ["q_proj"], exclude_modules: ["q_proj"] }),
      /All modules were excluded/,
    );
    assert.throws(() => plan({ target_modules: ["input_layernorm"] }), (e) => {
      assert.ok(e instanceof UnsupportedError);
      assert.match((e as Error).message, /model\.layers\.0\.input_layernorm.*is not supported/);
      return true;
    });
  });
}

test("OPT TorchScript: PEFT's model.decoder.* names resolve to the export's decoder.* scopes", async () => {
  const { plan } = await setup("opt-torchscript");
  const p = plan({});
  const modules = p.patches.filter((x): x is LoraPatch => x.kind === "lora").map((x) => x.target.module).sort();
  assert.ok(modules.includes("decoder.layers.0.self_attn.q_proj"));
  assert.ok(modules.includes("decoder.layers.1.fc1"));
  assert.equal(modules.length, 6);
  assert.deepEqual(p.unmatchedKeys, []);
});

test("BERT: modules_to_save loads the classifier whole; without it in the config its keys are unexpected", async () => {
  const { plan } = await setup("bert-cls-dynamo");
  const saved = plan({});
  const replaced = saved.patches.filter((p) => p.kind === "replace").map((p) => p.module);
  assert.deepEqual(replaced.sort(), ["classifier", "classifier"]); // weight and bias
  assert.deepEqual(saved.unmatchedKeys, []);
  const notSaved = plan({ modules_to_save: null });
  assert.ok(notSaved.patches.every((p) => p.kind === "lora"));
  assert.deepEqual(notSaved.unmatchedKeys.sort(), [
    "base_model.model.classifier.bias",
    "base_model.model.classifier.weight",
  ]);
});
