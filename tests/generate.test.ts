/**
 * Generation on the bundled demo model (examples/demo) and the tiny
 * fixtures: reference greedy outputs byte for byte, seeded sampling, the
 * KV cache against full recomputation, streaming, stop/eos, abort, context.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { fromPretrained, GenerationError, loadBaseModel, Tensor } from "../mod.ts";
import { type CausalLm, generate, loadGenerationConfig, stream } from "../src/generate/mod.ts";
import { localSource } from "../src/storage/local.ts";
import { loadTokenizer } from "../src/tokenizer/mod.ts";

const DEMO = "examples/demo/byte-llama";
const decoder = new TextDecoder();

interface Reference {
  prompt: string;
  variant: "base" | "adapter";
  prompt_ids: number[];
  generated_ids: number[];
  text: string;
}

/** Wraps a model to record the input_ids length of every run. */
function counted(model: CausalLm) {
  const fed: number[] = [];
  const lm: CausalLm = {
    inputNames: model.inputNames,
    outputNames: model.outputNames,
    config: model.config,
    run(feeds, options) {
      fed.push(feeds.input_ids.dims[1]);
      return model.run(feeds, options);
    },
  };
  return { lm, fed };
}

const base = await loadBaseModel(DEMO);
const adapted = await fromPretrained(base, "examples/demo/byte-llama-python-lora");
const demo = counted(base);
const tokenizer = await loadTokenizer(base.source);
const references: Reference[] = JSON.parse(
  decoder.decode(await localSource("examples/demo").read("reference_generations.json")),
).generations;

test("greedy generation reproduces reference_generations.json byte for byte, base and adapter", async () => {
  const generationConfig = await loadGenerationConfig(base.source);
  assert.deepEqual(generationConfig, { bosTokenId: 1, eosTokenId: [2], doSample: false, maxNewTokens: 120 });
  assert.equal(references.length, 10);
  for (const ref of references) {
    const model = ref.variant === "base" ? base : adapted;
    const r = await generate(model, tokenizer, ref.prompt, { generationConfig });
    assert.deepEqual(r.promptTokenIds, ref.prompt_ids);
    assert.deepEqual(r.tokenIds, ref.generated_ids, `${ref.variant} ${JSON.stringify(ref.prompt)}`);
    assert.equal(r.text, ref.text);
    assert.equal(r.finishReason, "length");
  }
});

test("the prompt is prefilled once, then one token per run", async () => {
  demo.fed.length = 0;
  const r = await generate(demo.lm, tokenizer, "    return ", { maxNewTokens: 30 });
  assert.equal(r.tokenIds.length, 30);
  assert.deepEqual(demo.fed, [11, ...new Array(29).fill(1)]);
});

const SAMPLED = { maxNewTokens: 60, temperature: 0.9, topK: 40, topP: 0.95, repetitionPenalty: 1.1, seed: 42 };
// Pinned: the same text under Deno and Bun, run after run.
const SAMPLED_TEXT = "comfortable to possible him and much was a more time perfect";

test("seeded sampling is deterministic, and streaming yields exactly the same text", async () => {
  const a = await generate(demo.lm, tokenizer, "The ", SAMPLED);
  const b = await generate(demo.lm, tokenizer, "The ", SAMPLED);
  assert.equal(a.text, b.text);
  assert.equal(a.text, SAMPLED_TEXT);
  assert.notEqual(a.text, (await generate(demo.lm, tokenizer, "The ", { ...SAMPLED, seed: 43 })).text);
  const pieces: string[] = [];
  for await (const piece of stream(demo.lm, tokenizer, "The ", SAMPLED)) pieces.push(piece);
  assert.equal(pieces.join(""), a.text);
  assert.equal(pieces.length, 60); // ASCII text: one piece per byte
});

test("stop strings and eos end generation and are not emitted", async () => {
  // Greedy from "The " is "was a great deal of the same time ...".
  const stop = await generate(demo.lm, tokenizer, "The ", { maxNewTokens: 120, stop: [" of", "zzz"] });
  assert.deepEqual([stop.text, stop.finishReason], ["was a great deal", "stop"]);
  const eos = await generate(demo.lm, tokenizer, "The ", { maxNewTokens: 120, eosTokenId: 32 }); // space
  assert.deepEqual([eos.text, eos.finishReason, eos.tokenIds], ["was", "eos", [119, 97, 115]]);
});

test("abort stops generation within one step", async () => {
  const controller = new AbortController();
  demo.fed.length = 0;
  let pieces = 0;
  await assert.rejects(
    (async () => {
      for await (const _ of stream(demo.lm, tokenizer, "def ", { maxNewTokens: 100, signal: controller.signal })) {
        if (++pieces === 5) controller.abort();
      }
    })(),
    { name: "AbortError" },
  );
  assert.equal(pieces, 5);
  assert.equal(demo.fed.length, 5); // no run after the abort
});

test("prompts longer than the context are refused; generation stops at the context", async () => {
  await assert.rejects(generate(demo.lm, tokenizer, "x".repeat(512)), GenerationError);
  await assert.rejects(generate(demo.lm, tokenizer, ""), GenerationError);
  const r = await generate(demo.lm, tokenizer, "x".repeat(509), { maxNewTokens: 10 });
  assert.deepEqual([r.tokenIds.length, r.finishReason], [3, "length"]);
});

/** The same model with its cache inputs hidden: every step reruns the whole sequence. */
function withoutCache(lm: CausalLm): CausalLm {
  const past = lm.inputNames.filter((n) => n.startsWith("past_key_values."));
  const { n_head, num_key_value_heads, num_attention_heads, n_embd, hidden_size } = lm.config as Record<string, number>;
  const heads = num_key_value_heads ?? num_attention_heads ?? n_head;
  const headDim = (hidden_size ?? n_embd) / (num_attention_heads ?? n_head);
  return {
    inputNames: lm.inputNames.filter((n) => !past.includes(n)),
    outputNames: ["logits"],
    config: lm.config,
    run(feeds) {
      const full = { ...feeds };
      for (const name of past) full[name] = new Tensor("float32", new Float32Array(0), [1, heads, 0, headDim]);
      return lm.run(full);
    },
  };
}

for (const fixture of ["llama-tiny", "gpt2-tiny"]) {
  test(`${fixture}: generation with the KV cache equals full recomputation`, async () => {
    const lm = await loadBaseModel(`tests/fixtures/${fixture}`);
    const options = { maxNewTokens: 24, temperature: 1, topK: 0, seed: 5 };
    const cached = await generate(lm, tokenizer, "Hello, edge", options);
    const recomputed = await generate(withoutCache(lm), tokenizer, "Hello, edge", options);
    assert.equal(cached.tokenIds.length, 24);
    assert.deepEqual(cached.tokenIds, recomputed.tokenIds);
  });
}
