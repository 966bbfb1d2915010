import { test } from "node:test";
import assert from "node:assert/strict";
import { fromPretrained, loadBaseModel } from "../mod.ts";
import type { LoraConfig } from "../src/config/mod.ts";
import { ADAPTERS, expected, fixture, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";

const ATOL = 1e-4;

for (const base of ["llama-tiny", "gpt2-tiny"]) {
  test(`base ${base} gives its expected prefill and decode logits`, async () => {
    const model = await loadBaseModel(fixture(base));
    const e = await expected(base);
    const out = await prefillAndStep(model, e);
    assert.ok(maxAbsDiff(out.logits, e.logits) < ATOL);
    assert.ok(maxAbsDiff(out.nextLogits, e.nextLogits) < ATOL);
    await model.release();
  });
}

for (const mode of ["dynamic", "merged"] as const) {
  for (const [adapter, baseName] of ADAPTERS) {
    test(`adapter ${adapter} gives its expected prefill and decode logits (${mode})`, async () => {
      const base = await loadBaseModel(fixture(baseName));
      const warnings: string[] = [];
      const model = await fromPretrained(base, fixture(adapter), { mode, onWarning: (m) => warnings.push(m) });
      assert.equal(model.mode, mode);
      const e = await expected(adapter);
      const out = await prefillAndStep(model, e);
      assert.ok(maxAbsDiff(out.logits, e.logits) < ATOL, `prefill max diff ${maxAbsDiff(out.logits, e.logits)}`);
      assert.ok(
        maxAbsDiff(out.nextLogits, e.nextLogits) < ATOL,
        `decode max diff ${maxAbsDiff(out.nextLogits, e.nextLogits)}`,
      );
      // The adapter really changes the output: the base's logits are far away.
      const baseOut = await prefillAndStep(base, await expected(baseName));
      assert.ok(maxAbsDiff(baseOut.logits, out.logits) > 0.1);
      assert.deepEqual(warnings, []);
      assert.equal(model.activeAdapter, "default");
      await model.release();
      await base.release();
    });
  }
}

test("adapterName names the adapter", async () => {
  const base = await loadBaseModel(fixture("llama-tiny"));
  const model = await fromPretrained(base, fixture("llama-tiny-lora-qv"), { adapterName: "qv" });
  assert.equal(model.activeAdapter, "qv");
  assert.equal((model.peftConfig.qv as LoraConfig).r, 8);
  assert.equal((model.peftConfig.qv as LoraConfig).loraAlpha, 16);
  assert.equal(model.mode, "dynamic"); // PEFT's default: unmerged
  assert.deepEqual([...model.inputNames], [...base.inputNames]);
  assert.deepEqual([...model.outputNames], [...base.outputNames]);
  await model.release();
  await base.release();
});

test("a config option overrides adapter_config.json", async () => {
  const base = await loadBaseModel(fixture("llama-tiny"));
  const e = await expected("llama-tiny-lora-qv");
  // Doubling alpha doubles the delta: the logits must move away from the expected ones.
  const doubled = await fromPretrained(base, fixture("llama-tiny-lora-qv"), {
    config: { peft_type: "LORA", r: 8, lora_alpha: 32, target_modules: ["q_proj", "v_proj"] },
  });
  const out = await prefillAndStep(doubled, e);
  assert.ok(maxAbsDiff(out.logits, e.logits) > 0.01);
  assert.equal((doubled.peftConfig.default as LoraConfig).loraAlpha, 32);
  await doubled.release();
  await base.release();
});

test("getNbTrainableParameters and printTrainableParameters follow PEFT for an inference adapter", async () => {
  const base = await loadBaseModel(fixture("llama-tiny"));
  const model = await fromPretrained(base, fixture("llama-tiny-lora-qv"));
  // llama-tiny has 106,816 parameters; r=8 on q (64->64) and v (64->32) in 2 layers:
  // q: 8*64 + 64*8 = 1024, v: 8*64 + 32*8 = 768, x2 layers = 3,584.
  const [trainable, all] = model.getNbTrainableParameters();
  assert.equal(trainable, 0);
  assert.equal(all, 106_816 + 3_584);
  const lines: string[] = [];
  const log = console.log;
  console.log = (line: string) => lines.push(line);
  try {
    model.printTrainableParameters();
  } finally {
    console.log = log;
  }
  assert.deepEqual(lines, ["trainable params: 0 || all params: 110,400 || trainable%: 0.0000"]);
  await model.release();
  await base.release();
});
