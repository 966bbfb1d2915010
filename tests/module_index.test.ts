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
import { decodeGraphNodes, decodeModel } from "../src/onnx/model_file.ts";
import { indexWeights } from "../src/onnx/weight_index.ts";
import { fp32Variant, type ModelDtype, onnxFileForDtype } from "../src/onnx/model_variant.ts";
import { makeNode } from "../src/onnx/graph_parts.ts";
import { quantizedOrigin } from "../src/onnx/quantized_names.ts";
import { restoreQuantizedScopes, unscopedQuantizedNodes } from "../src/onnx/scope_recovery.ts";
import type { FileSource } from "../src/storage/file_source.ts";
import { localSource } from "../src/storage/local.ts";
import { memorySource } from "../src/storage/memory.ts";
import { fixture, maxAbsDiff } from "./support/fixtures.ts";
import { realPath } from "./support/real_fixtures.ts";
import { serveFolder } from "./support/static_server.ts";
import { startTestHub, withEnv, withTempDir } from "./support/hub_server.ts";

const MS = "com.microsoft";

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
    // quantize_dynamic also quantizes the embedding (Gather + DequantizeLinear): its LoRA runs in both modes. Merged
    // mode re-quantizes the merged weights in the file's format (q8 here: uint8 weights with zero points; q4f16:
    // fp16 scales), measured within the same tolerance as dynamic mode.
    for (const mode of ["merged", "dynamic"] as const) {
      const model = await fromPretrained(base, `${dir}/adapter`, { mode });
      const diff = maxAbsDiff(await logitsOf(model, e.feeds), e.adapter);
      assert.ok(diff < tolerance, `${dtype} ${mode}: diff ${diff}, tolerance ${tolerance}`);
      await model.release();
    }
    await base.release();
  });
}

/** A local folder as a FileSource that records every file read from it. */
function recordingSource(dir: string, reads: string[]): FileSource {
  const local = localSource(dir);
  return { location: local.location, exists: (f) => local.exists(f), read: (f) => (reads.push(f), local.read(f)) };
}

/** A memory source of a base folder: config.json and the given ONNX files (name -> file on disk, or bytes). */
async function memoryBase(files: Record<string, string | Uint8Array>): Promise<FileSource> {
  const dir = fixture("index/llama-dynamo");
  const entries: Record<string, Uint8Array> = { "config.json": new Uint8Array(await readFile(`${dir}/config.json`)) };
  for (const [name, file] of Object.entries(files)) {
    entries[name] = typeof file === "string" ? new Uint8Array(await readFile(file)) : file;
  }
  return memorySource("memory:llama-dynamo", entries);
}

for (const dtype of ["q4", "q8"] as const) {
  test(`dynamo + onnxruntime ${dtype}: module paths are read from the fp32 export beside it (never its weights)`, async () => {
    const dir = fixture("index/llama-dynamo");
    const reads: string[] = [];
    const base = await loadBaseModel(recordingSource(dir, reads), { dtype });
    // Only the two graphs are read: the fp32 export's external data (model.onnx_data) is not.
    assert.deepEqual(reads.filter((f) => f.startsWith("onnx/")), [onnxFileForDtype(dtype), "onnx/model.onnx"]);
    const fp32 = indexWeights(decodeModel(new Uint8Array(await readFile(`${dir}/onnx/model.onnx`)), "m").graph!);
    const suffix = dtype === "q4" ? "_Q4" : "_quant";
    const linears = fp32.modules.filter((m) => fp32.get(m)!.kind === "linear");
    assert.equal(linears.length, 15); // 2 layers x 7 projections + lm_head
    for (const module of linears) {
      const target = base.weights.get(module);
      assert.ok(target?.quantized, `${module} indexed as quantized in ${dtype}`);
      assert.equal(target.nodeName, fp32.get(module)!.nodeName + suffix);
    }
    assert.deepEqual(base.weights.unscoped, []);
    const e = await expectedOf("llama-dynamo");
    // The embedding LoRA runs on q8 too (quantize_dynamic's 8-bit table: the branch gathers rows of A).
    // As for TorchScript's q4 above: 3 * the base's own rounding error + 1e-3 (a skipped module moves > 0.05).
    const tolerance = 3 * maxAbsDiff(await logitsOf(base, e.feeds), e.base) + 1e-3;
    const model = await fromPretrained(base, `${dir}/adapter`, { mode: "dynamic" });
    const diff = maxAbsDiff(await logitsOf(model, e.feeds), e.adapter);
    assert.ok(diff < tolerance, `${dtype} dynamic: diff ${diff}, tolerance ${tolerance}`);
    await model.release();
    await base.release();
  });
}

test("dynamo + onnxruntime q4 by URL: the fp32 graph is fetched, its external data is not", async () => {
  const server = await serveFolder(fixture("index"));
  try {
    const base = await loadBaseModel(`${server.url}/llama-dynamo`, { dtype: "q4" });
    assert.equal(base.weights.get("model.layers.1.self_attn.v_proj")?.nodeName, "node_linear_9_Q4");
    const gets = server.requests.filter((r) => r.method === "GET").map((r) => r.path);
    assert.ok(gets.includes("/llama-dynamo/onnx/model.onnx"), gets.join());
    assert.ok(!gets.some((p) => p.endsWith(".onnx_data")), gets.join());
    await base.release();
  } finally {
    await server.close();
  }
});

test("dynamo + onnxruntime q8 from a Hub repo: only the fp32 graph is downloaded beside it", () =>
  withEnv({}, () =>
    withTempDir(async (cacheDir) => {
      const hub = await startTestHub({ repos: { "test/llama-dynamo": { folder: fixture("index/llama-dynamo") } } });
      try {
        const base = await loadBaseModel("test/llama-dynamo", { hubUrl: hub.url, cacheDir, dtype: "q8" });
        assert.equal(base.weights.get("model.layers.0.mlp.down_proj")?.nodeName, "node_linear_6_quant");
        const downloads = hub.requests.filter((r) => r.method === "GET" && r.path.includes("/resolve/"));
        assert.ok(downloads.some((r) => r.path.endsWith("/onnx/model.onnx")), downloads.map((r) => r.path).join());
        assert.ok(!downloads.some((r) => r.path.endsWith(".onnx_data")), downloads.map((r) => r.path).join());
        await base.release();
      } finally {
        await hub.stop();
      }
    })));

test("dynamo + onnxruntime q4 beside an unreadable fp32 file: the base loads; adapters on it say why", async () => {
  const dir = fixture("index/llama-dynamo");
  const source = await memoryBase({
    "onnx/model_q4.onnx": `${dir}/onnx/model_q4.onnx`,
    "onnx/model.onnx": new Uint8Array(3), // not a ModelProto
  });
  const base = await loadBaseModel(source, { dtype: "q4" });
  assert.match(base.weights.unscopedHint ?? "", /onnx\/model\.onnx beside it could not be read/);
  await assert.rejects(() => fromPretrained(base, `${dir}/adapter`, { mode: "dynamic" }), ModuleNotInExportError);
  await base.release();
});

test("dynamo + onnxruntime q4 without its fp32 export: refused whole, naming the file and what to put beside it", async () => {
  const dir = fixture("index/llama-dynamo");
  const base = await loadBaseModel(await memoryBase({ "onnx/model_q4.onnx": `${dir}/onnx/model_q4.onnx` }), {
    dtype: "q4",
  });
  assert.equal(base.weights.unscoped.length, 15);
  await assert.rejects(() => fromPretrained(base, `${dir}/adapter`, { mode: "dynamic" }), (err) => {
    assert.ok(err instanceof ModuleNotInExportError, String(err));
    assert.equal(err.module, "model.layers.0.self_attn.q_proj");
    assert.equal(err.export_, "onnx/model_q4.onnx");
    assert.match(err.message, /15 weights of the export name no module \(node_linear_Q4, /);
    assert.match(
      err.message,
      /put the unquantized export onnx\/model_q4\.onnx was made from beside it as onnx\/model\.onnx/,
    );
    return true;
  });
  await base.release();
});

test("dynamo + onnxruntime q4 beside the fp32 graph of another export: that graph is not trusted", async () => {
  const dir = fixture("index/llama-dynamo");
  // The same architecture exported again (another model): its nodes read other tensors.
  const other = realPath("bases/llama-dynamo/onnx/model.onnx");
  const source = await memoryBase({ "onnx/model_q4.onnx": `${dir}/onnx/model_q4.onnx`, "onnx/model.onnx": other });
  const base = await loadBaseModel(source, { dtype: "q4" });
  assert.equal(base.weights.get("model.layers.0.self_attn.q_proj"), undefined);
  await assert.rejects(() => fromPretrained(base, `${dir}/adapter`, { mode: "dynamic" }), (err) => {
    assert.ok(err instanceof ModuleNotInExportError, String(err));
    assert.match(
      err.message,
      /onnx\/model\.onnx is not the export node_linear_Q4 was quantized from: its node node_linear reads/,
    );
    return true;
  });
  await base.release();
});

test("a sibling graph that differs in one node is not trusted for any node (all or nothing)", async () => {
  const dir = fixture("index/llama-dynamo");
  for (const [file, suffix] of [["model_q4.onnx", "_Q4"], ["model_quantized.onnx", "_quant"]] as const) {
    const quantized = decodeModel(new Uint8Array(await readFile(`${dir}/onnx/${file}`)), file);
    const fp32Bytes = new Uint8Array(await readFile(`${dir}/onnx/model.onnx`));
    const nodes = unscopedQuantizedNodes(quantized.graph!);
    assert.equal(nodes.length, 15);
    // Tamper with one node's weight input in the fp32 graph: another export, as far as can be told.
    const tampered = decodeGraphNodes(fp32Bytes, "model.onnx");
    assert.equal(tampered.initializer.length, 0, "the graph's weights are not decoded");
    tampered.node.find((n) => n.name === "node_linear_13")!.input[1] = "val_other";
    const refused = restoreQuantizedScopes(nodes, tampered, "onnx/model.onnx");
    assert.ok("untrusted" in refused && /node_linear_13.*val_other/.test(refused.untrusted), JSON.stringify(refused));
    assert.ok(nodes.every((n) => n.metadataProps.length === 0), "nothing restored");
    const restored = restoreQuantizedScopes(nodes, decodeGraphNodes(fp32Bytes, "model.onnx"), "onnx/model.onnx");
    assert.deepEqual(restored, { restored: 15 });
    const index = indexWeights(quantized.graph!, file);
    assert.equal(index.get("model.layers.1.mlp.down_proj")?.nodeName, `node_linear_13${suffix}`);
    assert.equal(index.get("lm_head")?.nodeName, `node_linear_14${suffix}`);
  }
});

test("onnxruntime's quantizer names lead back to the replaced node", () => {
  const nbits = makeNode("MatMulNBits", ["x", "w_Q8", "w_scales"], ["y_pre_reshape"], "n_Q8", { bits: 8 }, MS);
  assert.deepEqual(quantizedOrigin(nbits), {
    node: "n",
    opType: "MatMul",
    inputs: ["x", "w"],
    outputs: ["y_pre_reshape", "y"],
  });
  const integer = makeNode(
    "MatMulInteger",
    ["x_quantized", "w_quantized", "x_zp", "w_zp"],
    ["y_output_quantized"],
    "n_quant",
  );
  assert.deepEqual(quantizedOrigin(integer), { node: "n", opType: "MatMul", inputs: ["x", "w"], outputs: ["y"] });
  const gather = makeNode("GatherBlockQuantized", ["e_Q4", "ids", "e_scales"], ["h"], "g_Q4", {}, MS);
  assert.deepEqual(quantizedOrigin(gather), { node: "g", opType: "Gather", inputs: ["e", "ids"], outputs: ["h"] });
  // Unnamed replacements (of unnamed nodes), and names that break the rule, lead nowhere.
  assert.equal(quantizedOrigin(makeNode("MatMulNBits", ["x", "w_Q4", "s"], ["y"], "", { bits: 4 }, MS)), undefined);
  assert.equal(quantizedOrigin(makeNode("MatMulNBits", ["x", "w", "s"], ["y"], "n_Q4", { bits: 4 }, MS)), undefined);
  assert.equal(fp32Variant("onnx/model_q4f16.onnx"), "onnx/model.onnx");
  assert.equal(fp32Variant("onnx/decoder_model_merged_quantized.onnx"), "onnx/decoder_model_merged.onnx");
  assert.equal(fp32Variant("model.onnx"), undefined);
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
