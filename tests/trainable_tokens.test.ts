/**
 * Trainable tokens (`trainable_token_indices`) in dynamic mode, against real
 * PEFT on inputs that hold the tokens (tests/fixtures/real/tokens, made by
 * tests/fixtures/make/tokens.py): an untied Llama (dict and list forms) and
 * Gemma3, whose tied lm_head PEFT changes too, on both exporters. Switching
 * between the adapter and the base creates no session and gives PEFT's logits
 * each way; a mixed batch gives each row its own; greedy generation gives
 * PEFT's `generate` tokens (also through the KV cache of tokens/llama-kv);
 * converted files and a tied weight folded into one initializer work too.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import {
  AdapterConfigError,
  type Feeds,
  fromPretrained,
  loadBaseModel,
  memorySource,
  type PeftModel,
  Tensor,
  UnsupportedError,
} from "../mod.ts";
import { GraphProtoSchema, ModelProtoSchema, NodeProtoSchema } from "../src/deps/onnx_proto.ts";
import { makeNode } from "../src/onnx/graph_parts.ts";
import { decodeModel, encodeModel } from "../src/onnx/model_file.ts";
import { edited } from "../src/onnx/proto_edit.ts";
import { generate, generateBatch, type TokenizerLike } from "../src/generate/mod.ts";
import { BASE_ADAPTER } from "../src/model/peft_model.ts";
import { parseSafetensors } from "../src/safetensors/mod.ts";
import {
  adapterAtol,
  baseNamed,
  comparedDiff,
  type RealExpected,
  realExpected,
  realManifest,
  realPath,
} from "./support/real_fixtures.ts";
import { sessionsCreated } from "./support/sessions.ts";

const ATOL = 1e-4;
const manifest = await realManifest();
const cases = JSON.parse(await readFile(realPath("tokens/cases.json"), "utf8")) as {
  name: string;
  adapter: string;
  arch: string;
  tokens: number[];
  delta_from_base: number;
}[];

interface TokensExpected {
  feeds: Feeds;
  peft: RealExpected;
  base: RealExpected;
  genPrompt: number[];
  genIds: number[];
  baseGenIds: number[];
}

async function tokensExpected(name: string): Promise<TokensExpected> {
  const st = parseSafetensors(new Uint8Array(await readFile(realPath(`tokens/${name}.safetensors`))));
  const feeds: Feeds = {};
  for (const n of ["input_ids", "attention_mask", "position_ids"]) {
    feeds[n] = new Tensor("int64", st.toTypedArray(n) as BigInt64Array, st.get(n).shape);
  }
  const mask = st.toTypedArray("attention_mask") as BigInt64Array;
  const dims = st.get("logits").shape;
  const ids = (key: string) => [...(st.toTypedArray(key) as BigInt64Array)].map(Number);
  return {
    feeds,
    peft: { feeds, mask, logits: st.toFloat32("logits"), dims },
    base: { feeds, mask, logits: st.toFloat32("base_logits"), dims },
    genPrompt: ids("gen_prompt"),
    genIds: ids("gen_ids"),
    baseGenIds: ids("base_gen_ids"),
  };
}

/** Rows `[row, row + 1)` of `[batch, seq, vocab]` logits and of the expected data, compared where the mask is 1. */
function rowDiff(actual: Float32Array, e: RealExpected, row: number): number {
  const [, seq, vocab] = e.dims;
  let max = 0;
  for (let s = 0; s < seq; s++) {
    if (e.mask[row * seq + s] === 0n) continue;
    for (let v = 0; v < vocab; v++) {
      const i = (row * seq + s) * vocab + v;
      const d = Math.abs(actual[i] - e.logits[i]);
      if (!(d <= max)) max = d;
    }
  }
  return max;
}

const ids: TokenizerLike = { encode: () => [], decode: (t) => t.join(" ") };

for (const c of cases) {
  for (const exporter of ["torchscript", "dynamo"]) {
    const base = baseNamed(manifest, `${c.arch}-${exporter}`);
    test(`${c.name} on ${base.name} dynamic: PEFT's logits with the adapter, the base's without, no new session`, async () => {
      const model = await loadBaseModel(realPath(base.path));
      const peft = await fromPretrained(model, realPath(c.adapter), { adapterName: "tokens", onWarning: () => {} });
      try {
        const e = await tokensExpected(c.name);
        assert.ok(comparedDiff(base, e.peft, e.base.logits) > 1e-2, "the tokens change these logits");
        const created = await sessionsCreated(async () => {
          for (const adapter of ["tokens", null, "tokens", null]) {
            const out = (await peft.run(e.feeds, { adapter })).logits.data as Float32Array;
            const diff = comparedDiff(base, adapter ? e.peft : e.base, out);
            assert.ok(diff < ATOL, `${adapter ?? "base"}: max abs diff ${diff}`);
          }
          {
            using _off = peft.disableAdapter();
            const out = (await peft.run(e.feeds)).logits.data as Float32Array;
            assert.ok(comparedDiff(base, e.base, out) < ATOL, "disabled: the base");
          }
        });
        assert.equal(created, 0, "switching creates no session");
        // Mixed batch: each row with and without the adapter, in both orders. A row without it goes through
        // the branched graph (padding id -1, LoRA rank padded with zeros) and is the base session's bit for bit.
        const plain = (await model.run(e.feeds)).logits.data as Float32Array;
        const perRow = plain.length / 2;
        for (const names of [["tokens", BASE_ADAPTER], [BASE_ADAPTER, "tokens"]]) {
          const out = (await peft.run(e.feeds, { adapterNames: names })).logits.data as Float32Array;
          names.forEach((name, row) => {
            const diff = rowDiff(out, name === BASE_ADAPTER ? e.base : e.peft, row);
            assert.ok(diff < ATOL, `row ${row} (${name}): max abs diff ${diff}`);
            const slice = (t: Float32Array) => [...t.subarray(row * perRow, (row + 1) * perRow)];
            if (name === BASE_ADAPTER) assert.deepEqual(slice(out), slice(plain), `row ${row}: the base exactly`);
          });
        }
      } finally {
        await peft.release();
        await model.release();
      }
    });

    test(`${c.name} on ${base.name} dynamic: greedy generation gives PEFT's tokens, alone and in a mixed batch`, async () => {
      const model = await loadBaseModel(realPath(base.path));
      const peft = await fromPretrained(model, realPath(c.adapter), { adapterName: "tokens", onWarning: () => {} });
      try {
        const e = await tokensExpected(c.name);
        const options = { maxNewTokens: e.genIds.length, temperature: 0, eosTokenId: [] };
        const alone = await generate(peft, ids, e.genPrompt, options);
        assert.deepEqual(alone.tokenIds, e.genIds);
        const plain = await generate(peft, ids, e.genPrompt, { ...options, adapter: null });
        assert.deepEqual(plain.tokenIds, e.baseGenIds);
        const batch = await generateBatch(peft, ids, [e.genPrompt, e.genPrompt], {
          ...options,
          adapterNames: [BASE_ADAPTER, "tokens"],
        });
        assert.deepEqual(batch.map((r) => r.tokenIds), [e.baseGenIds, e.genIds]);
      } finally {
        await peft.release();
        await model.release();
      }
    });
  }
}

for (const c of cases.filter((x) => x.arch === "llama")) {
  test(`${c.name} on a KV-cache export (llama-kv) dynamic: greedy generation through the incremental decoder gives PEFT's tokens`, async () => {
    const model = await loadBaseModel(realPath("tokens/llama-kv"));
    const peft = await fromPretrained(model, realPath(c.adapter), { adapterName: "tokens", onWarning: () => {} });
    try {
      assert.ok(peft.inputNames.some((n) => n.startsWith("past_key_values.")), "the export has a KV cache");
      const e = await tokensExpected(c.name);
      const options = { maxNewTokens: e.genIds.length, temperature: 0, eosTokenId: [] };
      const created = await sessionsCreated(async () => {
        assert.deepEqual((await generate(peft, ids, e.genPrompt, options)).tokenIds, e.genIds);
        assert.deepEqual(
          (await generate(peft, ids, e.genPrompt, { ...options, adapter: null })).tokenIds,
          e.baseGenIds,
        );
        const batch = await generateBatch(peft, ids, [e.genPrompt, e.genPrompt, e.genPrompt], {
          ...options,
          adapterNames: ["tokens", BASE_ADAPTER, "tokens"],
        });
        assert.deepEqual(batch.map((r) => r.tokenIds), [e.genIds, e.baseGenIds, e.genIds]);
      });
      assert.equal(created, 0, "generation creates no session");
    } finally {
      await peft.release();
      await model.release();
    }
  });
}

/**
 * Converted files: the tolerance rule's atol for this adapter and file (adapterAtol) is measured on the shared
 * inputs; on these, merged mode itself lands just above it on fp16 (1.02x), so fp16 is held to twice it.
 * (The dynamo q4 file loses q_proj's module path and is refused whole: see EXPECTED_FAILURES.)
 */
const CONVERTED: ReadonlyArray<[base: string, file: string]> = [
  ["llama-torchscript", "onnx/model_fp16.onnx"],
  ["llama-torchscript", "onnx/model_q4.onnx"],
  ["llama-dynamo", "onnx/model_fp16.onnx"],
  // quantize_dynamic's 8-bit embedding: the rows are replaced after its DequantizeLinear.
  ["llama-torchscript", "onnx/model_quantized.onnx"],
  ["llama-dynamo", "onnx/model_quantized.onnx"],
];
for (const [baseName, file] of CONVERTED) {
  test(`llama-trainable-tokens on ${baseName} ${file} dynamic: PEFT's logits within the file's tolerance`, async () => {
    const base = baseNamed(manifest, baseName);
    const variant = base.variants.find((v) => v.file === file)!;
    const adapter = manifest.adapters.find((a) => a.name === "llama-trainable-tokens")!;
    const atol = adapterAtol(adapter, base, variant, "dynamic") * (variant.dtype.includes("fp16") ? 2 : 1);
    const model = await loadBaseModel(realPath(base.path), { file });
    const peft = await fromPretrained(model, realPath(adapter.path), { onWarning: () => {} });
    try {
      const e = await tokensExpected("llama-trainable-tokens");
      assert.ok(comparedDiff(base, e.peft, e.base.logits) > 2 * atol, "the tokens move these logits beyond the atol");
      const out = (await peft.run(e.feeds)).logits.data as Float32Array;
      const diff = comparedDiff(base, e.peft, out);
      assert.ok(diff < atol, `max abs diff ${diff} >= atol ${atol}`);
    } finally {
      await peft.release();
      await model.release();
    }
  });
}

test("gemma3-trainable-tokens on a tied weight folded into one initializer (read by the Gather and, transposed, by lm_head): PEFT's logits in both modes", async () => {
  // Some exports keep a tied weight once: rewrite the TorchScript export so lm_head reads Transpose(embedding).
  const base = baseNamed(manifest, "gemma3-torchscript");
  const onnx = decodeModel(await readFile(realPath(`${base.path}/onnx/model.onnx`)), "model.onnx");
  const graph = onnx.graph!;
  const head = graph.node.findIndex((n) => n.name === "/lm_head/MatMul");
  const own = graph.node[head].input[1];
  const transpose = makeNode("Transpose", ["model.embed_tokens.weight"], ["/lm_head/W_t"], "/lm_head/Transpose", {
    perm: [1, 0],
  });
  const matmul = edited(NodeProtoSchema, graph.node[head], { input: [graph.node[head].input[0], "/lm_head/W_t"] });
  const folded = edited(ModelProtoSchema, onnx, {
    graph: edited(GraphProtoSchema, graph, {
      node: [...graph.node.slice(0, head), transpose, matmul, ...graph.node.slice(head + 1)],
      initializer: graph.initializer.filter((t) => t.name !== own),
    }),
  });
  const model = await loadBaseModel(memorySource("folded-gemma3", {
    "config.json": await readFile(realPath(`${base.path}/config.json`)),
    "onnx/model.onnx": encodeModel(folded),
  }));
  assert.equal(model.weights.resolve("lm_head")?.initializer, model.weights.resolve("model.embed_tokens")?.initializer);
  try {
    const e = await tokensExpected("gemma3-trainable-tokens");
    for (const mode of ["dynamic", "merged"] as const) {
      const peft = await fromPretrained(model, realPath("extra/gemma3-trainable-tokens"), {
        mode,
        onWarning: () => {},
      });
      try {
        const out = (await peft.run(e.feeds)).logits.data as Float32Array;
        assert.ok(comparedDiff(base, e.peft, out) < ATOL, `${mode}: max abs diff ${comparedDiff(base, e.peft, out)}`);
        const off = (await peft.run(e.feeds, { adapter: null })).logits.data as Float32Array;
        assert.ok(comparedDiff(base, e.base, off) < ATOL, `${mode}: the base without the adapter`);
      } finally {
        await peft.release();
      }
    }
  } finally {
    await model.release();
  }
});

test("trainable tokens: two active adapters with tokens on one embedding are refused (PEFT sets one at a time)", async () => {
  const c = cases.find((x) => x.name === "llama-trainable-tokens")!;
  const other = cases.find((x) => x.name === "llama-trainable-tokens-list")!;
  const model = await loadBaseModel(realPath(baseNamed(manifest, "llama-torchscript").path));
  let peft: PeftModel | undefined;
  try {
    peft = await fromPretrained(model, realPath(c.adapter), { adapterName: "a", onWarning: () => {} });
    await peft.loadAdapter(realPath(other.adapter), "b", { onWarning: () => {} });
    const e = await tokensExpected(c.name);
    await assert.rejects(
      () => peft!.run(e.feeds, { adapter: ["a", "b"] }),
      (err) => err instanceof UnsupportedError && /one adapter at a time/.test(err.message),
    );
    // Each alone still runs; a mixed batch pads the shorter token list (2 ids beside 3) with the padding id.
    const e2 = await tokensExpected(other.name);
    const mixed: Feeds = {};
    for (const [name, t] of Object.entries(e.feeds)) {
      const half = t.size / 2;
      const data = new BigInt64Array(t.size);
      data.set((t.data as BigInt64Array).subarray(0, half));
      data.set((e2.feeds[name].data as BigInt64Array).subarray(half), half);
      mixed[name] = new Tensor("int64", data, t.dims);
    }
    const rows = (await peft.run(mixed, { adapterNames: ["a", "b"] })).logits.data as Float32Array;
    assert.ok(rowDiff(rows, e.peft, 0) < ATOL, `row 0 (a): ${rowDiff(rows, e.peft, 0)}`);
    assert.ok(rowDiff(rows, e2.peft, 1) < ATOL, `row 1 (b): ${rowDiff(rows, e2.peft, 1)}`);
    const out = (await peft.run(e.feeds, { adapter: "a" })).logits.data as Float32Array;
    assert.ok(comparedDiff(baseNamed(manifest, "llama-torchscript"), e.peft, out) < ATOL);
  } finally {
    await peft?.release();
    await model.release();
  }
});

test("trainable tokens: training an untied embedding's rows runs; a tied lm_head's is refused with a typed error", async () => {
  // Checked step by step against PyTorch + PEFT in tests/train.test.ts (llama-qv-tokens-adamw).
  const c = cases.find((x) => x.name === "llama-trainable-tokens")!;
  const model = await loadBaseModel(realPath(baseNamed(manifest, "llama-torchscript").path));
  const tied = cases.find((x) => x.name === "gemma3-trainable-tokens")!;
  const gemma = await loadBaseModel(realPath(baseNamed(manifest, "gemma3-torchscript").path));
  try {
    const trained = await fromPretrained(model, realPath(c.adapter), { isTrainable: true, onWarning: () => {} });
    const { loss } = await trained.trainer({ optimizer: "sgd", learningRate: 0.1 }).step({ inputIds: [[1, 5, 9, 12]] });
    assert.ok(Number.isFinite(loss));
    assert.ok(trained.getNbTrainableParameters().trainable > 0);
    await trained.release();
    await assert.rejects(
      () => fromPretrained(gemma, realPath(tied.adapter), { isTrainable: true, onWarning: () => {} }),
      (err) => err instanceof UnsupportedError && /tied lm_head/.test(err.message),
    );
  } finally {
    await model.release();
    await gemma.release();
  }
});

/** PEFT's verdict on a folder of tests/fixtures/real/tokens (made by tokens.py). */
async function tokensVerdict(name: string): Promise<{ outcome: string; exception?: string; message?: string }> {
  return JSON.parse(await readFile(realPath(`tokens/${name}/verdict.json`), "utf8"));
}

for (const mode of ["dynamic", "merged"] as const) {
  test(`trainable tokens ${mode}: PEFT's errors for a LoRA or modules_to_save on the tokens' own embedding in one config`, async () => {
    const model = await loadBaseModel(realPath(baseNamed(manifest, "llama-torchscript").path));
    try {
      for (
        const [name, exception, why] of [
          ["lora-and-tokens", "TypeError", /target_modules also adapts with LoRA; PEFT .* raises TypeError/],
          ["lora-and-tokens-no-rows", "TypeError", /target_modules also adapts with LoRA; PEFT .* raises TypeError/],
          [
            "tokens-and-modules-to-save",
            "ValueError",
            /in modules_to_save and in trainable_token_indices; PEFT raises ValueError/,
          ],
        ] as const
      ) {
        const verdict = await tokensVerdict(name);
        assert.equal(verdict.outcome, "raises");
        assert.equal(verdict.exception, exception);
        await assert.rejects(
          () => fromPretrained(model, realPath(`tokens/${name}`), { mode, onWarning: () => {} }),
          (err) => err instanceof AdapterConfigError && err.key === "trainable_token_indices" && why.test(err.message),
          name,
        );
      }
    } finally {
      await model.release();
    }
  });

  test(`trainable tokens ${mode}: PEFT's errors for a LoRA and tokens on one embedding from two adapters, either order; the model stays as it was`, async () => {
    const tokens = cases.find((x) => x.name === "llama-trainable-tokens")!;
    const base = baseNamed(manifest, "llama-torchscript");
    const model = await loadBaseModel(realPath(base.path));
    const embed = await realExpected("adapters/llama-embed", base.inputs);
    const e = await tokensExpected(tokens.name);
    try {
      for (
        const [first, second, why] of [
          [tokens.adapter, "adapters/llama-embed", /has a LoRA on model\.embed_tokens, which carries .* ValueError/],
          ["adapters/llama-embed", tokens.adapter, /has trainable tokens on model\.embed_tokens, .* TypeError/],
        ] as const
      ) {
        const peft = await fromPretrained(model, realPath(first), { mode, adapterName: "first", onWarning: () => {} });
        try {
          await assert.rejects(
            () => peft.loadAdapter(realPath(second), "second", { onWarning: () => {} }),
            (err) => err instanceof AdapterConfigError && why.test(err.message),
          );
          assert.deepEqual(peft.listAdapters(), ["first"]);
          const [want, feeds] = first === tokens.adapter ? [e.peft, e.feeds] : [embed, embed.feeds];
          const out = (await peft.run(feeds)).logits.data as Float32Array;
          assert.ok(comparedDiff(base, want, out) < ATOL, `${first} still runs: ${comparedDiff(base, want, out)}`);
        } finally {
          await peft.release();
        }
      }
    } finally {
      await model.release();
    }
  });
}

interface WeightedTokens {
  sources: Record<string, string>;
  cases: {
    name: string;
    adapters: string[];
    weights: number[];
    combination_type: "cat" | "linear";
    trainable_token_indices: number[] | Record<string, number[]>;
    token_indices: number[];
    rows_are_base: boolean;
  }[];
}

for (const mode of ["dynamic", "merged"] as const) {
  test(`trainable tokens ${mode}: addWeightedAdapter does what PEFT's does (first source's indices, the base's rows) and says so`, async () => {
    const spec = JSON.parse(await readFile(realPath("tokens/weighted.json"), "utf8")) as WeightedTokens;
    const st = parseSafetensors(new Uint8Array(await readFile(realPath("tokens/weighted.safetensors"))));
    const base = baseNamed(manifest, "llama-torchscript");
    const feeds: Feeds = {};
    for (const n of ["input_ids", "attention_mask", "position_ids"]) {
      feeds[n] = new Tensor("int64", st.toTypedArray(n) as BigInt64Array, st.get(n).shape);
    }
    const expected = (key: string): RealExpected => ({
      feeds,
      mask: st.toTypedArray("attention_mask") as BigInt64Array,
      logits: st.toFloat32(key),
      dims: st.get(key).shape,
    });
    const model = await loadBaseModel(realPath(base.path));
    const [[first, folder], ...rest] = Object.entries(spec.sources);
    const peft = await fromPretrained(model, realPath(folder), { mode, adapterName: first, onWarning: () => {} });
    try {
      for (const [name, path] of rest) await peft.loadAdapter(realPath(path), name, { onWarning: () => {} });
      for (const c of spec.cases) {
        assert.ok(c.rows_are_base, "PEFT starts the new adapter's rows as the base's");
        const warnings: string[] = [];
        await peft.addWeightedAdapter(c.adapters, c.weights, c.name, {
          combinationType: c.combination_type,
          onWarning: (m) => warnings.push(m),
        });
        assert.equal(warnings.length, 1, c.name);
        assert.match(warnings[0], /does not combine trainable tokens .*base's rows/, c.name);
        assert.deepEqual(
          (peft.peftConfig[c.name] as { trainableTokenIndices: unknown }).trainableTokenIndices,
          c.trainable_token_indices,
        );
        const want = expected(`${c.name}.logits`);
        assert.ok(comparedDiff(base, want, expected("base_logits").logits) > 1e-2, "the LoRA part moves the logits");
        const out = (await peft.run(feeds, { adapter: c.name })).logits.data as Float32Array;
        assert.ok(comparedDiff(base, want, out) < ATOL, `${c.name}: max abs diff ${comparedDiff(base, want, out)}`);
      }
    } finally {
      await peft.release();
      await model.release();
    }
  });
}
