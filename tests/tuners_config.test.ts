/**
 * Non-LoRA configs: PEFT's invalid combinations are refused with typed
 * errors naming the field; `loadAdapter` and `mergeAndUnload` take the same
 * path as `fromPretrained` for these methods.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { fromPretrained, loadBaseModel } from "../mod.ts";
import { AdapterConfigError, UnsupportedError } from "../src/errors.ts";
import { TUNER_METHODS } from "../src/tuners/methods.ts";
import { isFeedforward } from "../src/tuners/ia3/mod.ts";
import { torchRandperm } from "../src/tuners/fourierft/randperm.ts";
import { comparedDiff, realExpected, realManifest, realPath } from "./support/real_fixtures.ts";

const refuses = (fn: () => unknown, key: string) =>
  assert.throws(fn, (e: unknown) => e instanceof AdapterConfigError && e.key === key);

test("tuners config: PEFT's invalid combinations are refused", () => {
  const t = { target_modules: ["q_proj", "v_proj"] };
  refuses(() => TUNER_METHODS.IA3.parse({ ...t, feedforward_modules: ["down_proj"] }), "feedforward_modules");
  refuses(() => TUNER_METHODS.ADALORA.parse({ ...t, lora_alpha: 8 }), "total_step");
  refuses(() => TUNER_METHODS.ADALORA.parse({ ...t, total_step: 10, tinit: 8, tfinal: 2 }), "tinit");
  refuses(() => TUNER_METHODS.ADALORA.parse({ ...t, total_step: 10, use_dora: true }), "use_dora");
  refuses(() => TUNER_METHODS.OFT.parse({ ...t, r: 4, oft_block_size: 4 }), "r");
  refuses(() => TUNER_METHODS.OFT.parse({ ...t, r: 0, oft_block_size: 0 }), "r");
  refuses(() => TUNER_METHODS.OFT.parse({ ...t, r: 4 }), "oft_block_size"); // pre-0.14 OFT layout
  refuses(() => TUNER_METHODS.BOFT.parse({ ...t, boft_block_size: 4, boft_block_num: 2 }), "boft_block_size");
  refuses(() => TUNER_METHODS.LOHA.parse({ ...t, rank_dropout: 2 }), "rank_dropout");
  refuses(() => TUNER_METHODS.LN_TUNING.parse({}), "target_modules");
});

test("tuners config: IA3 feedforward matching is PEFT's (regex fullmatch, or suffix)", () => {
  assert.equal(isFeedforward(["down_proj"], "model.layers.0.mlp.down_proj"), true);
  assert.equal(isFeedforward(".*mlp\\.down_proj", "model.layers.0.mlp.down_proj"), true);
  assert.equal(isFeedforward("mlp\\.down_proj", "model.layers.0.mlp.down_proj"), false);
  assert.equal(isFeedforward(null, "model.layers.0.mlp.down_proj"), false);
});

test("tuners: torch's randperm is reproduced (values from torch 2.x)", () => {
  // torch.randperm(256, generator=torch.Generator().manual_seed(777))[:10]
  assert.deepEqual([...torchRandperm(256, 777).slice(0, 10)], [103, 15, 197, 254, 243, 166, 133, 161, 23, 139]);
});

test("tuners: loadAdapter and mergeAndUnload on a merged model give PEFT's logits", async () => {
  const manifest = await realManifest();
  const info = manifest.bases.find((b) => b.name === "llama-torchscript")!;
  const base = await loadBaseModel(realPath(info.path));
  try {
    const model = await fromPretrained(base, "tests/fixtures/tuners/llama-lokr", { mode: "merged" });
    await model.loadAdapter("tests/fixtures/tuners/llama-ia3", "ia3");
    assert.equal(model.peftConfig.ia3.peftType, "IA3");
    model.setAdapter("ia3");
    const e = await realExpected("../tuners/llama-ia3", info.inputs);
    const out = await model.run(e.feeds);
    assert.ok(comparedDiff(info, e, out.logits.data as Float32Array) <= 1e-4);
    // Two non-LoRA adapters cannot stack: each plan holds whole weights computed from the base.
    await assert.rejects(model.mergeAndUnload({ adapterNames: ["ia3", "default"] }), UnsupportedError);
    const merged = await model.mergeAndUnload({ adapterNames: ["ia3"] });
    try {
      const again = await merged.session.run(e.feeds);
      assert.ok(comparedDiff(info, e, again.logits.data as Float32Array) <= 1e-4);
    } finally {
      await merged.release();
    }
    await model.release();
  } finally {
    await base.release();
  }
});

test("tuners: PEFT's Conv1D refusals hold on a dynamo export (qualified class names)", async () => {
  const manifest = await realManifest();
  const base = await loadBaseModel(realPath(manifest.bases.find((b) => b.name === "gpt2-dynamo")!.path));
  try {
    for (const name of ["gpt2-loha", "gpt2-lokr", "gpt2-oft", "gpt2-boft"]) {
      await assert.rejects(
        fromPretrained(base, `tests/fixtures/tuners/${name}`, { mode: "merged" }),
        (e: unknown) => e instanceof UnsupportedError && /Conv1D/.test(e.message),
        name,
      );
    }
  } finally {
    await base.release();
  }
});
