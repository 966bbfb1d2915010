/**
 * Merged mode applies what PEFT loads beside the LoRA factors, checked against
 * real PEFT (tests/fixtures/real/extra, made by tests/fixtures/make/extra.py):
 * a saved `base_layer.weight` that differs from the export's, and trainable
 * tokens (also on a tied embedding, where PEFT replaces lm_head's rows too).
 * Dynamic mode runs the trainable tokens too (tests/trainable_tokens.test.ts
 * checks it on inputs that hold the tokens) and refuses the changed weight
 * with a clear error.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fromPretrained, loadBaseModel, UnsupportedError } from "../mod.ts";
import { baseNamed, comparedDiff, realExpected, realManifest, realPath } from "./support/real_fixtures.ts";

const manifest = await realManifest();
const cases = JSON.parse(await readFile(realPath("extra/cases.json"), "utf8")) as {
  name: string;
  base: string;
  delta_from_base: number;
}[];

for (const c of cases) {
  for (const exporter of ["torchscript", "dynamo"]) {
    const base = baseNamed(manifest, `${c.base}-${exporter}`);
    const dynamicRuns = c.name.includes("trainable-tokens");
    test(`${c.name} on ${base.name}: merged gives PEFT's logits, dynamic ${dynamicRuns ? "too" : "refuses"}`, async () => {
      const model = await loadBaseModel(realPath(base.path));
      try {
        const folder = realPath(`extra/${c.name}`);
        for (const mode of dynamicRuns ? ["merged", "dynamic"] as const : ["merged"] as const) {
          const peft = await fromPretrained(model, folder, { mode, onWarning: () => {} });
          try {
            const e = await realExpected(`extra/${c.name}`, base.inputs);
            const out = await peft.run(e.feeds);
            const diff = comparedDiff(base, e, out.logits.data as Float32Array);
            assert.ok(diff < 1e-4, `${mode}: max abs diff ${diff} (the adapter moves logits by ${c.delta_from_base})`);
            const alone = await peft.run(e.feeds, { adapter: null });
            assert.ok(comparedDiff(base, e, alone.logits.data as Float32Array) > 1e-3, "differs from the base");
          } finally {
            await peft.release();
          }
        }
        if (dynamicRuns) return;
        await assert.rejects(
          () => fromPretrained(model, folder, { mode: "dynamic", onWarning: () => {} }),
          (err) => err instanceof UnsupportedError && /merge/.test(err.message),
        );
      } finally {
        await model.release();
      }
    });
  }
}
