import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fromPretrained, loadBaseModel, memorySource, type PeftModel } from "../mod.ts";
import type { BaseModel } from "../src/model/base_model.ts";
import { baseNamed, realExpected, realManifest, realPath } from "./support/real_fixtures.ts";
import { encodeModel } from "../src/onnx/model_file.ts";
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

    const [before, after] = [opCounts(base), opCounts(unloaded)];
    for (const op of c.quantizedOps) assert.equal(after.get(op), before.get(op), `${op} nodes kept`);
    const floats = (b: BaseModel) => b.onnx.graph!.initializer.filter((t) => t.dataType === 1 && t.dims.length === 2);
    assert.equal(floats(unloaded).length, floats(base).length, "no float weight added");
    assert.equal(unloaded.onnx.graph!.initializer.length, base.onnx.graph!.initializer.length);

    const want = await logitsOf(merged, e.feeds);
    assert.deepEqual(await logitsOf(unloaded, e.feeds), want, "mergeAndUnload runs as merged mode");
    assert.ok(maxAbsDiff(want, await logitsOf(base, e.feeds)) > 0.5, "the adapter acts");

    const { model } = unloaded.toOnnx();
    const config = new Uint8Array(await readFile(realPath(`${baseEntry.path}/config.json`)));
    const reloaded = await loadBaseModel(memorySource("merged", { "config.json": config, [c.file]: model }), {
      file: c.file,
    });
    assert.deepEqual(await logitsOf(reloaded, e.feeds), want, "saved and reloaded, the same logits");
    for (const m of [dynamic, merged]) await m.release();
    for (const b of [reloaded, unloaded, base]) await b.release();
  });
}
