import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fromPretrained, loadBaseModel, memorySource, type PeftModel, UnsupportedError } from "../mod.ts";
import type { BaseModel } from "../src/model/base_model.ts";
import { baseNamed, realExpected, realManifest, realPath } from "./support/real_fixtures.ts";
import { decodeModel, encodeModel } from "../src/onnx/model_file.ts";
import {
  GraphProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  type NodeProto,
  NodeProtoSchema,
  TensorProtoSchema,
} from "../src/deps/onnx_proto.ts";
import { edited } from "../src/onnx/proto_edit.ts";
import { quantizeModel } from "./support/quantize.ts";
import { expected, fixture, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";
import { fixtureModel } from "./support/onnx_variants.ts";

async function baseFromModel(baseName: string, model: Parameters<typeof encodeModel>[0]) {
  const config = new Uint8Array(await readFile(`${fixture(baseName)}/config.json`));
  return loadBaseModel(memorySource(baseName, { "config.json": config, "onnx/model.onnx": encodeModel(model) }));
}

// q4 (MatMulNBits): the quantized operator multiplies by exactly the dequantized weights, so base + adapter
// must equal the dequantized float base with the adapter merged up to float32 summation order (1e-4, as
// for float bases). q8 (DynamicQuantizeLinear + MatMulInteger) also rounds the activations to 8 bits, which
// the float reference does not: that moves logits by up to ~0.08 here (measured), far less than the
// adapters' own effect (1-3), so 0.15 still catches a missing or wrong branch.
const CASES = [
  { format: "q4", base: "llama-tiny", adapter: "llama-tiny-lora-qv", atol: 1e-4 },
  { format: "q4", base: "llama-tiny", adapter: "llama-tiny-dora-qv", atol: 1e-4 },
  { format: "q4", base: "gpt2-tiny", adapter: "gpt2-tiny-lora-c_attn", atol: 1e-4 },
  { format: "q8", base: "llama-tiny", adapter: "llama-tiny-lora-all-rslora-f16", atol: 0.15 },
] as const;

for (const c of CASES) {
  test(`${c.format} ${c.base} + ${c.adapter} (dynamic) equals the dequantized base with the adapter merged`, async () => {
    const q = quantizeModel(await fixtureModel(c.base), { format: c.format });
    const quantized = await baseFromModel(c.base, q.model);
    const reference = await baseFromModel(c.base, q.dequantized);
    const model = await fromPretrained(quantized, fixture(c.adapter));
    const merged = await fromPretrained(reference, fixture(c.adapter), { mode: "merged" });
    const e = await expected(c.adapter);
    const [got, want] = [await prefillAndStep(model, e), await prefillAndStep(merged, e)];
    assert.ok(maxAbsDiff(got.logits, want.logits) < c.atol, `prefill ${maxAbsDiff(got.logits, want.logits)}`);
    assert.ok(maxAbsDiff(got.nextLogits, want.nextLogits) < c.atol);
    // The adapter does act on the quantized base.
    assert.ok(maxAbsDiff(got.logits, (await prefillAndStep(quantized, e)).logits) > 0.5);

    for (const m of [model, merged]) await m.release();
    for (const b of [quantized, reference]) await b.release();
  });
}

/** Op types of a model's nodes, counted. */
function opCounts(base: BaseModel): Map<string, number> {
  const counts = new Map<string, number>();
  for (const n of base.onnx.graph!.node) counts.set(n.opType, (counts.get(n.opType) ?? 0) + 1);
  return counts;
}

const logitsOf = async (m: BaseModel | PeftModel, feeds: Parameters<BaseModel["run"]>[0]) =>
  (await m.run(feeds)).logits.data as Float32Array;

// Merging into a file onnxruntime quantized (PEFT's merge into quantized layers: dequantize, add, re-quantize)
// gives a file quantized the same way: same quantized ops, integer weights, no float copy of a projection. The
// merged file saved and loaded again runs the same as the merged model. (Closeness to PEFT's own logits is the
// real-fixture test's job: tests/real_peft.test.ts, merged mode on model_q4 / model_quantized.)
for (
  const c of [
    { file: "onnx/model_q4.onnx", adapter: "llama-lora-attn", quantizedOps: ["MatMulNBits"] },
    { file: "onnx/model_quantized.onnx", adapter: "llama-embed", quantizedOps: ["MatMulInteger", "DequantizeLinear"] },
  ]
) {
  test(`${c.adapter} merged into llama-torchscript ${c.file} stays quantized, and saves and reloads as it runs`, async () => {
    const manifest = await realManifest();
    const baseEntry = baseNamed(manifest, "llama-torchscript");
    const base = await loadBaseModel(realPath(baseEntry.path), { file: c.file });
    const e = await realExpected(`adapters/${c.adapter}`, baseEntry.inputs);
    const dynamic = await fromPretrained(base, realPath(`adapters/${c.adapter}`), { onWarning: () => {} });
    const merged = await fromPretrained(base, realPath(`adapters/${c.adapter}`), {
      mode: "merged",
      onWarning: () => {},
    });
    const unloaded = await dynamic.mergeAndUnload();
    // PEFT's warning on merging into quantized layers.
    const bits = c.file.includes("q4") ? 4 : 8;
    assert.ok(
      merged.warnings.includes(
        `Merge lora module to ${bits}-bit linear may get different generations due to rounding errors.`,
      ),
    );
    assert.ok(!dynamic.warnings.some((w) => w.includes("rounding errors")));

    const [before, after] = [opCounts(base), opCounts(unloaded)];
    for (const op of c.quantizedOps) assert.equal(after.get(op), before.get(op), `${op} nodes kept`);
    const floats = (b: BaseModel) => b.onnx.graph!.initializer.filter((t) => t.dataType === 1 && t.dims.length === 2);
    assert.equal(floats(unloaded).length, floats(base).length, "no float weight added");
    assert.equal(unloaded.onnx.graph!.initializer.length, base.onnx.graph!.initializer.length);

    const want = await logitsOf(merged, e.feeds);
    assert.deepEqual(await logitsOf(unloaded, e.feeds), want, "mergeAndUnload runs as merged mode");
    assert.ok(maxAbsDiff(want, await logitsOf(base, e.feeds)) > 0.5, "the adapter acts");

    const { model } = await unloaded.toOnnx();
    const config = new Uint8Array(await readFile(realPath(`${baseEntry.path}/config.json`)));
    const reloaded = await loadBaseModel(memorySource("merged", { "config.json": config, [c.file]: model }), {
      file: c.file,
    });
    assert.deepEqual(await logitsOf(reloaded, e.feeds), want, "saved and reloaded, the same logits");
    for (const m of [dynamic, merged]) await m.release();
    for (const b of [reloaded, unloaded, base]) await b.release();
  });
}

/**
 * `model` with layer 1's q_proj reading layer 0's quantized tensors (codes, scales, zero points): shared, as
 * exports share equal weights, or (`copy`) given its own copies of them under new names.
 */
function shareQProj(model: ModelProto, op: "MatMulNBits" | "MatMulInteger", copy: boolean): ModelProto {
  const graph = model.graph!;
  const find = (name: string) => graph.node.find((n) => n.name === name)!;
  const suffix = op === "MatMulNBits" ? "MatMul_Q4" : "MatMul_quant";
  const [from, to] = [0, 1].map((l) => find(`/model/layers.${l}/self_attn/q_proj/${suffix}`));
  const readers: [NodeProto, NodeProto, number[]][] = [[from, to, op === "MatMulNBits" ? [1, 2] : [1, 3]]];
  if (op === "MatMulInteger") readers.push([find(`${from.name}_scales_mul`), find(`${to.name}_scales_mul`), [1]]);
  const initializers = graph.initializer.slice();
  const nodes = graph.node.slice();
  for (const [src, dst, inputs] of readers) {
    const input = dst.input.slice();
    for (const i of inputs) {
      input[i] = copy ? `${src.input[i]}_copy` : src.input[i];
      const original = initializers.find((t) => t.name === src.input[i])!;
      if (copy) initializers.push(edited(TensorProtoSchema, original, { name: input[i] }));
    }
    nodes[nodes.indexOf(dst)] = edited(NodeProtoSchema, dst, { input });
  }
  return edited(ModelProtoSchema, model, {
    graph: edited(GraphProtoSchema, graph, { node: nodes, initializer: initializers }),
  });
}

for (
  const [file, op] of [["onnx/model_q4.onnx", "MatMulNBits"], ["onnx/model_quantized.onnx", "MatMulInteger"]] as const
) {
  test(`merging into ${op} tensors two modules share gives each module its own re-quantized copy`, async () => {
    const baseEntry = baseNamed(await realManifest(), "llama-torchscript");
    const config = new Uint8Array(await readFile(realPath(`${baseEntry.path}/config.json`)));
    const original = decodeModel(new Uint8Array(await readFile(realPath(`${baseEntry.path}/${file}`))), file);
    const e = await realExpected("adapters/llama-lora-attn", baseEntry.inputs);
    const run = async (model: ModelProto) => {
      const base = await loadBaseModel(memorySource("b", { "config.json": config, [file]: encodeModel(model) }), {
        file,
      });
      const merged = await fromPretrained(base, realPath("adapters/llama-lora-attn"), {
        mode: "merged",
        onWarning: () => {},
      });
      const unloaded = await merged.mergeAndUnload();
      const out = {
        logits: await logitsOf(merged, e.feeds),
        names: unloaded.onnx.graph!.initializer.map((t) => t.name),
      };
      for (const m of [merged]) await m.release();
      for (const b of [unloaded, base]) await b.release();
      return out;
    };
    const [shared, copied] = [await run(shareQProj(original, op, false)), await run(shareQProj(original, op, true))];
    assert.deepEqual(shared.logits, copied.logits);
    // Both readers moved to their own copies, so the shared originals are gone.
    assert.ok(shared.names.some((n) => n.includes("::peft_edge::model.layers.1.self_attn.q_proj")));
  });
}

test("two adapters merged into a quantized base: each one re-quantized in turn, as PEFT merges them one by one", async () => {
  const baseEntry = baseNamed(await realManifest(), "llama-torchscript");
  const file = "onnx/model_q4.onnx";
  const base = await loadBaseModel(realPath(baseEntry.path), { file });
  const e = await realExpected("adapters/llama-lora-attn", baseEntry.inputs);
  const quiet = { onWarning: () => {} };
  const model = await fromPretrained(base, realPath("adapters/llama-lora-attn"), { adapterName: "a", ...quiet });
  await model.loadAdapter(realPath("adapters/llama-rslora"), "b", quiet);
  const both = await model.mergeAndUnload({ adapterNames: ["a", "b"] });
  // The same, one at a time: merge a, then b into that merged (re-quantized) base.
  const first = await model.mergeAndUnload({ adapterNames: ["a"] });
  const next = await fromPretrained(first, realPath("adapters/llama-rslora"), quiet);
  const second = await next.mergeAndUnload();
  assert.deepEqual(await logitsOf(both, e.feeds), await logitsOf(second, e.feeds));
  assert.equal(opCounts(both).get("MatMulNBits"), opCounts(base).get("MatMulNBits"));
  await model.release();
  await next.release();
  for (const b of [second, first, both, base]) await b.release();
});

test("a uint8 MatMulInteger without a zero-point input cannot hold a merged weight: merged mode says so", async () => {
  const dir = fixture("index/llama-torchscript");
  const file = "onnx/model_quantized.onnx";
  const model = decodeModel(new Uint8Array(await readFile(`${dir}/${file}`)), file);
  const graph = model.graph!;
  const name = "/model/layers.0/self_attn/q_proj/MatMul_quant";
  // Zero point dropped: the operator reads it as 0, so the stored weight is q * scale (all of one sign).
  const node = graph.node.map((n) => n.name === name ? edited(NodeProtoSchema, n, { input: n.input.slice(0, 3) }) : n);
  const bytes = encodeModel(edited(ModelProtoSchema, model, { graph: edited(GraphProtoSchema, graph, { node }) }));
  const config = new Uint8Array(await readFile(`${dir}/config.json`));
  const base = await loadBaseModel(memorySource("no-zp", { "config.json": config, [file]: bytes }), { file });
  await assert.rejects(
    () => fromPretrained(base, `${dir}/adapter`, { mode: "merged", onWarning: () => {} }),
    (err) => err instanceof UnsupportedError && err.message.includes(name) && /zero point/.test(err.message),
  );
  // Dynamic mode adds the branch beside it and needs no re-quantization.
  const dynamic = await fromPretrained(base, `${dir}/adapter`);
  await dynamic.release();
  await base.release();
});
