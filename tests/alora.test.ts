/**
 * Activated LoRA (aLoRA, tests/fixtures/alora, made by the real PEFT with
 * tests/fixtures/make/alora.py): in dynamic mode the adapter applies from the
 * last invocation sequence on, as PEFT's forward (logits at 1e-4, a row
 * without the invocation equal to the base) and PEFT's greedy `generate`
 * (alone, batched, mixed with the base) give; merging is refused with
 * PEFT's reason; a plain LoRA beside it is unchanged.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { type BaseModel, fromPretrained, loadBaseModel } from "../mod.ts";
import { Tensor } from "../src/deps/ort.ts";
import { UnsupportedError } from "../src/errors.ts";
import { generate, type TokenizerLike } from "../src/generate/mod.ts";
import type { Feeds } from "../src/model/base_model.ts";
import { parseSafetensors } from "../src/safetensors/mod.ts";
import { aloraOffset } from "../src/lora/alora.ts";
import { call, DEMO_ADAPTER, loadDemo, withService } from "./support/server_setup.ts";
import { firstRunFeeds } from "./support/decoder_feeds.ts";

const FIXTURES = "tests/fixtures/alora";
const manifest = JSON.parse(await readFile(`${FIXTURES}/manifest.json`, "utf8")) as {
  cases: {
    name: string;
    path: string;
    base: string;
    invocation: number[];
    merge: { outcome: string; message: string };
    delta_from_base: number[];
  }[];
};
const c = manifest.cases[0];
const folder = `${FIXTURES}/${c.path}`;
const generations = JSON.parse(await readFile(`${folder}/generations.json`, "utf8")) as {
  single: { prompt: number[]; tokens: number[] }[];
  batch: { prompts: number[][]; tokens: number[][] };
};
const LONG = { timeout: 120_000 };

let basePromise: Promise<BaseModel> | undefined;
const base = () => basePromise ??= loadBaseModel(c.base);
after(async () => {
  if (basePromise) await (await basePromise).release();
});

/** The fixture's batch as the base takes it (an empty past), PEFT's logits and the base's. */
async function expected(
  model: { inputNames: readonly string[]; config: Record<string, unknown> },
  from: string = folder,
) {
  const { st, feeds } = await firstRunFeeds(`${from}/expected.safetensors`, model);
  const shape = st.get("logits").shape;
  return {
    feeds,
    mask: st.toTypedArray("attention_mask") as BigInt64Array,
    logits: st.toFloat32("logits"),
    base: st.toFloat32("base_logits"),
    shape,
  };
}

/** Per row, the max abs difference over the positions with attention_mask 1. */
function rowDiffs(shape: readonly number[], mask: BigInt64Array, want: Float32Array, got: Float32Array): number[] {
  assert.equal(got.length, want.length);
  const [rows, positions, vocab] = shape;
  return Array.from({ length: rows }, (_, r) => {
    let max = 0;
    for (let p = 0; p < positions; p++) {
      if (mask[r * positions + p] === 0n) continue;
      for (let v = 0; v < vocab; v++) {
        const i = (r * positions + p) * vocab + v;
        const d = Math.abs(got[i] - want[i]);
        if (!(d <= max)) max = d;
      }
    }
    return max;
  });
}

test("aLoRA: the offset is PEFT's (last occurrence, counted from the end)", () => {
  assert.equal(aloraOffset([35, 35, 62, 1, 35, 35, 62, 9], [35, 35, 62]), 4);
  assert.equal(aloraOffset([35, 35, 62], [35, 35, 62]), 3);
  assert.equal(aloraOffset([35, 62, 35], [35, 35, 62]), null);
});

test("aLoRA dynamic: PEFT's logits with and without the invocation, and PEFT's greedy generate", LONG, async () => {
  const model = await fromPretrained(await base(), folder, { mode: "dynamic", onWarning: (m) => assert.fail(m) });
  try {
    const e = await expected(model);
    const out = await model.run(e.feeds);
    assert.deepEqual(out.logits.dims, e.shape);
    const diffs = rowDiffs(e.shape, e.mask, e.logits, out.logits.data as Float32Array);
    console.log(
      `${c.name}: per-row max abs diff vs PEFT ${diffs.map((d) => d.toExponential(2))} ` +
        `(adapter moves ${c.delta_from_base})`,
    );
    for (const d of diffs) assert.ok(d <= 1e-4, `max abs diff ${d} vs PEFT`);
    // The fixture is not vacuous: the invoked rows move, the row without the invocation is the base.
    assert.ok(c.delta_from_base[0] > 1e-2 && c.delta_from_base[1] > 1e-2);
    assert.equal(c.delta_from_base[2], 0);
    for (const { prompt, tokens } of generations.single) {
      const result = await model.generate(prompt, { maxNewTokens: tokens.length });
      assert.deepEqual(result.tokenIds, tokens, "greedy generate");
    }
    const results = await model.generateBatch(generations.batch.prompts, { maxNewTokens: 10 });
    assert.deepEqual(results.map((r) => r.tokenIds), generations.batch.tokens, "batched greedy generate");
    // A mixed batch: the base row is the base's, the aLoRA rows PEFT's.
    const mixed = await model.generateBatch(generations.batch.prompts.slice(0, 2), {
      maxNewTokens: 10,
      adapterNames: ["default", "__base__"],
    });
    assert.deepEqual(mixed[0].tokenIds, generations.batch.tokens[0]);
    const baseAlone = await (await base()).generate(generations.batch.prompts[1], { maxNewTokens: 10 });
    assert.deepEqual(mixed[1].tokenIds, baseAlone.tokenIds);
    await assert.rejects(model.mergeAndUnload(), (err: unknown) => {
      assert.ok(err instanceof UnsupportedError);
      assert.match(err.message, new RegExp(c.merge.message.replace(/\./g, "\\.").slice(0, -2)));
      return true;
    });
  } finally {
    await model.release();
  }
});

test("aLoRA merged mode is refused with PEFT's reason", LONG, async () => {
  assert.equal(c.merge.outcome, "raises");
  await assert.rejects(fromPretrained(await base(), folder, { mode: "merged" }), (err: unknown) => {
    assert.ok(err instanceof UnsupportedError, `expected UnsupportedError, got ${err}`);
    assert.match(err.message, /aLoRA does not support merging/);
    return true;
  });
});

test("aLoRA: training it and weighting it are refused (they would drop the invocation mask)", LONG, async () => {
  await assert.rejects(fromPretrained(await base(), folder, { isTrainable: true }), (err: unknown) => {
    assert.ok(err instanceof UnsupportedError && err.key === "alora_invocation_tokens", `${err}`);
    return true;
  });
  const model = await fromPretrained(await base(), folder);
  try {
    await assert.rejects(model.addWeightedAdapter(["default"], [1], "w"), UnsupportedError);
  } finally {
    await model.release();
  }
});

test("aLoRA beside a plain LoRA: the plain one is unchanged", LONG, async () => {
  const model = await fromPretrained(await base(), DEMO_ADAPTER, { adapterName: "py" });
  const alone = await fromPretrained(await base(), DEMO_ADAPTER);
  try {
    await model.loadAdapter(folder, "alora", { onWarning: (m) => assert.fail(m) });
    const e = await expected(model);
    assert.deepEqual(
      (await model.run(e.feeds, { adapter: "py" })).logits.data,
      (await alone.run(e.feeds)).logits.data,
    );
    const out = await model.run(e.feeds, { adapter: "alora" });
    for (const d of rowDiffs(e.shape, e.mask, e.logits, out.logits.data as Float32Array)) assert.ok(d <= 1e-4);
  } finally {
    await model.release();
    await alone.release();
  }
});

test("aLoRA in the server: concurrent completions (batched) equal PEFT's greedy generate", LONG, async () => {
  const demo = await loadDemo();
  try {
    await withService(demo, { pool: { mode: "dynamic", maxBatch: 8 } }, async (service) => {
      await service.pool.load("alora", { kind: "local", path: folder });
      const replies = await Promise.all(
        generations.single.map(({ prompt, tokens }) =>
          call(service.url, "POST", "/v1/completions", {
            body: { model: "alora", prompt, max_tokens: tokens.length, temperature: 0 },
          })
        ),
      );
      replies.forEach((reply, i) => {
        assert.equal(reply.status, 200, JSON.stringify(reply.body));
        assert.equal(reply.body.choices[0].text, demo.tokenizer.decode(generations.single[i].tokens), `prompt ${i}`);
      });
      assert.ok(service.pool.batchStats.maxRows >= 2, "the requests shared decode steps");
    });
  } finally {
    await demo.base.release();
  }
});

// The tiny cache-less Llama (config use_cache false): PEFT's generate reruns the whole sequence each step.
const IDS_ONLY: TokenizerLike = { encode: () => [], decode: (ids) => ids.join(" ") };
for (const tiny of manifest.cases.slice(1)) {
  test(`aLoRA dynamic on ${tiny.name}: PEFT's logits and its cache-less greedy generate`, LONG, async () => {
    const tinyBase = await loadBaseModel(tiny.base);
    const dir = `${FIXTURES}/${tiny.path}`;
    const model = await fromPretrained(tinyBase, dir, { onWarning: (m) => assert.fail(m) });
    try {
      const e = await expected(model, dir);
      const out = await model.run(e.feeds);
      const diffs = rowDiffs(e.shape, e.mask, e.logits, out.logits.data as Float32Array);
      console.log(`${tiny.name}: per-row max abs diff vs PEFT ${diffs.map((d) => d.toExponential(2))}`);
      for (const d of diffs) assert.ok(d <= 1e-4, `max abs diff ${d} vs PEFT`);
      assert.ok(tiny.delta_from_base[0] > 1e-2 && tiny.delta_from_base[2] === 0);
      const g = JSON.parse(await readFile(`${dir}/generations.json`, "utf8")) as typeof generations;
      for (const { prompt, tokens } of g.single) {
        const result = await generate(model, IDS_ONLY, prompt, { maxNewTokens: tokens.length + 1 });
        assert.deepEqual(result.tokenIds.slice(0, tokens.length), tokens, `greedy generate of ${prompt}`);
      }
    } finally {
      await model.release();
      await tinyBase.release();
    }
  });
}

// The tiny Llama's aLoRA and a plain LoRA (q_proj shared) active together, as PEFT runs them.
const combined = (manifest as unknown as {
  combined: {
    alora: string;
    plain: string;
    bases: string[];
    runs: Record<string, [string, string]>;
    mixed: string[];
  };
}).combined;
for (const basePath of combined.bases) {
  test(`aLoRA with a plain LoRA in one run and in mixed batches (${basePath}): PEFT's logits`, LONG, async () => {
    const tinyBase = await loadBaseModel(basePath);
    const plainDir = `${FIXTURES}/${combined.plain}`;
    const model = await fromPretrained(tinyBase, `${FIXTURES}/${combined.alora}`, {
      adapterName: "alora",
      onWarning: (m) => assert.fail(m),
    });
    try {
      await model.loadAdapter(plainDir, "plain", { onWarning: (m) => assert.fail(m) });
      const st = parseSafetensors(new Uint8Array(await readFile(`${plainDir}/combined.safetensors`)));
      const feeds: Feeds = {};
      for (const name of ["input_ids", "attention_mask", "position_ids"]) {
        feeds[name] = new Tensor("int64", st.toTypedArray(name) as BigInt64Array, st.get(name).shape);
      }
      const mask = st.toTypedArray("attention_mask") as BigInt64Array;
      const shape = st.get("alora_first").shape;
      const check = (label: string, want: string, got: Tensor) => {
        const diffs = rowDiffs(shape, mask, st.toFloat32(want), got.data as Float32Array);
        console.log(`${label}: per-row max abs diff vs PEFT ${diffs.map((d) => d.toExponential(2))}`);
        for (const d of diffs) assert.ok(d <= 1e-4, `${label}: max abs diff ${d} vs PEFT`);
      };
      // The aLoRA first: its offsets gate its modules, the plain LoRA applies everywhere (q_proj has both).
      for (const [run, names] of Object.entries(combined.runs)) {
        check(run, run, (await model.run(feeds, { adapter: names })).logits);
      }
      // The plain one first: PEFT computes no offsets and the aLoRA adds nothing.
      check("plain alone", "plain_first", (await model.run(feeds, { adapter: "plain" })).logits);
      model.setAdapter(combined.runs.alora_first);
      check("setAdapter", "alora_first", (await model.run(feeds)).logits);
      check("mixed batch", "mixed", (await model.run(feeds, { adapterNames: combined.mixed })).logits);
    } finally {
      await model.release();
      await tinyBase.release();
    }
  });
}
