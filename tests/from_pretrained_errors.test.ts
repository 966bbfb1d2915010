import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import {
  AdapterConfigError,
  AdapterMismatchError,
  FileNotFoundError,
  fromPretrained,
  loadBaseModel,
  memorySource,
  OnnxModelError,
  SafetensorsError,
  UnsupportedError,
} from "../mod.ts";
import { parseSafetensors, serializeSafetensors, type TensorInput } from "../src/safetensors/mod.ts";
import { expected, fixture, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";

const QV = "llama-tiny-lora-qv";
const encoder = new TextEncoder();

async function qvFiles() {
  const config = JSON.parse(await readFile(`${fixture(QV)}/adapter_config.json`, "utf8"));
  const weights = new Uint8Array(await readFile(`${fixture(QV)}/adapter_model.safetensors`));
  return { config, weights };
}

/** The qv adapter's tensors, editable. */
function tensorsOf(bytes: Uint8Array): Record<string, TensorInput> {
  const st = parseSafetensors(bytes);
  return Object.fromEntries(
    st.names().map((n) => {
      const t = st.get(n);
      return [n, { dtype: t.dtype, shape: t.shape, data: t.bytes.slice() }];
    }),
  );
}

function adapterSource(name: string, config: unknown, weights?: Uint8Array) {
  const files: Record<string, Uint8Array> = { "adapter_config.json": encoder.encode(JSON.stringify(config)) };
  if (weights) files["adapter_model.safetensors"] = weights;
  return memorySource(name, files);
}

/** Loads base + a good adapter, and checks both still give their expected outputs after `attempt` fails. */
async function failsAndLeavesModelsIntact(
  attempt: (base: Awaited<ReturnType<typeof loadBaseModel>>) => Promise<unknown>,
  check: (e: unknown) => void,
) {
  const base = await loadBaseModel(fixture("llama-tiny"));
  const good = await fromPretrained(base, fixture(QV));
  await assert.rejects(() => attempt(base), (e) => {
    check(e);
    return true;
  });
  for (const [model, name] of [[base, "llama-tiny"], [good, QV]] as const) {
    const e = await expected(name);
    const out = await prefillAndStep(model, e);
    assert.ok(maxAbsDiff(out.logits, e.logits) < 1e-4, `${name} changed after a failed load`);
  }
  await good.release();
  await base.release();
}

test("truncated adapter safetensors: SafetensorsError naming the file; models intact", async () => {
  const { config, weights } = await qvFiles();
  await failsAndLeavesModelsIntact(
    (base) => fromPretrained(base, adapterSource("trunc", config, weights.subarray(0, weights.length - 10))),
    (e) => {
      assert.ok(e instanceof SafetensorsError);
      assert.match((e as Error).message, /adapter_model\.safetensors/);
    },
  );
});

test("corrupt adapter header: SafetensorsError", async () => {
  const { config, weights } = await qvFiles();
  const bad = weights.slice();
  bad[8] = "[".charCodeAt(0); // header must be a JSON object
  await failsAndLeavesModelsIntact(
    (base) => fromPretrained(base, adapterSource("corrupt", config, bad)),
    (e) => assert.ok(e instanceof SafetensorsError),
  );
});

test("adapter whose shapes do not fit: error names the module and both shapes", async () => {
  const { config, weights } = await qvFiles();
  const tensors = tensorsOf(weights);
  const key = "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight";
  // v_proj outputs 32 features; claim 64.
  tensors[key] = { dtype: "F32", shape: [64, 8], data: new Float32Array(64 * 8) };
  await failsAndLeavesModelsIntact(
    (base) => fromPretrained(base, adapterSource("shapes", config, serializeSafetensors(tensors))),
    (e) => {
      assert.ok(e instanceof AdapterMismatchError);
      const msg = (e as Error).message;
      assert.match(msg, /model\.layers\.0\.self_attn\.v_proj/);
      assert.match(msg, /\[64, 8\]/);
      assert.match(msg, /\[32, 8\]/);
    },
  );
});

test("rank in the file differing from the config's r is a mismatch", async () => {
  const { config, weights } = await qvFiles();
  await failsAndLeavesModelsIntact(
    (base) => fromPretrained(base, adapterSource("rank", { ...config, r: 4 }, weights)),
    (e) => assert.ok(e instanceof AdapterMismatchError),
  );
});

test("adapter matching no module: error lists adapter modules and base modules", async () => {
  const base = await loadBaseModel(fixture("gpt2-tiny"));
  await assert.rejects(() => fromPretrained(base, fixture(QV)), (e) => {
    assert.ok(e instanceof AdapterMismatchError);
    const msg = (e as Error).message;
    assert.match(msg, /model\.layers\.0\.self_attn\.q_proj/);
    assert.match(msg, /transformer\.h\.0\.attn\.c_attn/);
    return true;
  });
  await base.release();
});

test("missing files: no folder, no adapter_config.json, no weights, .bin only", async () => {
  const base = await loadBaseModel(fixture("llama-tiny"));
  const { config } = await qvFiles();
  await assert.rejects(() => fromPretrained(base, "./no/such/adapter"), FileNotFoundError);
  await assert.rejects(() => fromPretrained(base, memorySource("empty", {})), (e) => {
    assert.ok(e instanceof FileNotFoundError);
    assert.match((e as Error).message, /adapter_config\.json/);
    return true;
  });
  await assert.rejects(() => fromPretrained(base, adapterSource("noweights", config)), (e) => {
    assert.ok(e instanceof FileNotFoundError);
    assert.match((e as Error).message, /adapter_model\.safetensors/);
    return true;
  });
  const binOnly = memorySource("bin", {
    "adapter_config.json": encoder.encode(JSON.stringify(config)),
    "adapter_model.bin": new Uint8Array([0x80, 0x02]),
  });
  await assert.rejects(() => fromPretrained(base, binOnly), (e) => {
    assert.ok(e instanceof UnsupportedError); // the same error as from a Hub repo
    assert.match((e as Error).message, /adapter_model\.bin but no adapter_model\.safetensors/);
    assert.match((e as Error).message, /pickle/);
    return true;
  });
  await assert.rejects(
    () => loadBaseModel(memorySource("nomodel", { "config.json": encoder.encode("{}") })),
    FileNotFoundError,
  );
  await base.release();
});

test("non-LORA peft_type and invalid configs raise; isTrainable in merged mode and unknown modes raise", async () => {
  const { config, weights } = await qvFiles();
  await failsAndLeavesModelsIntact(
    (base) => fromPretrained(base, adapterSource("loha", { ...config, peft_type: "LOHA" }, weights)),
    (e) => {
      // LoRA's tensors under a LOHA config: none is a LoHa tensor, so nothing is applied.
      assert.ok(e instanceof UnsupportedError);
      assert.match((e as Error).message, /not LOHA tensors/);
    },
  );
  const base = await loadBaseModel(fixture("llama-tiny"));
  await assert.rejects(
    () => fromPretrained(base, adapterSource("r0", { ...config, r: 0 }, weights)),
    AdapterConfigError,
  );
  await assert.rejects(
    () =>
      fromPretrained(
        base,
        adapterSource("lp", { ...config, layers_pattern: "layers", layers_to_transform: null }, weights),
      ),
    AdapterConfigError,
  );
  // Training runs on the unmerged (dynamic) graph only.
  await assert.rejects(
    () => fromPretrained(base, fixture(QV), { isTrainable: true, mode: "merged" }),
    UnsupportedError,
  );
  // deno-lint-ignore no-explicit-any
  await assert.rejects(() => fromPretrained(base, fixture(QV), { mode: "sideways" as any }), UnsupportedError);
  await base.release();
});

test("missing adapter keys warn and unmatched keys are reported, the rest applies", async () => {
  const { config, weights } = await qvFiles();
  const tensors = tensorsOf(weights);
  delete tensors["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"];
  delete tensors["base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"];
  const stray = "base_model.model.model.layers.0.self_attn.zz_proj.lora_A.weight";
  tensors[stray] = { dtype: "F32", shape: [8, 64], data: new Float32Array(8 * 64) };
  const base = await loadBaseModel(fixture("llama-tiny"));
  const warnings: string[] = [];
  const model = await fromPretrained(base, adapterSource("partial", config, serializeSafetensors(tensors)), {
    onWarning: (m) => warnings.push(m),
  });
  assert.deepEqual(model.unmatchedKeys, [stray]);
  assert.ok(warnings.some((w) => w.includes("missing") && w.includes("model.layers.1.self_attn.q_proj")));
  assert.ok(warnings.some((w) => w.includes(stray)));
  await model.release();
  await base.release();
});

test("malformed ONNX base: OnnxModelError naming the file", async () => {
  const files = {
    "config.json": encoder.encode("{}"),
    "onnx/model.onnx": new Uint8Array([0x08, 0x07, 0xff, 0xff, 0xff]),
  };
  await assert.rejects(() => loadBaseModel(memorySource("broken", files)), (e) => {
    assert.ok(e instanceof OnnxModelError);
    assert.match((e as Error).message, /onnx\/model\.onnx/);
    return true;
  });
});

test('target_modules "all-linear" is expanded against the base; null target_modules skips the missing-keys check', async () => {
  const { config, weights } = await qvFiles();
  const base = await loadBaseModel(fixture("llama-tiny"));
  const e = await expected(QV);
  for (const target_modules of ["all-linear", null]) {
    const warnings: string[] = [];
    const model = await fromPretrained(base, adapterSource("variant", { ...config, target_modules }, weights), {
      onWarning: (m) => warnings.push(m),
    });
    assert.ok(maxAbsDiff((await prefillAndStep(model, e)).logits, e.logits) < 1e-4);
    if (target_modules === "all-linear") {
      // The qv adapter covers only q/v: every other linear module is reported missing, lm_head is not.
      assert.ok(warnings.some((w) => w.includes("missing") && w.includes("mlp.down_proj")));
      assert.ok(!warnings.some((w) => w.includes("lm_head")));
    } else {
      assert.deepEqual(warnings, []);
    }
    await model.release();
  }
  await base.release();
});
