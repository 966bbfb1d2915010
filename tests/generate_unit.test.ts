/**
 * Generation without a real model: the RNG, sampling, detokenizing, stop
 * strings, option checks, and the decoding loop driven by a scripted fake
 * decoder that records every run.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Tensor } from "../src/deps/ort.ts";
import { GenerationError } from "../src/errors.ts";
import {
  applyRepetitionPenalty,
  argmax,
  type CausalLm,
  chooseToken,
  createRng,
  describeDecoder,
  generate,
  IncrementalDecoder,
  resolveSettings,
  StopStringFilter,
  stream,
  type TokenizerLike,
} from "../src/generate/mod.ts";
import { detExp } from "../src/generate/det_exp.ts";

const bytes: TokenizerLike = {
  encode: (text) => [...new TextEncoder().encode(text)],
  decode: (ids) => new TextDecoder().decode(new Uint8Array(ids)),
};

interface RunRecord {
  inputIds: number[];
  attentionMaskLength?: number;
  positionIds?: number[];
  useCacheBranch?: boolean;
  pastLength?: number;
  adapter?: string | readonly string[] | null;
}

interface FakeOptions {
  layers?: number;
  positionIds?: boolean;
  merged?: boolean;
  cache?: boolean;
  config?: Record<string, unknown>;
  onRun?: (runIndex: number) => void;
}

/**
 * A byte-level "model" that spells out `script` after any prompt (then
 * repeats its last byte). Its cache carries the token ids seen so far, so it
 * checks that the loop feeds `present.*` back as `past_key_values.*`.
 */
function scriptedLm(script: readonly number[], options: FakeOptions = {}) {
  const layers = options.layers ?? 2;
  const cache = options.cache ?? true;
  const runs: RunRecord[] = [];
  let promptLength = -1;
  const inputNames = ["input_ids", "attention_mask"];
  if (options.positionIds ?? true) inputNames.push("position_ids");
  if (options.merged) inputNames.push("use_cache_branch");
  const outputNames = ["logits"];
  for (let i = 0; cache && i < layers; i++) {
    for (const kv of ["key", "value"]) {
      inputNames.push(`past_key_values.${i}.${kv}`);
      outputNames.push(`present.${i}.${kv}`);
    }
  }
  const lm: CausalLm = {
    inputNames,
    outputNames,
    config: options.config ?? { num_attention_heads: 1, hidden_size: 1, vocab_size: 256, max_position_embeddings: 64 },
    run(feeds, runOptions) {
      options.onRun?.(runs.length);
      const ids = Array.from(feeds.input_ids.data as BigInt64Array, Number);
      const past = feeds["past_key_values.0.key"];
      const pastIds = past ? Array.from(past.data as Float32Array) : [];
      for (let i = 0; cache && i < layers; i++) {
        for (const kv of ["key", "value"]) {
          const t = feeds[`past_key_values.${i}.${kv}`];
          assert.deepEqual(t.dims, [1, 1, pastIds.length, 1]);
          assert.deepEqual(Array.from(t.data as Float32Array), pastIds);
        }
      }
      runs.push({
        inputIds: ids,
        attentionMaskLength: feeds.attention_mask?.dims[1],
        positionIds: feeds.position_ids ? Array.from(feeds.position_ids.data as BigInt64Array, Number) : undefined,
        useCacheBranch: feeds.use_cache_branch ? Boolean((feeds.use_cache_branch.data as Uint8Array)[0]) : undefined,
        pastLength: past?.dims[2],
        adapter: runOptions?.adapter,
      });
      const all = [...pastIds, ...ids];
      if (promptLength < 0) promptLength = all.length;
      const k = all.length - promptLength;
      const next = script[Math.min(k, script.length - 1)];
      const vocab = 256;
      const logits = new Float32Array(ids.length * vocab);
      logits[(ids.length - 1) * vocab + next] = 10;
      const out: Record<string, Tensor> = { logits: new Tensor("float32", logits, [1, ids.length, vocab]) };
      for (let i = 0; cache && i < layers; i++) {
        for (const kv of ["key", "value"]) {
          out[`present.${i}.${kv}`] = new Tensor("float32", Float32Array.from(all), [1, 1, all.length, 1]);
        }
      }
      return Promise.resolve(out);
    },
  };
  return { lm, runs };
}

const spell = (text: string) => [...new TextEncoder().encode(text)];

// ---------------------------------------------------------------- RNG and math

test("rng: xoshiro128** seeded by splitmix32 is fixed per seed", () => {
  const a = createRng(42);
  const b = createRng(42);
  const first = Array.from({ length: 5 }, () => a.nextUint32());
  assert.deepEqual(first, Array.from({ length: 5 }, () => b.nextUint32()));
  assert.deepEqual(first, RNG_42);
  const u = createRng(0);
  for (let i = 0; i < 1000; i++) {
    const x = u.uniform();
    assert.ok(x >= 0 && x < 1);
  }
  assert.notDeepEqual(
    Array.from({ length: 3 }, createRng(1).nextUint32),
    Array.from({ length: 3 }, createRng(2).nextUint32),
  );
});
const RNG_42 = [660444221, 3652823732, 77672526, 910233633, 2297337756];

test("detExp matches Math.exp to 1 ulp and handles the edges", () => {
  for (let x = -700; x < 700; x += 0.731) {
    const want = Math.exp(x);
    assert.ok(Math.abs(detExp(x) - want) <= 2.5e-16 * want, `exp(${x})`);
  }
  assert.ok(Math.abs(detExp(-740) - Math.exp(-740)) < 1e-322); // subnormal
  assert.equal(detExp(0), 1);
  assert.equal(detExp(-Infinity), 0);
  assert.equal(detExp(-800), 0);
  assert.equal(detExp(710), Infinity);
  assert.ok(Number.isNaN(detExp(NaN)));
});

// ---------------------------------------------------------------- sampling

test("argmax takes the lowest index among ties; temperature 0 is greedy", () => {
  assert.equal(argmax(new Float64Array([1, 5, 5, 2])), 1);
  const rng = createRng(1);
  for (let i = 0; i < 5; i++) {
    assert.equal(chooseToken(new Float64Array([1, 5, 4]), { temperature: 0, topK: 1, topP: 0.1 }, rng), 1);
  }
});

test("repetition penalty: positive logits divided, negative multiplied, once per distinct id", () => {
  const logits = new Float64Array([2, -2, 1, 3]);
  applyRepetitionPenalty(logits, [0, 1, 0, 0], 2);
  assert.deepEqual([...logits], [1, -4, 1, 3]);
  applyRepetitionPenalty(logits, [3], 1);
  assert.deepEqual([...logits], [1, -4, 1, 3]);
});

/** How often each token is drawn from `logits` in `n` draws. */
function histogram(logits: number[], params: { temperature: number; topK: number; topP: number }, n = 4000) {
  const rng = createRng(123);
  const counts = new Array(logits.length).fill(0);
  for (let i = 0; i < n; i++) counts[chooseToken(Float64Array.from(logits), params, rng)]++;
  return counts.map((c) => c / n);
}

test("sampling follows softmax(logits / temperature)", () => {
  const logits = [Math.log(0.5), Math.log(0.3), Math.log(0.2)];
  const freq = histogram(logits, { temperature: 1, topK: 0, topP: 1 });
  [0.5, 0.3, 0.2].forEach((p, i) => assert.ok(Math.abs(freq[i] - p) < 0.03, `token ${i}: ${freq[i]}`));
  // Temperature 0.5 squares the odds: 25 : 9 : 4.
  const hot = histogram(logits, { temperature: 0.5, topK: 0, topP: 1 });
  [25 / 38, 9 / 38, 4 / 38].forEach((p, i) => assert.ok(Math.abs(hot[i] - p) < 0.03, `token ${i}: ${hot[i]}`));
});

test("top-k keeps the k most likely; top-p keeps the nucleus (transformers' rule)", () => {
  const logits = [Math.log(0.1), Math.log(0.5), Math.log(0.3), Math.log(0.1)];
  assert.deepEqual(histogram(logits, { temperature: 1, topK: 2, topP: 1 }).map((f) => f > 0), [
    false,
    true,
    true,
    false,
  ]);
  // Sorted 0.5, 0.3, 0.1, 0.1: with top_p 0.6 the mass before 0.3 is 0.5 < 0.6 (kept), before the 0.1s 0.8 (dropped).
  assert.deepEqual(histogram(logits, { temperature: 1, topK: 0, topP: 0.6 }).map((f) => f > 0), [
    false,
    true,
    true,
    false,
  ]);
  // With top_p 0.5 only the most likely token stays (transformers drops tokens whose tail mass is <= 1 - p).
  assert.deepEqual(histogram(logits, { temperature: 1, topK: 0, topP: 0.5 }).map((f) => f > 0), [
    false,
    true,
    false,
    false,
  ]);
  const freq = histogram(logits, { temperature: 1, topK: 0, topP: 0.6 });
  assert.ok(Math.abs(freq[1] - 0.625) < 0.03, `renormalized: ${freq[1]}`);
});

// ---------------------------------------------------------------- text

test("incremental decoding never splits a character and adds up to the full text", () => {
  const text = "a€b 🙂 naïve — 日本語\n";
  const dec = new IncrementalDecoder(bytes);
  const pieces = spell(text).map((b) => dec.push(b)).filter((p) => p !== "");
  pieces.push(dec.flush());
  assert.equal(pieces.join(""), text);
  const whole = (piece: string) => new TextDecoder().decode(new TextEncoder().encode(piece)) === piece;
  assert.ok(pieces.every((p) => !p.includes("\uFFFD") && whole(p)), JSON.stringify(pieces));
  assert.ok(pieces.includes("🙂"));

  const broken = new IncrementalDecoder(bytes);
  assert.equal(broken.push(0xff), "");
  assert.equal(broken.push(0x41), "\uFFFDA"); // an invalid byte is final once followed
  assert.equal(broken.push(0xe2), "");
  assert.equal(broken.flush(), "\uFFFD"); // an unfinished character at the end
});

test("stop strings are cut and never emitted in part, however the text is split", () => {
  const stops = ["\n\n", "END"];
  const text = "one\ntwo EN three\n\nfour END";
  for (const size of [1, 2, 3, 7, text.length]) {
    const filter = new StopStringFilter(stops);
    let out = "";
    let stopped = false;
    for (let i = 0; i < text.length && !stopped; i += size) {
      const r = filter.push(text.slice(i, i + size));
      out += r.text;
      stopped = r.stopped;
    }
    assert.ok(stopped);
    assert.equal(out, "one\ntwo EN three", `chunk size ${size}`);
  }
  const open = new StopStringFilter(["abc"]);
  assert.deepEqual(open.push("xab"), { text: "x", stopped: false });
  assert.equal(open.flush(), "ab");
});

// ---------------------------------------------------------------- options

test("invalid options throw GenerationError naming the option", () => {
  const bad: [string, Record<string, unknown>][] = [
    ["maxNewTokens", { maxNewTokens: -1 }],
    ["maxNewTokens", { maxNewTokens: 1.5 }],
    ["temperature", { temperature: -0.1 }],
    ["temperature", { temperature: NaN }],
    ["topK", { topK: 2.5 }],
    ["topP", { topP: 0 }],
    ["topP", { topP: 1.01 }],
    ["repetitionPenalty", { repetitionPenalty: 0 }],
    ["seed", { seed: -1 }],
    ["seed", { seed: 2 ** 32 }],
    ["stop", { stop: [""] }],
    ["eosTokenId", { eosTokenId: [-3] }],
  ];
  for (const [key, options] of bad) {
    assert.throws(
      () => resolveSettings(options, { promptLength: 1 }),
      (e: unknown) => e instanceof GenerationError && e.key === key,
      JSON.stringify(options),
    );
  }
});

test("defaults: options, then generation_config.json, then transformers' defaults", () => {
  const plain = resolveSettings({ seed: 1 }, { promptLength: 3 });
  assert.deepEqual(
    [plain.maxNewTokens, plain.temperature, plain.topK, plain.topP, plain.repetitionPenalty],
    [20, 0, 50, 1, 1],
  );
  assert.deepEqual([...resolveSettings({}, { promptLength: 3, configEos: 2, tokenizerEos: 9 }).eosTokenIds], [2]);
  const gc = resolveSettings({ generationConfig: { doSample: true, topK: 5, maxLength: 10, eosTokenId: [7, 8] } }, {
    promptLength: 3,
    configEos: 2,
    tokenizerEos: 9,
  });
  assert.deepEqual([gc.temperature, gc.topK, gc.maxNewTokens, [...gc.eosTokenIds]], [1, 5, 7, [7, 8]]);
  const mine = resolveSettings({ temperature: 0.3, eosTokenId: [], generationConfig: { doSample: false } }, {
    promptLength: 3,
    tokenizerEos: 9,
  });
  assert.deepEqual([mine.temperature, mine.eosTokenIds.size], [0.3, 0]);
  assert.deepEqual([...resolveSettings({}, { promptLength: 1, tokenizerEos: 9 }).eosTokenIds], [9]);
});

test("bad prompts: empty, out-of-vocabulary ids, longer than the context, messages without a template", async () => {
  const { lm, runs } = scriptedLm([65]);
  const bad: unknown[] = ["", [], [1, 256], [0.5], "x".repeat(64), [{ role: "user", content: "hi" }]];
  for (const prompt of bad) {
    await assert.rejects(
      generate(lm, bytes, prompt as string),
      (e: unknown) => e instanceof GenerationError && e.key === "prompt",
      JSON.stringify(prompt).slice(0, 40),
    );
  }
  assert.equal(runs.length, 0);
  await assert.rejects(generate(lm, bytes, "hi", { topP: 2 }), GenerationError);
});

test("chat messages go through the chat template, encoded without special tokens", async () => {
  const seen: unknown[] = [];
  const chat: TokenizerLike = {
    encode: (text, options) => {
      seen.push(options?.addSpecialTokens);
      return bytes.encode(text);
    },
    decode: bytes.decode,
    applyChatTemplate: (messages, options) =>
      messages.map((m) => `<${m.role}>${m.content}`).join("") + (options?.addGenerationPrompt ? "<assistant>" : ""),
  };
  const { lm } = scriptedLm(spell("ok"));
  const r = await generate(lm, chat, [{ role: "user", content: "hi" }], { maxNewTokens: 2 });
  assert.deepEqual(r.promptTokenIds, spell("<user>hi<assistant>"));
  assert.deepEqual(seen, [false]);
  assert.equal(r.text, "ok");
  await generate(lm, chat, "plain", { maxNewTokens: 1 });
  await generate(lm, chat, "plain", { maxNewTokens: 1, addSpecialTokens: false });
  assert.deepEqual(seen, [false, true, false]);
});

test("a model generation cannot drive is rejected with GenerationError", () => {
  const base = scriptedLm([1]).lm;
  const variants: Partial<CausalLm>[] = [
    { inputNames: ["attention_mask"] },
    { outputNames: ["present.0.key"] },
    { inputNames: ["input_ids", "pixel_values"] },
    { inputNames: ["input_ids", "past_key_values.0.key"], outputNames: ["logits"] },
    { config: { vocab_size: 256 } },
  ];
  for (const v of variants) assert.throws(() => describeDecoder({ ...base, ...v }), GenerationError);
  assert.deepEqual(describeDecoder({ ...base, config: { n_head: 4, n_embd: 64, n_positions: 128 } }).emptyPastDims, [
    1,
    4,
    0,
    16,
  ]);
  assert.deepEqual(
    describeDecoder({
      ...base,
      config: { num_attention_heads: 8, num_key_value_heads: 2, head_dim: 32, hidden_size: 128 },
    })
      .emptyPastDims,
    [1, 2, 0, 32],
  );
});

// ---------------------------------------------------------------- the loop

test("the prompt is prefilled once, then one token per run with the cache fed back", async () => {
  const { lm, runs } = scriptedLm(spell("hello"));
  const r = await generate(lm, bytes, "abc", { maxNewTokens: 5, adapter: "code" });
  assert.equal(r.text, "hello");
  assert.deepEqual(r.promptTokenIds, spell("abc"));
  assert.equal(r.finishReason, "length");
  assert.equal(runs.length, 5); // prefill + 4 steps: the 5th token needs no run
  assert.deepEqual(runs[0], {
    inputIds: spell("abc"),
    attentionMaskLength: 3,
    positionIds: [0, 1, 2],
    useCacheBranch: undefined,
    pastLength: 0,
    adapter: "code",
  });
  runs.slice(1).forEach((run, i) => {
    assert.deepEqual(run.inputIds, [spell("hello")[i]]);
    assert.equal(run.pastLength, 3 + i);
    assert.equal(run.attentionMaskLength, 4 + i);
    assert.deepEqual(run.positionIds, [3 + i]);
  });
  assert.equal(r.timings.decodeRuns, 4);
});

test("merged decoders get use_cache_branch; position_ids only when the model has it", async () => {
  const merged = scriptedLm(spell("xy"), { merged: true, positionIds: false });
  const r = await generate(merged.lm, bytes, "ab", { maxNewTokens: 2 });
  assert.equal(r.text, "xy");
  assert.deepEqual(merged.runs.map((run) => run.useCacheBranch), [false, true]);
  assert.deepEqual(merged.runs.map((run) => run.positionIds), [undefined, undefined]);
});

test("a model without cache inputs is rerun on the whole sequence", async () => {
  const { lm, runs } = scriptedLm(spell("xyz"), { cache: false });
  const r = await generate(lm, bytes, "ab", { maxNewTokens: 3 });
  assert.equal(r.text, "xyz");
  assert.deepEqual(runs.map((run) => run.inputIds.length), [2, 3, 4]);
});

test("eos ends generation and is not emitted; maxNewTokens 0 runs nothing; the context caps length", async () => {
  const eos = scriptedLm([...spell("ok"), 2, 65]);
  const r = await generate(eos.lm, bytes, "q", { maxNewTokens: 10, eosTokenId: 2 });
  assert.deepEqual([r.text, r.tokenIds, r.finishReason], ["ok", spell("ok"), "eos"]);
  assert.equal(eos.runs.length, 3);
  // The default eos comes from config.json.
  const fromConfig = scriptedLm([65, 7], {
    config: { num_attention_heads: 1, hidden_size: 1, eos_token_id: [7] },
  });
  assert.equal((await generate(fromConfig.lm, bytes, "q", { maxNewTokens: 10 })).text, "A");

  const none = scriptedLm([65]);
  const empty = await generate(none.lm, bytes, "q", { maxNewTokens: 0 });
  assert.deepEqual([empty.text, empty.finishReason, none.runs.length], ["", "length", 0]);

  const small = scriptedLm([65], { config: { num_attention_heads: 1, hidden_size: 1, max_position_embeddings: 8 } });
  const capped = await generate(small.lm, bytes, "abcde", { maxNewTokens: 100 });
  assert.deepEqual([capped.text, capped.finishReason], ["AAA", "length"]);
  assert.ok(small.runs.every((run) => (run.attentionMaskLength ?? 0) <= 8));
});

test("stop strings end generation right away and are not emitted", async () => {
  const { lm, runs } = scriptedLm(spell("hello\n\nworld"));
  const r = await generate(lm, bytes, "q", { maxNewTokens: 50, stop: ["\n\n", "zzz"] });
  assert.deepEqual([r.text, r.finishReason], ["hello", "stop"]);
  assert.equal(r.tokenIds.length, 7); // up to the token that completed "\n\n"
  assert.equal(runs.length, 7);
  const pieces: string[] = [];
  for await (const p of stream(lm, bytes, "q", { maxNewTokens: 50, stop: "o\n" })) pieces.push(p);
  assert.equal(pieces.join(""), "hell");
});

test("streaming yields whole characters only, and exactly generate's text", async () => {
  const text = "€ 🙂 日本";
  const { lm } = scriptedLm(spell(text));
  const pieces: string[] = [];
  const it = stream(lm, bytes, "q", { maxNewTokens: spell(text).length });
  let next = await it.next();
  while (!next.done) {
    pieces.push(next.value);
    next = await it.next();
  }
  assert.ok(pieces.every((p) => !p.includes("\uFFFD")));
  assert.equal(pieces.join(""), text);
  assert.equal(next.value.text, text);
  assert.equal((await generate(lm, bytes, "q", { maxNewTokens: spell(text).length })).text, text);
  // Cut off mid-character: the tail is U+FFFD in both.
  const cut = await generate(lm, bytes, "q", { maxNewTokens: 2 });
  assert.equal(cut.text, "\uFFFD");
});

test("abort stops within one step and rejects with the signal's reason", async () => {
  const controller = new AbortController();
  const { lm, runs } = scriptedLm(spell("abcdefghijklmnop"), {
    onRun: (i) => i === 3 && controller.abort(),
  });
  await assert.rejects(
    generate(lm, bytes, "q", { maxNewTokens: 16, signal: controller.signal }),
    (e: unknown) => (e as Error).name === "AbortError",
  );
  assert.equal(runs.length, 4); // the run in flight when abort came was the last

  const already = scriptedLm([65]);
  await assert.rejects(generate(already.lm, bytes, "q", { signal: AbortSignal.abort() }), { name: "AbortError" });
  assert.equal(already.runs.length, 0);
});

test("breaking out of a stream stops the model", async () => {
  const { lm, runs } = scriptedLm(spell("abcdefgh"));
  for await (const piece of stream(lm, bytes, "q", { maxNewTokens: 8 })) {
    if (piece === "c") break;
  }
  assert.equal(runs.length, 3);
});
