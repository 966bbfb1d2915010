/**
 * The module index on exports made by the real stack (tests/fixtures/index,
 * made by tests/fixtures/make/index_exports.py): torch.onnx dynamo and
 * TorchScript, OPT's scopes without `model`, an Optimum-style merged decoder
 * (If), onnxruntime's fp16/q8/q4 converters and external data. Adapters are
 * real PEFT adapters; expected logits are PEFT's own.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fromPretrained, loadBaseModel, Tensor, UnsupportedError } from "../mod.ts";
import { ModuleNotInExportError } from "../src/lora/plan.ts";
import { parseSafetensors } from "../src/safetensors/mod.ts";
import { decodeModel } from "../src/onnx/model_file.ts";
import { indexWeights } from "../src/onnx/weight_index.ts";
import { type ModelDtype, onnxFileForDtype } from "../src/onnx/model_variant.ts";
import { fixture, maxAbsDiff } from "./support/fixtures.ts";

const ATOL = 1e-4;
const PROJECTIONS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"];

async function expectedOf(name: string) {
  const st = parseSafetensors(new Uint8Array(await readFile(`${fixture(`index/${name}`)}/expected.safetensors`)));
  const ids = st.toTypedArray("input_ids") as BigInt64Array;
  const mask = st.toTypedArray("attention_mask") as BigInt64Array;
  const dims = [1, ids.length];
  return {
    feeds: { input_ids: new Tensor("int64", ids, dims), attention_mask: new Tensor("int64", mask, dims) },
    base: st.toFloat32("base_logits"),
    adapter: st.toFloat32("adapter_logits"),
  };
}

const logitsOf = async (
  model: { run(f: Record<string, Tensor>): Promise<Record<string, Tensor>> },
  feeds: Record<string, Tensor>,
) => (await model.run(feeds)).logits.data as Float32Array;

const CASES = [
  // [fixture, what the export is, ONNX module name of layer 0's q_proj]
  [
    "llama-dynamo",
    "torch.onnx dynamo (module paths only in metadata), external data",
    "model.layers.0.self_attn.q_proj",
  ],
  ["llama-torchscript", "torch.onnx TorchScript (scoped node names)", "model.layers.0.self_attn.q_proj"],
  ["opt-torchscript", "TorchScript, scopes without the top-level model", "decoder.layers.0.self_attn.q_proj"],
  ["opt-dynamo", "dynamo OPT (biases, LayerNorm)", "model.decoder.layers.0.self_attn.q_proj"],
  ["qwen2-dynamo", "dynamo Qwen2 (q/k/v biases)", "model.layers.0.self_attn.q_proj"],
  ["qwen3-dynamo", "dynamo Qwen3 (q/k norms)", "model.layers.0.self_attn.o_proj"],
  ["mistral-dynamo", "dynamo Mistral", "model.layers.1.mlp.up_proj"],
  ["gemma3-dynamo", "dynamo Gemma3 (tied, scaled embeddings)", "model.embed_tokens"],
  ["phi3-dynamo", "dynamo Phi3 (fused qkv_proj, gate_up_proj)", "model.layers.0.self_attn.qkv_proj"],
  ["gpt2-torchscript", "TorchScript GPT-2 (Conv1D, fan_in_fan_out)", "transformer.h.0.attn.c_attn"],
  ["gptneox-dynamo", "dynamo GPT-NeoX (fused query_key_value)", "gpt_neox.layers.0.attention.query_key_value"],
  ["bert-cls-dynamo", "dynamo BERT sequence classification, modules_to_save classifier", "classifier"],
] as const;

for (const [name, what, q] of CASES) {
  for (const mode of ["merged", "dynamic"] as const) {
    test(`${name} (${what}): PEFT's adapter gives PEFT's logits (${mode})`, async () => {
      const base = await loadBaseModel(fixture(`index/${name}`));
      const e = await expectedOf(name);
      assert.ok(base.weights.get(q), `${q} indexed`);
      assert.ok(maxAbsDiff(await logitsOf(base, e.feeds), e.base) < ATOL);
      const warnings: string[] = [];
      const model = await fromPretrained(base, `${fixture(`index/${name}`)}/adapter`, {
        mode,
        onWarning: (m) => warnings.push(m),
      });
      const out = await logitsOf(model, e.feeds);
      assert.ok(maxAbsDiff(out, e.adapter) < ATOL, `max diff ${maxAbsDiff(out, e.adapter)}`);
      assert.ok(maxAbsDiff(e.base, e.adapter) > 0.05, "the adapter moves the logits");
      // No missing or unexpected keys, except the embedding's own weight that PEFT saves with an
      // embedding LoRA (`save_embedding_layers`), not loaded yet (PEFT 0.21's new config fields warn elsewhere).
      const unexpected = warnings.filter((w) => !/unknown LoraConfig fields/.test(w));
      assert.deepEqual(unexpected.filter((w) => !/1 adapter key.*embed_tokens\.base_layer\.weight$/.test(w)), []);
      await model.release();
      await base.release();
    });
  }
}

for (const mode of ["merged", "dynamic"] as const) {
  test(`merged decoder (If): both branches are indexed and adapted alike (${mode})`, async () => {
    const dir = fixture("index/llama-merged");
    const base = await loadBaseModel(dir, { file: "onnx/decoder_model_merged.onnx" });
    const target = base.weights.get("model.layers.1.mlp.down_proj");
    assert.equal(target?.inSubgraph, true);
    const e = await expectedOf("llama-merged");
    const model = await fromPretrained(base, `${dir}/adapter`, { mode });
    for (const branch of [true, false]) {
      const feeds = { ...e.feeds, use_cache_branch: new Tensor("bool", [branch], [1]) };
      assert.ok(maxAbsDiff(await logitsOf(base, feeds), e.base) < ATOL);
      const out = await logitsOf(model, feeds);
      assert.ok(
        maxAbsDiff(out, e.adapter) < ATOL,
        `use_cache_branch=${branch}: max diff ${maxAbsDiff(out, e.adapter)}`,
      );
    }
    await model.release();
    await base.release();
  });
}

test("dtype picks the variant file as transformers.js does", () => {
  const files: Record<ModelDtype, string> = {
    fp32: "onnx/model.onnx",
    fp16: "onnx/model_fp16.onnx",
    q8: "onnx/model_quantized.onnx",
    int8: "onnx/model_int8.onnx",
    uint8: "onnx/model_uint8.onnx",
    q4: "onnx/model_q4.onnx",
    q4f16: "onnx/model_q4f16.onnx",
    bnb4: "onnx/model_bnb4.onnx",
  };
  for (const [dtype, file] of Object.entries(files)) assert.equal(onnxFileForDtype(dtype), file);
  assert.throws(() => onnxFileForDtype("fp8"), UnsupportedError);
});

for (const dtype of ["fp16", "q8", "q4", "q4f16"] as const) {
  test(`TorchScript ${dtype} variant (onnxruntime's converters): every projection indexed, adapter applied`, async () => {
    const dir = fixture("index/llama-torchscript");
    const base = await loadBaseModel(dir, { dtype });
    assert.equal(base.file, onnxFileForDtype(dtype));
    for (const layer of [0, 1]) {
      for (const p of [...PROJECTIONS, "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]) {
        const target = base.weights.get(`model.layers.${layer}.${p}`);
        assert.ok(target, `${p} in ${dtype}`);
        assert.equal(target.quantized !== undefined, dtype !== "fp16");
      }
    }
    const e = await expectedOf("llama-torchscript");
    // The converted base is off PyTorch's fp32 logits by its own rounding (baseErr); the adapted model may be
    // off PEFT's by that much again plus a margin: 3 * baseErr + 1e-3 (a skipped module moves logits by > 0.05).
    const baseErr = maxAbsDiff(await logitsOf(base, e.feeds), e.base);
    const tolerance = 3 * baseErr + 1e-3;
    if (dtype === "q8") {
      // quantize_dynamic also quantizes the embedding (Gather): the embedding LoRA has nowhere to go.
      await assert.rejects(() => fromPretrained(base, `${dir}/adapter`, { mode: "dynamic" }), ModuleNotInExportError);
    } else {
      for (const mode of dtype === "fp16" ? ["merged", "dynamic"] as const : ["dynamic"] as const) {
        const model = await fromPretrained(base, `${dir}/adapter`, { mode });
        const diff = maxAbsDiff(await logitsOf(model, e.feeds), e.adapter);
        assert.ok(diff < tolerance, `${dtype} ${mode}: diff ${diff}, tolerance ${tolerance}`);
        await model.release();
      }
    }
    await base.release();
  });
}

test("dynamo + onnxruntime quantizer: the module paths are lost, so the adapter is refused, naming module and file", async () => {
  const dir = fixture("index/llama-dynamo");
  for (const dtype of ["q4", "q8"] as const) {
    const base = await loadBaseModel(dir, { dtype });
    await assert.rejects(() => fromPretrained(base, `${dir}/adapter`, { mode: "dynamic" }), (err) => {
      assert.ok(err instanceof ModuleNotInExportError, String(err));
      assert.match(err.message, /model\.layers\.0\.self_attn\.q_proj|model\.embed_tokens/);
      assert.ok(err.message.includes(onnxFileForDtype(dtype)), err.message);
      return true;
    });
    await base.release();
  }
});

test("an adapter with one module missing from the export fails, naming it; nothing is applied", async () => {
  const dir = fixture("index/llama-torchscript");
  const file = `${dir}/onnx/model.onnx`;
  const onnx = decodeModel(new Uint8Array(await readFile(file)), "model.onnx");
  // Hide layer 1's q_proj from the index: its MatMul loses its scope.
  const node = onnx.graph!.node.find((n) => n.name === "/model/layers.1/self_attn/q_proj/MatMul")!;
  node.name = "MatMul_anonymous";
  const weights = indexWeights(onnx.graph!, "onnx/model.onnx");
  assert.equal(weights.get("model.layers.1.self_attn.q_proj"), undefined);
  const { planAdapter } = await import("../src/lora/plan.ts");
  const { groupAdapterKeys } = await import("../src/lora/adapter_weights.ts");
  const { parseLoraConfig } = await import("../src/config/mod.ts");
  const config = parseLoraConfig(await readFile(`${dir}/adapter/adapter_config.json`, "utf8"));
  const st = parseSafetensors(new Uint8Array(await readFile(`${dir}/adapter/adapter_model.safetensors`)));
  assert.throws(() => planAdapter(config, groupAdapterKeys(st.names()), (k) => st.info(k).shape, weights), (err) => {
    assert.ok(err instanceof ModuleNotInExportError);
    assert.equal(err.module, "model.layers.1.self_attn.q_proj");
    assert.match(err.message, /onnx\/model\.onnx/);
    return true;
  });
});

test("dynamo metadata names modules and their classes; ambiguous suffixes are an error", async () => {
  const file = `${fixture("index/llama-dynamo")}/onnx/model.onnx`;
  const weights = indexWeights(decodeModel(new Uint8Array(await readFile(file)), "model.onnx").graph!);
  const norm = weights.scopes.find((s) => s.module === "model.layers.0.input_layernorm");
  assert.match(norm?.className ?? "", /LlamaRMSNorm$/);
  assert.equal(weights.get("model.layers.0.self_attn.q_proj")?.nodeName.startsWith("node_"), true);
  // A wrapper's prefix (`base.`) is resolved when unambiguous.
  assert.equal(weights.resolve("base.model.layers.0.self_attn.q_proj")?.module, "model.layers.0.self_attn.q_proj");
  // `layers.0.self_attn.q_proj` ends exactly one module's name; `self_attn.q_proj` ends two: never guessed.
  assert.equal(weights.resolve("layers.0.self_attn.q_proj")?.module, "model.layers.0.self_attn.q_proj");
  assert.throws(() => weights.resolve("self_attn.q_proj"), /several modules.*layers\.0.*layers\.1/);
});
