import { test } from "node:test";
import assert from "node:assert/strict";
import { Tensor } from "../mod.ts";
import type { Feeds } from "../mod.ts";
import { addLoraBranches } from "../src/onnx/lora_branches.ts";
import { type ActiveAdapter, adapterFeeds, doraScales, stackRowFeeds } from "../src/lora/dynamic_feeds.ts";
import { loadKernels } from "../src/kernels/kernels.ts";
import type { ModelProto } from "../src/deps/onnx_proto.ts";
import { ADAPTERS, expected, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";
import { loadAdapter, loadBase, runner, weightReader } from "./support/dynamic.ts";

const ATOL = 1e-4;
/** Shared and separate products sum the same terms in another grouping: float rounding only. */
const SAME = 1e-5;
const LLAMA = ADAPTERS.filter(([, b]) => b === "llama-tiny").map(([a]) => a);

const count = (model: ModelProto, suffix: string) => model.graph!.node.filter((n) => n.name.endsWith(suffix)).length;

async function llamaAdapters(weights: Parameters<typeof loadAdapter>[1]): Promise<Map<string, ActiveAdapter>> {
  const base = await loadBase("llama-tiny");
  const kernels = await loadKernels();
  const out = new Map<string, ActiveAdapter>();
  for (const name of LLAMA) {
    const adapter = await loadAdapter(name, weights);
    out.set(name, {
      ...adapter,
      doraScales: doraScales(adapter.plan, weightReader(base.model), adapter.tensor, kernels),
    });
  }
  return out;
}

test("shareA: q/k/v and gate/up of each layer run one x @ A, split per module; o and down keep their own", async () => {
  const base = await loadBase("llama-tiny");
  const linear = base.weights.modules.filter((m) => base.weights.get(m)!.kind === "linear");
  const layers = base.config.num_hidden_layers as number;
  const separate = addLoraBranches(base.model, base.weights, linear, { perRow: true });
  const shared = addLoraBranches(base.model, base.weights, linear, { perRow: true, shareA: true });
  // Seven projections per layer, and lm_head.
  assert.equal(linear.length, 7 * layers + 1);
  assert.equal(count(separate.model, "lora_A_MatMul"), linear.length);
  assert.equal(count(separate.model, "lora_shared_A_MatMul"), 0);
  assert.equal(count(shared.model, "lora_shared_A_MatMul"), 2 * layers);
  assert.equal(count(shared.model, "lora_shared_Split"), 2 * layers);
  assert.equal(count(shared.model, "lora_A_MatMul"), 2 * layers + 1);
  assert.equal(count(shared.model, "lora_B_MatMul"), linear.length);
  const q = shared.branches.get("model.layers.0.self_attn.q_proj")!;
  assert.deepEqual(q.group?.modules, ["q", "k", "v"].map((p) => `model.layers.0.self_attn.${p}_proj`));
  assert.equal(q.a, q.group!.a);
  assert.deepEqual(
    shared.branches.get("model.layers.0.mlp.gate_proj")!.group?.modules,
    ["gate", "up"].map((p) => `model.layers.0.mlp.${p}_proj`),
  );
  assert.equal(shared.branches.get("model.layers.0.self_attn.o_proj")!.group, undefined);
  // Every branch at rank 0: split sizes of zeros, the base's logits.
  const off = adapterFeeds(shared.branches, []);
  assert.deepEqual([...(off[q.group!.split].data as BigInt64Array)], [0n, 0n, 0n]);
  const e = await expected("llama-tiny");
  const r = await runner(shared.model, base.config, off);
  const out = await prefillAndStep(r, e);
  assert.ok(maxAbsDiff(out.logits, e.logits) < ATOL);
  await r.session.release();
});

test("shareA: every llama adapter (DoRA, embedding, partial q/k/v, other ranks) gives PEFT's logits and the separate branches'", async () => {
  const base = await loadBase("llama-tiny");
  const linear = base.weights.modules.filter((m) => base.weights.get(m)!.kind === "linear");
  const options = { dora: linear };
  const separate = addLoraBranches(base.model, base.weights, base.weights.modules, options);
  const shared = addLoraBranches(base.model, base.weights, base.weights.modules, { ...options, shareA: true });
  const a = await runner(separate.model, base.config);
  const b = await runner(shared.model, base.config);
  for (const [name, adapter] of await llamaAdapters(base.weights)) {
    a.extra = adapterFeeds(separate.branches, [adapter]);
    b.extra = adapterFeeds(shared.branches, [adapter]);
    const e = await expected(name);
    const [viaSeparate, viaShared] = [await prefillAndStep(a, e), await prefillAndStep(b, e)];
    assert.ok(maxAbsDiff(viaShared.logits, e.logits) < ATOL, `${name}: ${maxAbsDiff(viaShared.logits, e.logits)}`);
    assert.ok(maxAbsDiff(viaShared.nextLogits, e.nextLogits) < ATOL, `${name}: decode`);
    assert.ok(maxAbsDiff(viaShared.logits, viaSeparate.logits) < SAME, `${name}: shared vs separate`);
    assert.ok(maxAbsDiff(viaShared.nextLogits, viaSeparate.nextLogits) < SAME, `${name}: shared vs separate decode`);
  }
  await a.session.release();
  await b.session.release();
});

test("shareA per row: a mixed batch (adapters of other ranks and modules, the base) equals separate branches", async () => {
  const base = await loadBase("llama-tiny");
  const linear = base.weights.modules.filter((m) => base.weights.get(m)!.kind === "linear");
  const options = { dora: linear, perRow: true };
  const separate = addLoraBranches(base.model, base.weights, base.weights.modules, options);
  const shared = addLoraBranches(base.model, base.weights, base.weights.modules, { ...options, shareA: true });
  const adapters = await llamaAdapters(base.weights);
  const rows: ActiveAdapter[][] = [...LLAMA.map((n) => [adapters.get(n)!]), []];
  const e = await expected("llama-tiny");
  const n = e.inputIds.length;
  const c = base.config as Record<string, number>;
  const ids = new BigInt64Array(rows.length * n);
  rows.forEach((_, i) => ids.set(e.inputIds, i * n));
  const int64 = (values: number[]) => new Tensor("int64", BigInt64Array.from(values, BigInt), [rows.length, n]);
  const feeds: Feeds = {
    input_ids: new Tensor("int64", ids, [rows.length, n]),
    attention_mask: int64(Array(rows.length * n).fill(1)),
    position_ids: int64(rows.flatMap(() => [...Array(n).keys()])),
  };
  const headDim = c.hidden_size / c.num_attention_heads;
  const a = await runner(separate.model, base.config);
  const b = await runner(shared.model, base.config);
  for (const name of a.inputNames.filter((x) => x.startsWith("past_key_values."))) {
    feeds[name] = new Tensor("float32", new Float32Array(), [rows.length, c.num_key_value_heads, 0, headDim]);
  }
  const stacked = (branches: typeof shared.branches) =>
    stackRowFeeds(branches, rows.map((set) => adapterFeeds(branches, set)));
  const viaSeparate = (await a.session.run({ ...feeds, ...stacked(separate.branches) })).logits.data as Float32Array;
  const viaShared = (await b.session.run({ ...feeds, ...stacked(shared.branches) })).logits.data as Float32Array;
  assert.ok(maxAbsDiff(viaShared, viaSeparate) < SAME, `shared vs separate ${maxAbsDiff(viaShared, viaSeparate)}`);
  const per = viaShared.length / rows.length;
  for (const [i, name] of [...LLAMA, "llama-tiny"].entries()) {
    const want = (await expected(name)).logits;
    const diff = maxAbsDiff(viaShared.subarray(i * per, (i + 1) * per), want);
    assert.ok(diff < ATOL, `row ${i} (${name}): ${diff}`);
  }
  await a.session.release();
  await b.session.release();
});
