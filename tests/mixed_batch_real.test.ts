import { test } from "node:test";
import assert from "node:assert/strict";
import { fromPretrained, loadBaseModel, type Tensor } from "../mod.ts";
import { BASE_ADAPTER } from "../src/model/peft_model.ts";
import {
  adapterAtol,
  baseNamed,
  comparedDiff,
  type RealExpected,
  realExpected,
  realManifest,
  realPath,
} from "./support/real_fixtures.ts";
import { concatRows } from "./support/batch_rows.ts";

/**
 * Real PEFT adapters that dynamic mode runs, per base: different ranks and
 * targets, embeddings, DoRA, trained biases (qwen2; gpt2 and bert with
 * `bias: "all"`, norms included), modules_to_save (bert's classifier),
 * Conv1D/Gemm (gpt2) and flattened dynamo projections (gpt2, opt) that branch
 * through `[rows, n, in]`.
 */
const CASES: ReadonlyArray<[base: string, adapters: string[]]> = [
  ["llama-torchscript", [
    "llama-lora-attn",
    "llama-dora",
    "llama-rslora",
    "llama-rank-pattern",
    "llama-embed",
    "llama-lora-all-linear",
    "llama-layers",
    "llama-regex",
  ]],
  ["llama-dynamo", ["llama-lora-attn", "llama-dora", "llama-embed", "llama-rank-pattern"]],
  ["qwen2-torchscript", ["qwen2-bias-lora-only", "qwen2-lora-attn", "qwen2-lora-all-linear"]],
  ["gpt2-torchscript", ["gpt2-lora-attn", "gpt2-embed", "gpt2-bias-all", "gpt2-lora-all-linear"]],
  ["gpt2-dynamo", ["gpt2-lora-attn", "gpt2-bias-all", "gpt2-embed", "gpt2-lora-all-linear"]],
  // Each adapter's own classifier (modules_to_save) and trained biases (norms included) per row.
  ["bert-torchscript", ["bert-lora-attn", "bert-lora-bias-all", "bert-lora-all-linear"]],
  ["bert-dynamo", ["bert-lora-bias-all", "bert-lora-attn", "bert-lora-all-linear"]],
  ["opt-dynamo", ["opt-dora-all-linear", "opt-lora-attn"]],
];

/** Rows `[from, from + count)` of a `[batch, seq, vocab]` logits tensor. */
function rowsOf(logits: Tensor, from: number, count: number): Float32Array {
  const per = logits.size / logits.dims[0];
  return (logits.data as Float32Array).slice(from * per, (from + count) * per);
}

for (const [baseName, ADAPTERS] of CASES) {
  test(`${baseName}: one mixed batch over ${ADAPTERS.join(", ")} and the base gives PEFT's logits per row, and each row's run alone`, async () => {
    const m = await realManifest();
    const base = baseNamed(m, baseName);
    const variant = base.variants.find((v) => v.dtype === "fp32")!;
    const model = await loadBaseModel(realPath(base.path), { file: variant.file });
    const adapters = ADAPTERS.map((name) => m.adapters.find((a) => a.name === name)!);
    const peft = await fromPretrained(model, realPath(adapters[0].path), {
      adapterName: ADAPTERS[0],
      onWarning: () => {},
    });
    for (const a of adapters.slice(1)) await peft.loadAdapter(realPath(a.path), a.name, { onWarning: () => {} });
    // Base rows in the middle, so padded and unpadded rows of every kind sit side by side.
    const names = [...ADAPTERS.slice(0, 2), BASE_ADAPTER, ...ADAPTERS.slice(2)];
    const expected: RealExpected[] = [];
    for (const name of names) {
      expected.push(await realExpected(name === BASE_ADAPTER ? base.path : `adapters/${name}`, base.inputs));
    }
    const rowNames = names.flatMap((name, i) => Array(expected[i].dims[0]).fill(name));
    const out = await peft.run(concatRows(expected.map((e) => e.feeds)), { adapterNames: rowNames });
    let row = 0;
    for (const [i, name] of names.entries()) {
      const e = expected[i];
      const got = rowsOf(out.logits, row, e.dims[0]);
      const atol = name === BASE_ADAPTER
        ? variant.atol
        : adapterAtol(adapters.find((a) => a.name === name)!, base, variant);
      const diff = comparedDiff(base, e, got);
      assert.ok(diff < atol, `${name}: batch vs PEFT max diff ${diff} >= ${atol}`);
      const alone = await peft.run(e.feeds, { adapter: name === BASE_ADAPTER ? null : name });
      const aloneDiff = comparedDiff(base, { ...e, logits: alone.logits.data as Float32Array }, got);
      assert.ok(aloneDiff < 1e-4, `${name}: batch vs alone max diff ${aloneDiff}`);
      row += e.dims[0];
    }
    await peft.release();
    await model.release();
  });
}
