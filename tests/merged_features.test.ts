/**
 * Merged mode applies what PEFT loads beside the LoRA factors, checked against
 * real PEFT (tests/fixtures/real/extra, made by tests/fixtures/make/extra.py):
 * a saved `base_layer.weight` that differs from the export's, and trainable
 * tokens (also on a tied embedding, where PEFT replaces lm_head's rows too).
 * Dynamic mode refuses both with a clear error.
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
    test(`${c.name} on ${base.name}: merged gives PEFT's logits, dynamic refuses`, async () => {
      const model = await loadBaseModel(realPath(base.path));
      try {
        const folder = realPath(`extra/${c.name}`);
        const peft = await fromPretrained(model, folder, { mode: "merged", onWarning: () => {} });
        try {
          const e = await realExpected(`extra/${c.name}`, base.inputs);
          const out = await peft.run(e.feeds);
          const diff = comparedDiff(base, e, out.logits.data as Float32Array);
          assert.ok(diff < 1e-4, `max abs diff ${diff} (the adapter moves logits by ${c.delta_from_base})`);
          const alone = await peft.run(e.feeds, { adapter: null });
          assert.ok(comparedDiff(base, e, alone.logits.data as Float32Array) > 1e-3, "differs from the base");
        } finally {
          await peft.release();
        }
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
