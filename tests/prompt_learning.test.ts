/**
 * Prompt tuning, P-tuning and prefix tuning (tests/fixtures/prompt, made by
 * the real PEFT with tests/fixtures/make/prompt_learning.py): through the
 * public API, both modes give PEFT's forward logits (virtual positions
 * included) at 1e-4 and PEFT's greedy `generate` tokens, alone and in a
 * left-padded batch; a server completion equals PEFT's; PEFT's config
 * refusals and what does not fit the base are refused with typed errors.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { type BaseModel, fromPretrained, loadBaseModel, type PeftModel } from "../mod.ts";
import { Tensor } from "../src/deps/ort.ts";
import { AdapterConfigError, AdapterMismatchError, type PeftEdgeError, UnsupportedError } from "../src/errors.ts";
import { generate, type TokenizerLike } from "../src/generate/mod.ts";
import { firstRunFeeds } from "./support/decoder_feeds.ts";
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  create,
  type GraphProto,
  GraphProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  NodeProtoSchema,
  ValueInfoProtoSchema,
} from "../src/deps/onnx_proto.ts";
import { makeNode, tensorValueInfo } from "../src/onnx/graph_parts.ts";
import { decodeModel, encodeModel } from "../src/onnx/model_file.ts";
import { edited } from "../src/onnx/proto_edit.ts";
import { memorySource } from "../src/storage/memory.ts";
import { call, DEMO_ADAPTER, loadDemo, withService } from "./support/server_setup.ts";

interface PromptCase {
  name: string;
  peft_type: string;
  path: string;
  base: string;
  outcome: "loads";
  logits_shape: number[];
  delta_from_base: number;
  generate_raises?: string;
}

interface Generations {
  single: { prompt: number[]; tokens: number[] | null }[];
  batch?: { prompts: number[][]; tokens: number[][] };
  text?: { prompt: string; ids: number[]; tokens: number[]; completion: string };
}

const FIXTURES = "tests/fixtures/prompt";
const manifest = JSON.parse(await readFile(`${FIXTURES}/manifest.json`, "utf8")) as {
  cases: PromptCase[];
  refused_configs: { name: string; config: Record<string, unknown>; outcome: string; message: string }[];
};
const LONG = { timeout: 120_000 };
const IDS_ONLY: TokenizerLike = { encode: () => [], decode: (ids) => ids.join(" ") };

/** PEFT runs these; peft-edge refuses them, with why. */
const REFUSED: ReadonlyMap<string, RegExp> = new Map([
  // A cache-less export has no input to take a prefix (and PEFT's own generate fails there too).
  ["llama-torchscript-prefix-tuning", /no past_key_values inputs/],
]);

const bases = new Map<string, Promise<BaseModel>>();
function base(path: string): Promise<BaseModel> {
  if (!bases.has(path)) bases.set(path, loadBaseModel(path));
  return bases.get(path)!;
}
after(async () => {
  for (const b of bases.values()) await (await b).release();
});

/** The fixture's batch as the base takes it (an empty past where it has one). */
async function expected(c: PromptCase, model: { inputNames: readonly string[]; config: Record<string, unknown> }) {
  const { st, feeds } = await firstRunFeeds(`${FIXTURES}/${c.path}/expected.safetensors`, model);
  return { feeds, mask: st.toTypedArray("attention_mask") as BigInt64Array, logits: st.toFloat32("logits") };
}

/** Max abs difference over the virtual positions and the real ones with attention_mask 1. */
function diff(c: PromptCase, mask: BigInt64Array, want: Float32Array, got: Float32Array): number {
  assert.equal(got.length, want.length, `${c.name}: logits have ${got.length} values, PEFT's ${want.length}`);
  const [rows, positions, vocab] = c.logits_shape;
  const length = mask.length / rows;
  const virtual = positions - length;
  let max = 0;
  for (let r = 0; r < rows; r++) {
    for (let p = 0; p < positions; p++) {
      if (p >= virtual && mask[r * length + p - virtual] === 0n) continue;
      for (let v = 0; v < vocab; v++) {
        const i = (r * positions + p) * vocab + v;
        const d = Math.abs(got[i] - want[i]);
        if (!(d <= max)) max = d;
      }
    }
  }
  return max;
}

async function generations(c: PromptCase): Promise<Generations> {
  return JSON.parse(await readFile(`${FIXTURES}/${c.path}/generations.json`, "utf8"));
}

async function withModel(c: PromptCase, mode: "dynamic" | "merged", fn: (m: PeftModel) => Promise<void>) {
  const model = await fromPretrained(await base(c.base), `${FIXTURES}/${c.path}`, {
    mode,
    onWarning: (m) => assert.fail(m),
  });
  try {
    await fn(model);
  } finally {
    await model.release();
  }
}

for (const c of manifest.cases) {
  const refused = REFUSED.get(c.name);
  if (refused) {
    test(`prompt learning: ${c.name} is refused`, async () => {
      await assert.rejects(fromPretrained(await base(c.base), `${FIXTURES}/${c.path}`), (err: unknown) => {
        assert.ok(err instanceof UnsupportedError, `expected UnsupportedError, got ${err}`);
        assert.match(err.message, refused);
        return true;
      });
    });
    continue;
  }
  for (const mode of ["dynamic", "merged"] as const) {
    test(
      `prompt learning: ${c.name} ${mode}: PEFT's logits and greedy generations`,
      LONG,
      () =>
        withModel(c, mode, async (model) => {
          const e = await expected(c, model);
          const out = await model.run(e.feeds);
          assert.deepEqual(out.logits.dims, c.logits_shape);
          const d = diff(c, e.mask, e.logits, out.logits.data as Float32Array);
          console.log(
            `${c.name} ${mode}: max abs diff ${d.toExponential(2)} vs PEFT (adapter moves ${c.delta_from_base})`,
          );
          assert.ok(d <= 1e-4, `${c.name}: max abs diff ${d} vs PEFT`);
          const g = await generations(c);
          for (const { prompt, tokens } of g.single) {
            // The cache-less bases ship no tokenizer: ids in, ids out.
            const result = model.base.text.tokenizer
              ? await model.generate(prompt, { maxNewTokens: tokens!.length + 1 })
              : await generate(model, IDS_ONLY, prompt, { maxNewTokens: tokens!.length + 1 });
            assert.deepEqual(result.tokenIds.slice(0, tokens!.length), tokens, `${c.name}: greedy generate`);
          }
          if (g.batch) {
            const results = await model.generateBatch(g.batch.prompts, { maxNewTokens: 12 });
            assert.deepEqual(results.map((r) => r.tokenIds), g.batch.tokens, `${c.name}: batched greedy generate`);
          }
          if (g.text) {
            const result = await model.generate(g.text.prompt, { maxNewTokens: 12 });
            assert.deepEqual(result.promptTokenIds, g.text.ids);
            assert.deepEqual(result.tokenIds, g.text.tokens);
            assert.equal(result.text, g.text.completion);
          }
        }),
    );
  }
}

const DEMO = "examples/demo/byte-llama";
const TUNING = `${FIXTURES}/byte-llama-prompt-tuning`;
const savedConfig = async (folder: string) => JSON.parse(await readFile(`${folder}/adapter_config.json`, "utf8"));

test(
  "prompt learning: beside a LoRA adapter each runs alone; together, mixed batches and merging are refused",
  LONG,
  async () => {
    const demo = await base(DEMO);
    const c = manifest.cases.find((x) => x.name === "byte-llama-prompt-tuning")!;
    const model = await fromPretrained(demo, DEMO_ADAPTER, { adapterName: "py" });
    const alone = await fromPretrained(demo, DEMO_ADAPTER);
    try {
      await model.loadAdapter(TUNING, "prompt", { onWarning: (m) => assert.fail(m) });
      const e = await expected(c, model);
      const prompted = await model.run(e.feeds, { adapter: "prompt" });
      assert.ok(diff(c, e.mask, e.logits, prompted.logits.data as Float32Array) <= 1e-4);
      // The LoRA adapter and the base are untouched by the prompt adapter's presence.
      const lora = await model.run(e.feeds, { adapter: "py" });
      assert.deepEqual(lora.logits.data, (await alone.run(e.feeds)).logits.data);
      assert.deepEqual(
        (await model.run(e.feeds, { adapter: null })).logits.data,
        (await demo.run(e.feeds)).logits.data,
      );
      await assert.rejects(model.run(e.feeds, { adapter: ["py", "prompt"] }), UnsupportedError);
      await assert.rejects(model.run(e.feeds, { adapterNames: ["prompt", "py"] }), UnsupportedError);
      await assert.rejects(model.mergeAndUnload({ adapterNames: ["prompt"] }), /changes no weight/);
      await assert.rejects(model.addWeightedAdapter(["prompt"], [1], "w"), UnsupportedError);
      // PEFT counts the prompt encoder's embedding among all parameters.
      const withPrompt = model.getNbTrainableParameters().all;
      await model.deleteAdapter("prompt");
      assert.equal(withPrompt - model.getNbTrainableParameters().all, 4 * 128);
    } finally {
      await model.release();
      await alone.release();
    }
  },
);

test(
  "prompt learning: a server completion with a P-tuning adapter equals PEFT's generate (both pool modes)",
  LONG,
  async () => {
    const demo = await loadDemo();
    const c = manifest.cases.find((x) => x.name === "byte-llama-p-tuning-mlp")!;
    const g = await generations(c);
    try {
      for (const mode of ["merged", "dynamic"] as const) {
        await withService(demo, { pool: { mode } }, async (service) => {
          await service.pool.load("ptune", {
            kind: "local",
            path: fileURLToPath(new URL(`./fixtures/prompt/${c.path}`, import.meta.url)),
          });
          const reply = await call(service.url, "POST", "/v1/completions", {
            body: { model: "ptune", prompt: g.text!.prompt, max_tokens: 12, temperature: 0 },
          });
          assert.equal(reply.status, 200, JSON.stringify(reply.body));
          assert.equal(reply.body.choices[0].text, g.text!.completion, mode);
          // Fed in either mode: the pool counts the prompt (and its per-run copy), not a merged weight copy.
          assert.equal(service.pool.get("ptune")?.bytes, 2 * 4 * 4 * 128, mode);
        });
      }
    } finally {
      await demo.base.release();
    }
  },
);

test("prompt learning: PEFT's config refusals are refused with its words", async () => {
  const demo = await base(DEMO);
  const saved = await savedConfig(TUNING);
  for (const r of manifest.refused_configs) {
    assert.equal(r.outcome, "raises", r.name);
    const config = { ...saved, ...r.config };
    await assert.rejects(fromPretrained(demo, TUNING, { config }), (err: unknown) => {
      assert.ok(err instanceof AdapterConfigError, `${r.name}: expected AdapterConfigError, got ${err}`);
      assert.ok(err.message.endsWith(r.message), `${r.name}: ${err.message} vs PEFT's ${r.message}`);
      return true;
    });
  }
});

test("prompt learning: configs and tensors that do not fit are refused with typed errors", async () => {
  const demo = await base(DEMO);
  const saved = await savedConfig(TUNING);
  const refuses = async (config: Record<string, unknown>, type: typeof PeftEdgeError, pattern: RegExp) => {
    await assert.rejects(fromPretrained(demo, TUNING, { config, onWarning: () => {} }), (err: unknown) => {
      assert.ok(err instanceof type, `expected ${type.name}, got ${err}`);
      assert.match(err.message, pattern);
      return true;
    });
  };
  await refuses({ ...saved, task_type: "SEQ_2_SEQ_LM" }, UnsupportedError, /task_type "CAUSAL_LM" or "SEQ_CLS"/);
  await refuses({ ...saved, num_virtual_tokens: 5 }, AdapterMismatchError, /prompt_embeddings has shape \[4, 128\]/);
  await refuses({ ...saved, num_virtual_tokens: null }, AdapterConfigError, /num_virtual_tokens/);
  await refuses({ ...saved, num_virtual_tokens: 2.5 }, AdapterConfigError, /positive integer/);
  await refuses({ ...saved, prompt_tuning_init: "ZEROS" }, AdapterConfigError, /prompt_tuning_init must be one of/);
  await refuses({ ...saved, modules_to_save: ["lm_head"] }, UnsupportedError, /modules_to_save/);
  await refuses({ ...saved, num_transformer_submodules: 2 }, UnsupportedError, /num_transformer_submodules is 2/);
  await assert.rejects(fromPretrained(demo, TUNING, { isTrainable: true }), UnsupportedError);
  // On a base of another width.
  const small = await base("tests/fixtures/real/bases/llama-torchscript");
  await assert.rejects(
    fromPretrained(small, TUNING),
    /token_dim is 128, but the base's token embeddings have width 16/,
  );
  const prefix = `${FIXTURES}/byte-llama-prefix-tuning`;
  // PEFT re-derives the GQA split on load (head_dim = token_dim / num_attention_heads, times the base's 2 key/value
  // heads), so a wrong saved head count changes the prefix width and the saved tensor no longer fits.
  await assert.rejects(
    fromPretrained(demo, prefix, { config: { ...await savedConfig(prefix), num_attention_heads: 4 } }),
    (err: unknown) =>
      err instanceof AdapterMismatchError && /\[3, 512\], but the config gives \[3, 256\]/.test(err.message),
  );
  // A base whose config.json disagrees with its export's cache is refused before anything runs.
  const fake = await loadBaseModel(memorySource("byte-llama-wrong-config", {
    "config.json": new TextEncoder().encode(JSON.stringify({ ...demo.config, num_key_value_heads: 4, head_dim: 16 })),
    "onnx/model.onnx": await readFile(`${DEMO}/onnx/model.onnx`),
  }));
  try {
    await assert.rejects(
      fromPretrained(fake, prefix),
      (err: unknown) => err instanceof AdapterMismatchError && /takes 2 heads of size 32/.test(err.message),
    );
  } finally {
    await fake.release();
  }
  const ptune = `${FIXTURES}/byte-llama-p-tuning-mlp`;
  const ptuneConfig = await savedConfig(ptune);
  await assert.rejects(
    fromPretrained(demo, ptune, { config: { ...ptuneConfig, encoder_num_layers: "two" } }),
    (err: unknown) => err instanceof AdapterConfigError && /encoder_num_layers must be a number/.test(err.message),
  );
  await assert.rejects(
    fromPretrained(demo, prefix, { config: { ...await savedConfig(prefix), init_weights: "ones" } }),
    (err: unknown) => err instanceof AdapterConfigError && /init_weights must be one of "zero"/.test(err.message),
  );
  // Dimensions PEFT did not save come from the base's config.json, as PEFT's from_pretrained fills them; a saved
  // prefix config not yet GQA-adjusted (hidden 128, 4 heads) is adjusted to the 2 key/value heads the same way.
  const c = manifest.cases.find((x) => x.name === "byte-llama-prefix-tuning")!;
  for (
    const change of [{ num_layers: null, token_dim: null, num_attention_heads: null }, {
      token_dim: 128,
      num_attention_heads: 4,
    }]
  ) {
    const filled = await fromPretrained(demo, prefix, { config: { ...await savedConfig(prefix), ...change } });
    try {
      const e = await expected(c, filled);
      const d = diff(c, e.mask, e.logits, (await filled.run(e.feeds)).logits.data as Float32Array);
      assert.ok(d <= 1e-4, `${JSON.stringify(change)}: max abs diff ${d}`);
    } finally {
      await filled.release();
    }
  }
  // Unknown fields are ignored with a warning, as PEFT's config loading does.
  const warnings: string[] = [];
  const model = await fromPretrained(demo, TUNING, {
    config: { ...saved, future_field: 1 },
    onWarning: (m) => warnings.push(m),
  });
  await model.release();
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /ignoring unknown PromptTuningConfig fields future_field/);
});

/**
 * Optimum's merged-decoder layout of a base: an `If(use_cache_branch)` whose branches are the whole decoder
 * (intermediates renamed per branch), weights in the outer graph (as tests/fixtures/make/index_exports.py makes it).
 */
function underIf(model: ModelProto, options: { zeroNoCacheLogits?: boolean } = {}): ModelProto {
  const g = model.graph!;
  const branch = (tag: string) => {
    const rename = (x: string) => (g.node.some((n) => n.output.includes(x)) ? `${tag}/${x}` : x);
    const nodes = g.node.map((n) =>
      edited(NodeProtoSchema, n, { input: n.input.map(rename), output: n.output.map((o) => `${tag}/${o}`) })
    );
    // Each decoder output (logits, present.*) leaves the branch through an Identity.
    const outputs = g.output.map((o) => edited(ValueInfoProtoSchema, o, { name: `${tag}:${o.name}` }));
    for (const o of g.output) {
      const to = `${tag}:${o.name}`;
      if (options.zeroNoCacheLogits && tag === "else" && o.name === "logits") {
        // Optimum's no-cache branch ignores the past: here its logits are zeros, so a lost prefix shows.
        nodes.push(makeNode("Constant", [], [`${tag}/zero`], `${tag}/zero`, { value_float: { f: 0 } }));
        nodes.push(makeNode("Mul", [`${tag}/${o.name}`, `${tag}/zero`], [to], to));
      } else {
        nodes.push(makeNode("Identity", [`${tag}/${o.name}`], [to], to));
      }
    }
    return create(GraphProtoSchema, { name: tag, node: nodes, output: outputs });
  };
  const graphAttr = (name: string, graph: GraphProto) =>
    create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.GRAPH, g: graph });
  const ifNode = create(NodeProtoSchema, {
    opType: "If",
    name: "optimum::if",
    input: ["use_cache_branch"],
    output: g.output.map((o) => o.name),
    attribute: [graphAttr("then_branch", branch("then")), graphAttr("else_branch", branch("else"))],
  });
  const graph = edited(GraphProtoSchema, g, {
    node: [ifNode],
    input: [...g.input, tensorValueInfo("use_cache_branch", 9, [1])],
    valueInfo: [],
  });
  return edited(ModelProtoSchema, model, { graph });
}

test("prompt learning: a merged decoder (If) gets the prompt in both branches", LONG, async () => {
  const c = manifest.cases.find((x) => x.name === "llama-torchscript-prompt-tuning")!;
  const folder = c.base;
  const merged = underIf(decodeModel(new Uint8Array(await readFile(`${folder}/onnx/model.onnx`)), "model.onnx"));
  const source = memorySource("llama-merged", {
    "config.json": await readFile(`${folder}/config.json`),
    "onnx/model.onnx": encodeModel(merged),
  });
  const base = await loadBaseModel(source);
  const model = await fromPretrained(base, `${FIXTURES}/${c.path}`);
  try {
    const e = await expected(c, model);
    for (const branch of [true, false]) {
      const out = await model.run({ ...e.feeds, use_cache_branch: new Tensor("bool", [branch], [1]) });
      const d = diff(c, e.mask, e.logits, out.logits.data as Float32Array);
      assert.ok(d <= 1e-4, `use_cache_branch=${branch}: max abs diff ${d} vs PEFT`);
    }
  } finally {
    await model.release();
    await base.release();
  }
});

test(
  "prompt learning: converted and quantized files (fp16, q8, q4) run the prompt near PEFT's logits",
  LONG,
  async () => {
    const real = JSON.parse(await readFile("tests/fixtures/real/manifest.json", "utf8")) as {
      bases: { name: string; variants: { file: string; dtype: string; ort_max_abs_diff: number }[] }[];
    };
    for (const name of ["llama-torchscript-prompt-tuning", "llama-dynamo-p-tuning"]) {
      const c = manifest.cases.find((x) => x.name === name)!;
      const variants = real.bases.find((b) => `tests/fixtures/real/bases/${b.name}` === c.base)!.variants;
      for (const v of variants.filter((x) => x.dtype !== "fp32")) {
        const converted = await loadBaseModel(c.base, { file: v.file });
        const model = await fromPretrained(converted, `${FIXTURES}/${c.path}`);
        try {
          const e = await expected(c, model);
          const d = diff(c, e.mask, e.logits, (await model.run(e.feeds)).logits.data as Float32Array);
          // The file's own error on the base (onnxruntime vs torch), plus the prompt rounded to its dtype: 3x.
          const atol = Math.max(1e-4, 3 * v.ort_max_abs_diff);
          console.log(`${name} ${v.file}: max abs diff ${d.toExponential(2)} (atol ${atol.toExponential(2)})`);
          assert.ok(d <= atol && d < c.delta_from_base / 2, `${name} ${v.file}: ${d} vs PEFT`);
        } finally {
          await model.release();
          await converted.release();
        }
      }
    }
  },
);

test("prompt learning: on a merged decoder with a KV cache, the prefix takes the cache branch", LONG, async () => {
  const c = manifest.cases.find((x) => x.name === "byte-llama-prefix-tuning")!;
  const merged = underIf(decodeModel(new Uint8Array(await readFile(`${DEMO}/onnx/model.onnx`)), "model.onnx"), {
    zeroNoCacheLogits: true,
  });
  const files: Record<string, Uint8Array> = { "onnx/model.onnx": encodeModel(merged) };
  for (const f of ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]) {
    files[f] = new Uint8Array(await readFile(`${DEMO}/${f}`));
  }
  const base = await loadBaseModel(memorySource("byte-llama-merged", files));
  const model = await fromPretrained(base, `${FIXTURES}/${c.path}`);
  try {
    const e = await expected(c, model);
    // The no-cache branch is what a prefill asks for; with a prefix in the past it must run the cache branch.
    const out = await model.run({ ...e.feeds, use_cache_branch: new Tensor("bool", [false], [1]) });
    assert.ok(diff(c, e.mask, e.logits, out.logits.data as Float32Array) <= 1e-4);
    const g = await generations(c);
    const result = await model.generate(g.text!.prompt, { maxNewTokens: 12 });
    assert.deepEqual(result.tokenIds, g.text!.tokens);
  } finally {
    await model.release();
    await base.release();
  }
});
