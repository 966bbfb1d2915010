/**
 * Non-LoRA PEFT methods (tests/fixtures/tuners, made by the real PEFT with
 * tests/fixtures/make/tuners.py): merged and dynamic modes give PEFT's logits at 1e-4; PEFT's own refusals (LoHa, LoKr,
 * OFT on GPT-2's Conv1D) are refused with a typed error; what peft-edge does
 * not reproduce is refused with a typed error too.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fromPretrained, loadBaseModel } from "../mod.ts";
import { PeftEdgeError } from "../src/errors.ts";
import { baseNamed, comparedDiff, realExpected, realManifest, realPath } from "./support/real_fixtures.ts";

interface TunerCase {
  name: string;
  arch: string;
  base: string;
  path: string;
  outcome: "loads" | "raises";
  exception?: string;
  message?: string;
  delta_from_base?: number;
}

const FIXTURES = "tests/fixtures/tuners";
const cases = (JSON.parse(await readFile(`${FIXTURES}/manifest.json`, "utf8")) as { cases: TunerCase[] }).cases;
const real = await realManifest();

/** PEFT loads these, peft-edge refuses them (with why). */
const REFUSED: ReadonlyMap<string, RegExp> = new Map([
  ["llama-vera-no-projection", /save_projection is false/],
]);

async function withBase(c: TunerCase, fn: (base: Awaited<ReturnType<typeof loadBaseModel>>) => Promise<void>) {
  const base = await loadBaseModel(realPath(baseNamed(real, c.base).path));
  try {
    await fn(base);
  } finally {
    await base.release();
  }
}

for (const c of cases) {
  const folder = `${FIXTURES}/${c.path}`;
  const refused = REFUSED.get(c.name);
  test(`tuners: ${c.name} merged`, () =>
    withBase(c, async (base) => {
      if (c.outcome === "raises" || refused) {
        await assert.rejects(fromPretrained(base, folder, { mode: "merged", onWarning: () => {} }), (err: unknown) => {
          assert.ok(err instanceof PeftEdgeError, `expected a typed error, got ${err}`);
          if (refused) assert.match(err.message, refused);
          if (c.outcome === "raises") assert.match(err.message, /not supported/);
          return true;
        });
        return;
      }
      const model = await fromPretrained(base, folder, { mode: "merged", onWarning: (m) => assert.fail(m) });
      try {
        const baseInfo = baseNamed(real, c.base);
        const e = await realExpected(`../tuners/${c.path}`, baseInfo.inputs);
        const out = await model.run(e.feeds);
        const diff = comparedDiff(baseInfo, e, out.logits.data as Float32Array);
        console.log(`${c.name} merged: max abs diff ${diff.toExponential(2)} vs PEFT`);
        assert.ok(
          diff <= 1e-4,
          `${c.name}: max abs diff ${diff} vs PEFT (adapter moves logits by ${c.delta_from_base})`,
        );
      } finally {
        await model.release();
      }
    }));
  // Every loading method runs in dynamic mode too: the variants tests/tuners_dynamic.test.ts does not load.
  if (c.outcome === "loads" && !refused) {
    test(`tuners: ${c.name} dynamic`, () =>
      withBase(c, async (base) => {
        await using model = await fromPretrained(base, folder, { onWarning: (m) => assert.fail(m) });
        const baseInfo = baseNamed(real, c.base);
        const e = await realExpected(`../tuners/${c.path}`, baseInfo.inputs);
        const diff = comparedDiff(baseInfo, e, (await model.run(e.feeds)).logits.data as Float32Array);
        assert.ok(diff <= 1e-4, `${c.name}: max abs diff ${diff} vs PEFT`);
      }));
  }
}
