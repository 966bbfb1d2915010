import { test } from "node:test";
import assert from "node:assert/strict";
import { type Feeds, fromPretrained, loadBaseModel, type PeftModel, Tensor, UnsupportedError } from "../mod.ts";
import { BASE_ADAPTER } from "../src/model/peft_model.ts";
import { generate, generateBatch } from "../src/generate/mod.ts";
import type { TokenizerLike } from "../src/generate/mod.ts";
import { ADAPTERS, expected, fixture, maxAbsDiff } from "./support/fixtures.ts";

const ATOL = 1e-4;
const LLAMA = ADAPTERS.filter(([, b]) => b === "llama-tiny").map(([a]) => a);

async function llamaWithAll(): Promise<PeftModel> {
  const base = await loadBaseModel(fixture("llama-tiny"));
  const model = await fromPretrained(base, fixture(LLAMA[0]), { adapterName: LLAMA[0] });
  for (const name of LLAMA.slice(1)) await model.loadAdapter(fixture(name), name);
  return model;
}

const int64 = (values: number[], dims: number[]) => new Tensor("int64", BigInt64Array.from(values, BigInt), dims);

/** Left-padded feeds for rows of ids, with an empty cache; positions as transformers computes them. */
function paddedFeeds(model: PeftModel, rows: number[][]): Feeds {
  const c = model.config as Record<string, number>;
  const headDim = c.hidden_size / c.num_attention_heads;
  const len = Math.max(...rows.map((r) => r.length));
  const ids = rows.flatMap((r) => [...Array(len - r.length).fill(0), ...r]);
  const mask = rows.flatMap((r) => [...Array(len - r.length).fill(0), ...r.map(() => 1)]);
  const pos = rows.flatMap((r) => [...Array(len - r.length).fill(1), ...r.map((_, i) => i)]);
  const feeds: Feeds = {
    input_ids: int64(ids, [rows.length, len]),
    attention_mask: int64(mask, [rows.length, len]),
    position_ids: int64(pos, [rows.length, len]),
  };
  for (const name of model.inputNames.filter((n) => n.startsWith("past_key_values."))) {
    feeds[name] = new Tensor("float32", new Float32Array(), [rows.length, c.num_key_value_heads, 0, headDim]);
  }
  return feeds;
}

/** Row `row`'s last `count` positions of `[rows, len, vocab]` logits. */
function tail(logits: Tensor, row: number, count: number): Float32Array {
  const [, len, vocab] = logits.dims;
  const data = logits.data as Float32Array;
  return data.subarray((row * len + len - count) * vocab, (row + 1) * len * vocab);
}

test("mixed batch of equal rows: each row gives its adapter's PEFT logits (and the base row the base's)", async () => {
  const model = await llamaWithAll();
  const names = [...LLAMA, BASE_ADAPTER, LLAMA[0]];
  const e = await expected("llama-tiny");
  const ids = [...e.inputIds].map(Number);
  const out = await model.run(paddedFeeds(model, names.map(() => ids)), { adapterNames: names });
  for (const [i, name] of names.entries()) {
    const own = await expected(name === BASE_ADAPTER ? "llama-tiny" : name);
    assert.deepEqual(own.inputIds, e.inputIds, "the fixtures share their prompt");
    const want = own.logits;
    const diff = maxAbsDiff(tail(out.logits, i, ids.length), want);
    assert.ok(diff < ATOL, `row ${i} (${name}): max diff ${diff}`);
  }
  await model.release();
  await model.base.release();
});

test("mixed batch of different lengths (left padding): each row equals the row run alone, prefill and a step", async () => {
  const model = await llamaWithAll();
  const names = [LLAMA[2], BASE_ADAPTER, LLAMA[3], LLAMA[1], LLAMA[4], LLAMA[0]];
  const rows = names.map((_, i) => Array.from({ length: 3 + 2 * i }, (_, k) => (17 * i + 5 * k + 3) % 256));
  const feeds = paddedFeeds(model, rows);
  const batch = await model.run(feeds, { adapterNames: names });
  // One decode step for every row, feeding the batch's cache back.
  const len = Math.max(...rows.map((r) => r.length));
  const mask = rows.flatMap((r) => [...Array(len - r.length).fill(0), ...Array(r.length + 1).fill(1)]);
  const step: Feeds = {
    input_ids: int64(rows.map((_, i) => 40 + i), [rows.length, 1]),
    attention_mask: int64(mask, [rows.length, len + 1]),
    position_ids: int64(rows.map((r) => r.length), [rows.length, 1]),
  };
  for (const n of model.inputNames.filter((n) => n.startsWith("past_key_values."))) {
    step[n] = batch[n.replace("past_key_values.", "present.")];
  }
  const next = await model.run(step, { adapterNames: names });
  for (const [i, name] of names.entries()) {
    const adapter = name === BASE_ADAPTER ? null : name;
    const alone = await model.run(paddedFeeds(model, [rows[i]]), { adapter });
    const diff = maxAbsDiff(tail(batch.logits, i, rows[i].length), alone.logits.data as Float32Array);
    assert.ok(diff < ATOL, `row ${i} (${name}) prefill: max diff ${diff}`);
    const aloneStep: Feeds = {
      input_ids: int64([40 + i], [1, 1]),
      attention_mask: int64(Array(rows[i].length + 1).fill(1), [1, rows[i].length + 1]),
      position_ids: int64([rows[i].length], [1, 1]),
    };
    for (const n of model.inputNames.filter((n) => n.startsWith("past_key_values."))) {
      aloneStep[n] = alone[n.replace("past_key_values.", "present.")];
    }
    const aloneNext = await model.run(aloneStep, { adapter });
    const stepDiff = maxAbsDiff(tail(next.logits, i, 1), aloneNext.logits.data as Float32Array);
    assert.ok(stepDiff < ATOL, `row ${i} (${name}) step: max diff ${stepDiff}`);
  }
  await model.release();
  await model.base.release();
});

const bytes: TokenizerLike = {
  encode: (t) => [...new TextEncoder().encode(t)],
  decode: (ids) => String.fromCharCode(...ids),
};

test("generateBatch: every row equals the prompt generated alone with its adapter, each stopping on its own", async () => {
  const model = await llamaWithAll();
  const prompts = ["ab", "hello there", "x", "the quick brown fox", "zz top"];
  const names = [LLAMA[0], BASE_ADAPTER, LLAMA[2], LLAMA[3], LLAMA[4]];
  const adapterOf = (i: number) => names[i] === BASE_ADAPTER ? null : names[i];
  // An eos id that the base row produces early, so rows end at different steps.
  const probe = await generate(model, bytes, prompts[1], {
    maxNewTokens: 12,
    temperature: 0,
    adapter: null,
    eosTokenId: [],
  });
  const options = { maxNewTokens: 12, temperature: 0, eosTokenId: probe.tokenIds[3] };
  const batch = await generateBatch(model, bytes, prompts, { ...options, adapterNames: names });
  const ends = new Set<string>();
  for (const [i, p] of prompts.entries()) {
    // The reference is the single-prompt loop (src/generate/generate.ts), a separate code path.
    const single = await generate(model, bytes, p, { ...options, adapter: adapterOf(i) });
    assert.deepEqual(batch[i].tokenIds, single.tokenIds, `row ${i} (${names[i]})`);
    assert.equal(batch[i].finishReason, single.finishReason);
    assert.equal(batch[i].text, single.text);
    assert.deepEqual(batch[i].promptTokenIds, single.promptTokenIds);
    ends.add(`${batch[i].finishReason}:${batch[i].tokenIds.length}`);
  }
  // Stop strings end rows on their own too.
  const stopped = await generateBatch(model, bytes, prompts, {
    ...options,
    stop: batch[3].text.slice(2, 4),
    adapterNames: names,
  });
  const alone3 = await generate(model, bytes, prompts[3], {
    ...options,
    stop: batch[3].text.slice(2, 4),
    adapter: adapterOf(3),
  });
  assert.equal(stopped[3].finishReason, "stop");
  assert.deepEqual(stopped[3].tokenIds, alone3.tokenIds);
  assert.equal(stopped[3].text, alone3.text);
  assert.ok(ends.size > 1, `rows should end at different steps: ${[...ends]}`);
  await model.release();
  await model.base.release();
});

test("adapterNames: one per row, known names, not with adapter; merged mode refuses a mixed batch", async () => {
  const model = await llamaWithAll();
  const feeds = paddedFeeds(model, [[1, 2], [3, 4]]);
  await assert.rejects(model.run(feeds, { adapterNames: [LLAMA[0]] }), /one name per batch row/);
  await assert.rejects(model.run(feeds, { adapterNames: [LLAMA[0], "nope"] }), /no adapter named nope/);
  await assert.rejects(model.run(feeds, { adapterNames: [LLAMA[0], LLAMA[1]], adapter: null }), /not both/);
  await model.release();
  const base = await loadBaseModel(fixture("llama-tiny"));
  const merged = await fromPretrained(base, fixture(LLAMA[0]), { mode: "merged", adapterName: "a" });
  await merged.loadAdapter(fixture(LLAMA[4]), "b");
  // Same adapter on every row works in merged mode too.
  await merged.run(feeds, { adapterNames: ["a", "a"] });
  await assert.rejects(merged.run(feeds, { adapterNames: ["a", "b"] }), UnsupportedError);
  await merged.release();
  await base.release();
  await model.base.release();
});
