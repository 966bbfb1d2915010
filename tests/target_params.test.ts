/**
 * LoRA on nn.Parameters (`target_parameters`, PEFT's ParamWrapper; tests/fixtures/tparams, made by the real PEFT
 * with tests/fixtures/make/target_params.py): a Linear's, a Conv1D's and an Embedding's weight, on both exporters'
 * tiny bases, give PEFT's logits at 1e-4 in dynamic and merged mode and through mergeAndUnload, and a tiny
 * Mixtral's 3-D expert stacks (one, and two nested on one module) in merged mode; PEFT's refusals
 * (its ValueErrors for the wrapper's settings and 1-D parameters, mixed-adapter batches, adapters targeting
 * different parameter sets) are reproduced, and a parameter the export cannot take is refused by name.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { type BaseModel, fromPretrained, loadBaseModel } from "../mod.ts";
import { Tensor } from "../src/deps/ort.ts";
import { AdapterConfigError, PeftEdgeError, UnsupportedError } from "../src/errors.ts";
import type { Feeds } from "../src/model/base_model.ts";
import { parseSafetensors } from "../src/safetensors/mod.ts";
import { call, DEMO_ADAPTER, loadDemo, withService } from "./support/server_setup.ts";

const FIXTURES = "tests/fixtures/tparams";
interface Case {
  name: string;
  path: string;
  bases: string[];
  target_parameters: string[];
  mixed_batch: { outcome: string; message: string };
  delta_from_base: number;
  /** 3-D expert stacks (a tiny Mixtral): merged mode only. */
  experts?: number;
}
interface Refusal {
  label: string;
  config: Record<string, unknown>;
  outcome: string;
  exception: string;
  message: string;
}
const manifest = JSON.parse(await readFile(`${FIXTURES}/manifest.json`, "utf8")) as {
  cases: Case[];
  refusals: Refusal[];
  demo: { name: string; path: string; base: string };
};
const LONG = { timeout: 120_000 };

const bases = new Map<string, Promise<BaseModel>>();
const base = (path: string) => {
  let b = bases.get(path);
  if (!b) bases.set(path, b = loadBaseModel(path));
  return b;
};
after(async () => {
  for (const b of bases.values()) await (await b).release();
});

/** The fixture's batch (archs.inputs: two rows, the second left-padded) and PEFT's logits for it. */
async function expected(folder: string) {
  const st = parseSafetensors(new Uint8Array(await readFile(`${folder}/expected.safetensors`)));
  const feeds: Feeds = {};
  for (const name of ["input_ids", "attention_mask", "position_ids"]) {
    if (st.has(name)) feeds[name] = new Tensor("int64", st.toTypedArray(name) as BigInt64Array, st.get(name).shape);
  }
  return {
    feeds,
    mask: st.toTypedArray("attention_mask") as BigInt64Array,
    logits: st.toFloat32("logits"),
    merged: st.toFloat32("merged_logits"),
    base: st.toFloat32("base_logits"),
  };
}

/** Max abs difference over the positions with attention_mask 1. */
function maxDiff(mask: BigInt64Array, want: Float32Array, got: Float32Array): number {
  assert.equal(got.length, want.length);
  const vocab = want.length / mask.length;
  let max = 0;
  for (let p = 0; p < mask.length; p++) {
    if (mask[p] === 0n) continue;
    for (let v = 0; v < vocab; v++) {
      const d = Math.abs(got[p * vocab + v] - want[p * vocab + v]);
      if (!(d <= max)) max = d;
    }
  }
  return max;
}

/** The base's feeds: the fixture's, restricted to what the export takes. */
const feedsFor = (model: { inputNames: readonly string[] }, feeds: Feeds) =>
  Object.fromEntries(model.inputNames.map((n) => [n, feeds[n]]));

for (const c of manifest.cases) {
  const folder = `${FIXTURES}/${c.path}`;
  for (const basePath of c.bases) {
    const exporter = basePath.slice(basePath.lastIndexOf("-") + 1);
    test(`target_parameters ${c.name} on ${exporter}: PEFT's logits in dynamic and merged mode`, LONG, async () => {
      const e = await expected(folder);
      assert.ok(c.delta_from_base > 1e-2, "the adapter moves the logits");
      assert.ok(maxDiff(e.mask, e.logits, e.merged) <= 1e-5, "PEFT's merge gives its forward's logits");
      const b = await base(basePath);
      if (c.experts) {
        // 3-D expert stacks: merged only; dynamic mode says so, naming the parameter.
        await assert.rejects(fromPretrained(b, folder, { onWarning: () => {} }), (err: unknown) => {
          assert.ok(err instanceof UnsupportedError, `${err}`);
          assert.match(err.message, /experts\.(down|gate_up)_proj .*mode "merged"/);
          return true;
        });
        const model = await fromPretrained(b, folder, { mode: "merged", onWarning: (m) => assert.fail(m) });
        try {
          const out = await model.run(feedsFor(model, e.feeds));
          const d = maxDiff(e.mask, e.logits, out.logits.data as Float32Array);
          console.log(`${c.name} merged: max abs diff vs PEFT ${d.toExponential(2)}`);
          assert.ok(d <= 1e-4, `merged: max abs diff ${d}`);
          const merged = await model.mergeAndUnload();
          try {
            const m = await merged.run(feedsFor(merged, e.feeds));
            assert.ok(maxDiff(e.mask, e.merged, m.logits.data as Float32Array) <= 1e-4, "mergeAndUnload");
          } finally {
            await merged.release();
          }
        } finally {
          await model.release();
        }
        return;
      }
      const dynamic = await fromPretrained(b, folder, { onWarning: (m) => assert.fail(m) });
      try {
        const out = await dynamic.run(feedsFor(dynamic, e.feeds));
        const d = maxDiff(e.mask, e.logits, out.logits.data as Float32Array);
        console.log(`${c.name} (${exporter}) dynamic: max abs diff vs PEFT ${d.toExponential(2)}`);
        assert.ok(d <= 1e-4, `dynamic: max abs diff ${d}`);
        // The base is untouched with the adapter off.
        {
          using _off = dynamic.disableAdapter();
          const off = await dynamic.run(feedsFor(dynamic, e.feeds));
          assert.ok(maxDiff(e.mask, e.base, off.logits.data as Float32Array) <= 1e-4);
        }
        const merged = await dynamic.mergeAndUnload();
        try {
          const m = await merged.run(feedsFor(merged, e.feeds));
          const dm = maxDiff(e.mask, e.merged, m.logits.data as Float32Array);
          assert.ok(dm <= 1e-4, `mergeAndUnload: max abs diff ${dm}`);
        } finally {
          await merged.release();
        }
      } finally {
        await dynamic.release();
      }
      const merged = await fromPretrained(b, folder, { mode: "merged", onWarning: (m) => assert.fail(m) });
      try {
        const out = await merged.run(feedsFor(merged, e.feeds));
        const d = maxDiff(e.mask, e.merged, out.logits.data as Float32Array);
        console.log(`${c.name} (${exporter}) merged: max abs diff vs PEFT ${d.toExponential(2)}`);
        assert.ok(d <= 1e-4, `merged: max abs diff ${d}`);
      } finally {
        await merged.release();
      }
    });
  }
}

const qv = manifest.cases.find((c) => c.name === "llama-tparams-qv")!;
const qvFolder = `${FIXTURES}/${qv.path}`;
const savedConfig = async () => JSON.parse(await readFile(`${qvFolder}/adapter_config.json`, "utf8"));

test("target_parameters: PEFT's ValueErrors for the wrapper's settings and a 1-D parameter", LONG, async () => {
  const b = await base(qv.bases[0]);
  assert.ok(manifest.refusals.length >= 5);
  for (const r of manifest.refusals) {
    assert.equal(r.outcome, "raises", r.label);
    const config = { ...await savedConfig(), ...r.config };
    await assert.rejects(fromPretrained(b, qvFolder, { config, onWarning: () => {} }), (err: unknown) => {
      assert.ok(err instanceof AdapterConfigError, `${r.label}: expected AdapterConfigError, got ${err}`);
      // PEFT's words, up to its final full stop.
      assert.ok(err.message.includes(r.message.replace(/\.$/, "")), `${r.label}: ${err.message} vs ${r.message}`);
      return true;
    });
  }
});

test("target_parameters: PEFT's refusal of mixed-adapter batches; rows of one adapter run", LONG, async () => {
  assert.equal(qv.mixed_batch.outcome, "raises");
  const e = await expected(qvFolder);
  const model = await fromPretrained(await base(qv.bases[0]), qvFolder);
  try {
    const feeds = feedsFor(model, e.feeds);
    await assert.rejects(model.run(feeds, { adapterNames: ["default", "__base__"] }), (err: unknown) => {
      assert.ok(err instanceof UnsupportedError, `${err}`);
      assert.ok(err.message.includes(qv.mixed_batch.message.replace(/\.$/, "")), err.message);
      return true;
    });
    const same = await model.run(feeds, { adapterNames: ["default", "default"] });
    assert.ok(maxDiff(e.mask, e.logits, same.logits.data as Float32Array) <= 1e-4);
  } finally {
    await model.release();
  }
});

test("target_parameters: adapters on different parameter sets are refused, as PEFT does", LONG, async () => {
  const model = await fromPretrained(await base(qv.bases[0]), qvFolder);
  try {
    const mixed = manifest.cases.find((c) => c.name === "llama-tparams-mixed")!;
    await assert.rejects(model.loadAdapter(`${FIXTURES}/${mixed.path}`, "other"), (err: unknown) => {
      assert.ok(err instanceof AdapterConfigError && err.key === "target_parameters", `${err}`);
      assert.match(err.message, /all adapters must target the same set of parameters/);
      return true;
    });
    // The same set loads beside it.
    await model.loadAdapter(qvFolder, "again");
    assert.deepEqual(model.listAdapters().sort(), ["again", "default"]);
  } finally {
    await model.release();
  }
});

test("target_parameters: a parameter the export has no weight for is refused by name", LONG, async () => {
  const b = await base(qv.bases[0]);
  const config = { ...await savedConfig(), target_parameters: ["q_proj.scale", "v_proj.weight"] };
  await assert.rejects(fromPretrained(b, qvFolder, { config, onWarning: () => {} }), (err: unknown) => {
    assert.ok(err instanceof PeftEdgeError, `${err}`);
    assert.match(err.message, /model\.layers\.0\.self_attn\.q_proj\.scale/);
    return true;
  });
  // A module both in target_modules and holding a wrapped parameter (PEFT: "not a valid target").
  const both = { ...await savedConfig(), target_modules: ["q_proj"] };
  await assert.rejects(fromPretrained(b, qvFolder, { config: both, onWarning: () => {} }), AdapterConfigError);
  // Training and weighting it are refused (their graphs would save the factors in the module's layout).
  const model = await fromPretrained(b, qvFolder);
  try {
    await assert.rejects(model.addWeightedAdapter(["default"], [1], "w"), UnsupportedError);
  } finally {
    await model.release();
  }
});

test("target_parameters in the server: concurrent completions beside another adapter equal PEFT's greedy generate", {
  timeout: 180_000,
}, async () => {
  const folder = `${FIXTURES}/${manifest.demo.path}`;
  const generations = JSON.parse(await readFile(`${folder}/generations.json`, "utf8")) as {
    single: { prompt: number[]; tokens: number[] }[];
  };
  const demo = await loadDemo();
  const alone = await fromPretrained(demo.base, DEMO_ADAPTER);
  try {
    const python = await Promise.all(
      generations.single.map(({ prompt }) => alone.generate(prompt, { maxNewTokens: 8 })),
    );
    await withService(demo, { pool: { mode: "dynamic", maxBatch: 8 } }, async (service) => {
      await service.pool.load("tparams", { kind: "local", path: folder });
      await service.pool.load("python", { kind: "local", path: DEMO_ADAPTER });
      // Both adapters' requests at once: the tparams rows get a batch of their own (PEFT refuses mixing them).
      const ask = (model: string, prompt: number[], max: number) =>
        call(service.url, "POST", "/v1/completions", { body: { model, prompt, max_tokens: max, temperature: 0 } });
      const replies = await Promise.all([
        ...generations.single.map(({ prompt, tokens }) => ask("tparams", prompt, tokens.length)),
        ...generations.single.map(({ prompt }) => ask("python", prompt, 8)),
      ]);
      const n = generations.single.length;
      replies.forEach((reply, i) => {
        assert.equal(reply.status, 200, JSON.stringify(reply.body));
        const want = i < n
          ? demo.tokenizer.decode(generations.single[i].tokens)
          : demo.tokenizer.decode(python[i - n].tokenIds);
        assert.equal(reply.body.choices[0].text, want, `request ${i}`);
      });
      assert.ok(service.pool.batchStats.maxRows >= 2, "requests shared decode steps");
    });
  } finally {
    await alone.release();
    await demo.base.release();
  }
});
