import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fromPretrained, loadBaseModel, memorySource } from "../mod.ts";
import { decodeModel, encodeModel } from "../src/onnx/model_file.ts";
import { indexWeights } from "../src/onnx/weight_index.ts";
import { expected, fixture, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";
import { fixtureModel, gemmTransB, tieEmbeddings, toExternalData, transposeWeights } from "./support/onnx_variants.ts";

const ATOL = 1e-4;

async function baseFrom(baseName: string, files: Record<string, Uint8Array>) {
  const config = new Uint8Array(await readFile(`${fixture(baseName)}/config.json`));
  return loadBaseModel(memorySource(`${baseName}-variant`, { "config.json": config, ...files }));
}

async function checkAdapter(base: Awaited<ReturnType<typeof loadBaseModel>>, adapter: string) {
  const model = await fromPretrained(base, fixture(adapter));
  const e = await expected(adapter);
  const out = await prefillAndStep(model, e);
  assert.ok(maxAbsDiff(out.logits, e.logits) < ATOL, `${adapter}: ${maxAbsDiff(out.logits, e.logits)}`);
  assert.ok(maxAbsDiff(out.nextLogits, e.nextLogits) < ATOL);
  await model.release();
}

test("[out, in] weights with parameter names behind a Transpose (generic node names)", async () => {
  const variant = transposeWeights(await fixtureModel("llama-tiny"));
  const index = indexWeights(variant.graph!);
  const q = index.get("model.layers.0.self_attn.q_proj")!;
  assert.equal(q.layout, "out_in");
  assert.equal(q.initializer, "model.layers.0.self_attn.q_proj.weight");
  const base = await baseFrom("llama-tiny", { "onnx/model.onnx": encodeModel(variant) });
  for (const adapter of ["llama-tiny-lora-qv", "llama-tiny-dora-qv", "llama-tiny-lora-all-rslora-f16"]) {
    await checkAdapter(base, adapter);
  }
  await base.release();
});

test("Gemm with transB=1 (Linear exported as Gemm)", async () => {
  const variant = gemmTransB(await fixtureModel("gpt2-tiny"));
  assert.equal(indexWeights(variant.graph!).get("transformer.h.0.attn.c_attn")!.layout, "out_in");
  const base = await baseFrom("gpt2-tiny", { "onnx/model.onnx": encodeModel(variant) });
  await checkAdapter(base, "gpt2-tiny-lora-c_attn");
  await base.release();
});

test("tied embeddings: the adapter changes the embedding lookup, not the lm_head that shares its weight", async () => {
  const tied = tieEmbeddings(await fixtureModel("llama-tiny"));
  const untied = tieEmbeddings(await fixtureModel("llama-tiny"), true);
  const tiedBase = await baseFrom("llama-tiny", { "onnx/model.onnx": encodeModel(tied) });
  const untiedBase = await baseFrom("llama-tiny", { "onnx/model.onnx": encodeModel(untied) });
  const e = await expected("llama-tiny-lora-embed");
  const outputs = [];
  for (const base of [tiedBase, untiedBase]) {
    const model = await fromPretrained(base, fixture("llama-tiny-lora-embed"));
    outputs.push(await prefillAndStep(model, e));
    await model.release();
  }
  assert.ok(maxAbsDiff(outputs[0].logits, outputs[1].logits) < 1e-5);
  // And the adapter did change something.
  const plain = await prefillAndStep(tiedBase, e);
  assert.ok(maxAbsDiff(plain.logits, outputs[0].logits) > 0.1);
  await tiedBase.release();
  await untiedBase.release();
});

test("weights stored as external data are read, patched and run", async () => {
  const { model, data } = toExternalData(await fixtureModel("llama-tiny"), "model.onnx_data");
  const base = await baseFrom("llama-tiny", { "onnx/model.onnx": encodeModel(model), "onnx/model.onnx_data": data });
  const e = await expected("llama-tiny");
  assert.ok(maxAbsDiff((await prefillAndStep(base, e)).logits, e.logits) < ATOL);
  for (const adapter of ["llama-tiny-lora-qv", "llama-tiny-lora-embed"]) await checkAdapter(base, adapter);
  await base.release();
});

test("ONNX round trip keeps every byte, unknown fields included", async () => {
  for (const name of ["llama-tiny", "gpt2-tiny"]) {
    const bytes = new Uint8Array(await readFile(`${fixture(name)}/onnx/model.onnx`));
    assert.deepEqual(encodeModel(decodeModel(bytes, "model.onnx")), bytes);
    // Field 99 with varint value 7 (tag 99 << 3 = 792 = 0x98 0x06) is not in ModelProto's schema: it must survive.
    const unknownField = [0x98, 0x06, 0x07];
    const again = encodeModel(decodeModel(new Uint8Array([...bytes, ...unknownField]), "model.onnx"));
    assert.deepEqual([...again.subarray(again.length - 3)], unknownField);
  }
});
