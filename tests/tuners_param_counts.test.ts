/**
 * `getNbTrainableParameters` for every non-LoRA adapter of tests/fixtures/tuners
 * counts what PEFT's `get_nb_trainable_parameters` counts after
 * `PeftModel.from_pretrained` (tests/fixtures/tuners/param_counts.json, made by
 * tests/fixtures/make/param_counts.py): a dense method's factors, not the weight
 * they make; VeRA without its shared projections (buffers); AdaLoRA with a
 * `ranknum` per module. Both modes count the same.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fromPretrained, loadBaseModel, UnsupportedError } from "../mod.ts";
import { realPath } from "./support/real_fixtures.ts";

const TUNERS = "../tuners";
const counts = JSON.parse(await readFile(realPath(`${TUNERS}/param_counts.json`), "utf8")) as {
  added_parameters: Record<string, number>;
};
const manifest = JSON.parse(await readFile(realPath(`${TUNERS}/manifest.json`), "utf8")) as {
  cases: { name: string; base: string; path: string }[];
};
/** Loaded by PEFT, refused here (VeRA's projections regenerated from a torch PRNG key). */
const REFUSED = new Set(["llama-vera-no-projection"]);

for (const [name, expected] of Object.entries(counts.added_parameters)) {
  const entry = manifest.cases.find((c) => c.name === name)!;
  test(`${name}: getNbTrainableParameters adds PEFT's ${expected} parameters to the base`, async () => {
    await using base = await loadBaseModel(realPath(`bases/${entry.base}`));
    for (const mode of ["merged", "dynamic"] as const) {
      const load = fromPretrained(base, realPath(`${TUNERS}/${entry.path}`), { mode, onWarning: () => {} });
      if (REFUSED.has(name)) {
        await assert.rejects(load, UnsupportedError);
        continue;
      }
      await using model = await load;
      assert.equal(model.getNbTrainableParameters().all - base.numParameters(), expected, mode);
    }
  });
}
