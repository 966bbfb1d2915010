/**
 * PEFT's injection rules decide what an adapter changes, not its keys
 * (`inject_adapter`, `check_target_module_exists`, `_create_new_module`,
 * `set_peft_model_state_dict`), planned against real exports
 * (tests/fixtures/index) with a real PEFT adapter's keys.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { AdapterConfigError, AdapterMismatchError, UnsupportedError } from "../mod.ts";
import { parseLoraConfig } from "../src/config/mod.ts";
import { groupAdapterKeys } from "../src/lora/adapter_weights.ts";
import { type LoraPatch, ModuleNotInExportError, planAdapter } from "../src/lora/plan.ts";
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
  // `extra`: keys added to the file's, with their shapes.
  const plan = (overrides: Record<string, unknown>, extra: Record<string, number[]> = {}) =>
    planAdapter(
      parseLoraConfig({ ...raw, ...overrides }, { onWarning: () => {} }),
      groupAdapterKeys([...st.names(), ...Object.keys(extra)]),
      (k) => extra[k] ?? st.info(k).shape,
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
    // PEFT also saves the targeted embedding's own weight (`save_embedding_layers`) and loads it under the
    // LoRA: without the base's values (no sameAsBase) the plan cannot tell it is the base's own, so applies it.
    assert.deepEqual(all.unmatchedKeys, []);
    assert.ok(all.patches.some((p) => p.kind === "replace" && p.module === "model.embed_tokens"));
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

test("BERT: modules_to_save loads the classifier whole; PEFT's strict=False load takes it even without", async () => {
  const { plan } = await setup("bert-cls-dynamo");
  const saved = plan({});
  const replaced = saved.patches.filter((p) => p.kind === "replace").map((p) => p.module);
  assert.deepEqual(replaced.sort(), ["classifier", "classifier"]); // weight and bias
  assert.deepEqual(saved.unmatchedKeys, []);
  // `classifier.weight` names a parameter the model has, so set_peft_model_state_dict loads it regardless.
  const notSaved = plan({ modules_to_save: null, task_type: null });
  assert.deepEqual(notSaved.patches.filter((p) => p.kind === "replace").length, 2);
  // A LoRA key of a module the config does not select is unexpected (the module was not injected).
  const onlyQuery = plan({ target_modules: ["query"] });
  assert.ok(onlyQuery.unmatchedKeys.some((k) => k.includes("attention.self.value.lora_A")));
});

test('GPT-2: trained biases (`bias: "all"`) load where the export can take them, and fail whole where not', async () => {
  const { plan } = await setup("gpt2-torchscript");
  const p = "base_model.model.transformer.h.0";
  // The wrapped c_attn's own bias (under base_layer) and a plain Conv1D's bias are both PEFT-loaded.
  const ok = plan({ bias: "all" }, { [`${p}.attn.c_attn.base_layer.bias`]: [48], [`${p}.attn.c_proj.bias`]: [16] });
  const biases = ok.patches.filter((x) => x.kind === "replace").map((x) => x.module).sort();
  assert.deepEqual(biases, ["transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj"]);
  // `c_attn.bias` (without base_layer) names no parameter of an injected c_attn: unexpected.
  assert.deepEqual(plan({}, { [`${p}.attn.c_attn.bias`]: [48] }).unmatchedKeys, [`${p}.attn.c_attn.bias`]);
  // A LayerNorm's bias (trained under `bias: "all"`) is found on its LayerNormalization node.
  const norm = plan({ bias: "all" }, { [`${p}.ln_1.bias`]: [16] }).patches.find((x) => x.module.endsWith("ln_1"));
  assert.equal(norm?.target.kind, "norm");
  assert.equal(norm?.target.bias?.inputIndex, 2);
  // A bias for a module the export shows but holds no parameter of: nothing is applied.
  assert.throws(() => plan({ bias: "all" }, { [`${p}.mlp.act.bias`]: [16] }), (e) => {
    assert.ok(e instanceof ModuleNotInExportError);
    assert.equal(e.module, "transformer.h.0.mlp.act");
    return true;
  });
});

test("a trained bias the export cannot take fails whole, naming the module: a decomposed RMSNorm has no bias Add", async () => {
  const { plan } = await setup("llama-torchscript");
  const key = "base_model.model.model.layers.0.input_layernorm.bias";
  assert.throws(() => plan({ bias: "all" }, { [key]: [16] }), (e) => {
    assert.ok(e instanceof AdapterMismatchError);
    assert.match((e as Error).message, /model\.layers\.0\.input_layernorm.*decomposed norm with no bias Add/);
    return true;
  });
});
