import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fromPretrained, loadBaseModel, memorySource, UnsupportedError } from "../mod.ts";
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

    // Merging into quantized weights is refused clearly, in both places it could happen.
    await assert.rejects(
      () => model.mergeAndUnload(),
      (err) => err instanceof UnsupportedError && /quantized/.test((err as Error).message),
    );
    await assert.rejects(() => fromPretrained(quantized, fixture(c.adapter), { mode: "merged" }), UnsupportedError);
    for (const m of [model, merged]) await m.release();
    for (const b of [quantized, reference]) await b.release();
  });
}
