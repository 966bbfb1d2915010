/**
 * addWeightedAdapter against PEFT's own add_weighted_adapter
 * (tests/fixtures/real/weighted, made by tests/fixtures/make/weighted.py):
 * every deterministic combination type, the logits of the new adapter, the
 * same after its sources are deleted, and deleteAdapter of an active adapter.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import {
  AdapterConfigError,
  fromPretrained,
  loadBaseModel,
  type LoraConfig,
  type PeftModel,
  UnsupportedError,
} from "../mod.ts";
import type { WeightedAdapterOptions } from "../src/lora/weighted.ts";
import { parseSafetensors } from "../src/safetensors/mod.ts";
import { svd } from "../src/lora/svd.ts";
import { baseNamed, comparedDiff, realExpected, realManifest, realPath } from "./support/real_fixtures.ts";

interface Case {
  name: string;
  adapters: string[];
  weights: number[];
  options: Record<string, unknown>;
  r: number;
  active_after_delete: string[];
}
interface Cases {
  sources: Record<string, string>;
  base: string;
  cases: Case[];
  deletes: { active: string[]; deleted: string; active_after: string[] }[];
}

const cases = JSON.parse(await readFile(realPath("weighted/cases.json"), "utf8")) as Cases;
const manifest = await realManifest();
const base = baseNamed(manifest, cases.base);
const expected = parseSafetensors(new Uint8Array(await readFile(realPath("weighted/expected.safetensors"))));
const ATOL = 1e-4;

const camel = (o: Record<string, unknown>): WeightedAdapterOptions =>
  Object.fromEntries(Object.entries(o).map(([k, v]) => [k.replace(/_([a-z])/g, (_, c) => c.toUpperCase()), v]));

async function withSources(mode: "dynamic" | "merged", fn: (m: PeftModel) => Promise<void>): Promise<void> {
  const model = await loadBaseModel(realPath(base.path));
  const [first, ...rest] = Object.entries(cases.sources);
  const peft = await fromPretrained(model, realPath(`adapters/${first[1]}`), {
    mode,
    adapterName: first[0],
    onWarning: () => {},
  });
  for (const [name, folder] of rest) await peft.loadAdapter(realPath(`adapters/${folder}`), name);
  try {
    await fn(peft);
  } finally {
    await peft.release();
    await model.release();
  }
}

async function diff(model: PeftModel, adapter: string | null, key: string): Promise<number> {
  const e = await realExpected(base.path, base.inputs);
  const out = await model.run(e.feeds, { adapter });
  return comparedDiff(base, { ...e, logits: expected.toFloat32(key) }, out.logits.data as Float32Array);
}

for (const mode of ["dynamic", "merged"] as const) {
  test(`${mode}: every deterministic combination type gives PEFT's logits, also after deleting the sources`, async () => {
    await withSources(mode, async (model) => {
      const report: string[] = [];
      for (const c of cases.cases) {
        await model.addWeightedAdapter(c.adapters, c.weights, c.name, camel(c.options));
        assert.equal((model.peftConfig[c.name] as LoraConfig).r, c.r, c.name);
        const d = await diff(model, c.name, `${c.name}.logits`);
        report.push(`${c.name}: ${d.toExponential(2)}`);
        assert.ok(d < ATOL, `${c.name}: max abs diff ${d}`);
        // The combination changes the logits (a test that ignores the adapter cannot pass).
        assert.ok(await diff(model, null, `${c.name}.logits`) > 100 * ATOL, `${c.name} is not the base`);
      }
      for (const name of Object.keys(cases.sources)) await model.deleteAdapter(name);
      for (const c of cases.cases) {
        const d = await diff(model, c.name, `${c.name}.logits_after_delete`);
        assert.ok(d < ATOL, `${c.name} after deleting its sources: ${d}`);
      }
      console.log(`${mode} max abs diff vs PEFT: ${report.join(", ")}`);
    });
  });
}

test("deleteAdapter of an active adapter: PEFT's choice of the next active one", async () => {
  await withSources("dynamic", async (model) => {
    const [single, several] = cases.deletes;
    model.setAdapter(single.active);
    await model.deleteAdapter(single.deleted);
    assert.deepEqual(model.activeAdapters, single.active_after);
    model.setAdapter(several.active);
    await model.deleteAdapter(several.deleted);
    assert.deepEqual(model.activeAdapters, several.active_after);
    assert.ok(await diff(model, undefined as unknown as null, "delete-active.logits") < ATOL);
    await model.deleteAdapter(model.activeAdapter);
    assert.deepEqual(model.listAdapters(), []);
    assert.deepEqual(model.activeAdapters, []);
  });
});

test("refusals: random dare, unknown type, unequal ranks, missing density", async () => {
  await withSources("dynamic", async (model) => {
    const [a, b] = Object.keys(cases.sources);
    const reject = (o: WeightedAdapterOptions, type: unknown) =>
      assert.rejects(() => model.addWeightedAdapter([a, b], [1, 1], "x", o), type as typeof Error);
    await reject({ combinationType: "dare_linear", density: 0.5 }, UnsupportedError);
    await reject({ combinationType: "dare_ties_svd", density: 0.9 }, UnsupportedError);
    await reject({ combinationType: "ties" }, AdapterConfigError);
    await reject({ combinationType: "magnitude_prune", density: -1 }, AdapterConfigError);
    await reject({ combinationType: "svd", svdClamp: 2 }, AdapterConfigError);
    await reject({ combinationType: "svd", svdRank: 17 }, AdapterConfigError);
    assert.deepEqual(model.listAdapters().includes("x"), false);
  });
});

test("svd: reconstructs, orthonormal factors, singular values descending, on wide, tall and rank-deficient input", () => {
  let seed = 1;
  const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647) - 0.5;
  for (const [m, n, rank] of [[7, 5, 5], [4, 9, 4], [8, 8, 3]]) {
    // A random m x n matrix of the given rank.
    const left = Array.from({ length: m * rank }, rand);
    const right = Array.from({ length: rank * n }, rand);
    const a = new Float64Array(m * n);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        for (let k = 0; k < rank; k++) a[i * n + j] += left[i * rank + k] * right[k * n + j];
      }
    }
    const { u, s, vt, k } = svd(a, m, n);
    assert.equal(k, Math.min(m, n));
    for (let r = 1; r < k; r++) assert.ok(s[r] <= s[r - 1]);
    for (let r = rank; r < k; r++) assert.ok(s[r] < 1e-12, `s[${r}] = ${s[r]}`);
    let err = 0;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let v = 0;
        for (let r = 0; r < k; r++) v += u[i * k + r] * s[r] * vt[r * n + j];
        err = Math.max(err, Math.abs(v - a[i * n + j]));
      }
    }
    assert.ok(err < 1e-12, `reconstruction error ${err}`);
    for (let p = 0; p < rank; p++) {
      for (let q = 0; q < rank; q++) {
        let dot = 0;
        for (let j = 0; j < n; j++) dot += vt[p * n + j] * vt[q * n + j];
        assert.ok(Math.abs(dot - (p === q ? 1 : 0)) < 1e-12);
      }
    }
  }
});
