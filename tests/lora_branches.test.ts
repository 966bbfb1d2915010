import { test } from "node:test";
import assert from "node:assert/strict";
import { encodeModel } from "../src/onnx/model_file.ts";
import { addLoraBranches } from "../src/onnx/lora_branches.ts";
import { type ActiveAdapter, AdapterFeedCache, adapterFeeds, doraScales } from "../src/lora/dynamic_feeds.ts";
import { loadKernels } from "../src/kernels/kernels.ts";
import type { AdapterPlan, LoraPatch } from "../src/lora/plan.ts";
import { OnnxModelError, UnsupportedError } from "../src/errors.ts";
import { ADAPTERS, expected, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";
import { loadAdapter, loadBase, mergedReference, planModules, runner, weightReader } from "./support/dynamic.ts";

const ATOL = 1e-4;

for (const [name, baseName] of ADAPTERS) {
  test(`adapter ${name} through LoRA branches gives its expected logits`, async () => {
    const base = await loadBase(baseName);
    const adapter = await loadAdapter(name, base.weights);
    const { modules, dora } = planModules(adapter.plan);
    const { model, branches } = addLoraBranches(base.model, base.weights, modules, { dora });
    assert.deepEqual([...branches.keys()], modules);
    const scales = doraScales(adapter.plan, weightReader(base.model), adapter.tensor, await loadKernels());
    assert.equal(scales.size, dora.length);
    const r = await runner(model, base.config, adapterFeeds(branches, [{ ...adapter, doraScales: scales }]));
    const e = await expected(name);
    const out = await prefillAndStep(r, e);
    assert.ok(maxAbsDiff(out.logits, e.logits) < ATOL, `prefill max diff ${maxAbsDiff(out.logits, e.logits)}`);
    assert.ok(
      maxAbsDiff(out.nextLogits, e.nextLogits) < ATOL,
      `decode max diff ${maxAbsDiff(out.nextLogits, e.nextLogits)}`,
    );
    // The same session with every branch at rank 0 is the base again.
    r.extra = adapterFeeds(branches, []);
    const off = await prefillAndStep(r, await expected(baseName));
    assert.ok(maxAbsDiff(off.logits, (await expected(baseName)).logits) < ATOL);
    await r.session.release();
  });
}

for (const baseName of ["llama-tiny", "gpt2-tiny"]) {
  test(`${baseName}: rank 0 on a branch for every module (plain and DoRA form) gives the base logits`, async () => {
    const base = await loadBase(baseName);
    const all = base.weights.modules;
    const linear = all.filter((m) => base.weights.get(m)!.kind === "linear");
    const e = await expected(baseName);
    for (const options of [{}, { dora: linear }]) {
      const { model, branches } = addLoraBranches(base.model, base.weights, all, options);
      assert.equal(branches.size, all.length);
      const feeds = adapterFeeds(branches, []);
      for (const branch of branches.values()) {
        assert.deepEqual(feeds[branch.a].dims, [branch.inFeatures, 0]);
        assert.deepEqual(feeds[branch.b].dims, [0, branch.outFeatures]);
        if (branch.scale) assert.ok((feeds[branch.scale].data as Float32Array).every((v) => v === 1));
      }
      const r = await runner(model, base.config, feeds);
      const out = await prefillAndStep(r, e);
      assert.ok(maxAbsDiff(out.logits, e.logits) < ATOL, `prefill max diff ${maxAbsDiff(out.logits, e.logits)}`);
      assert.ok(maxAbsDiff(out.nextLogits, e.nextLogits) < ATOL);
      await r.session.release();
    }
  });
}

test("one graph branched for all modules serves each adapter, switching per run in one session", async () => {
  const base = await loadBase("llama-tiny");
  const linear = base.weights.modules.filter((m) => base.weights.get(m)!.kind === "linear");
  // Every module, DoRA form on the linear ones: any fixture adapter fits.
  const { model, branches } = addLoraBranches(base.model, base.weights, base.weights.modules, { dora: linear });
  const kernels = await loadKernels();
  const r = await runner(model, base.config);
  const names = ADAPTERS.filter(([, b]) => b === "llama-tiny").map(([a]) => a);
  // Forward, then backward, then the base: each run picks its adapter by its feeds only.
  for (const name of [...names, ...names.slice().reverse(), null]) {
    let e;
    if (name === null) {
      r.extra = adapterFeeds(branches, []);
      e = await expected("llama-tiny");
    } else {
      const adapter = await loadAdapter(name, base.weights);
      const scales = doraScales(adapter.plan, weightReader(base.model), adapter.tensor, kernels);
      r.extra = adapterFeeds(branches, [{ ...adapter, doraScales: scales }]);
      e = await expected(name);
    }
    const out = await prefillAndStep(r, e);
    assert.ok(maxAbsDiff(out.logits, e.logits) < ATOL, `${name}: prefill max diff ${maxAbsDiff(out.logits, e.logits)}`);
    assert.ok(maxAbsDiff(out.nextLogits, e.nextLogits) < ATOL, `${name}: decode`);
  }
  await r.session.release();
});

test("gpt2: a Gemm branch graph for all linear modules serves the c_attn adapter", async () => {
  const base = await loadBase("gpt2-tiny");
  const linear = base.weights.modules.filter((m) => base.weights.get(m)!.kind === "linear");
  const { model, branches } = addLoraBranches(base.model, base.weights, linear);
  const adapter = await loadAdapter("gpt2-tiny-lora-c_attn", base.weights);
  const r = await runner(model, base.config, adapterFeeds(branches, [adapter]));
  const e = await expected("gpt2-tiny-lora-c_attn");
  const out = await prefillAndStep(r, e);
  assert.ok(maxAbsDiff(out.logits, e.logits) < ATOL);
  assert.ok(maxAbsDiff(out.nextLogits, e.nextLogits) < ATOL);
  await r.session.release();
});

test("several active adapters sum their deltas, with weights per adapter (PEFT's cat combination)", async () => {
  const base = await loadBase("llama-tiny");
  const qv = await loadAdapter("llama-tiny-lora-qv", base.weights);
  const all = await loadAdapter("llama-tiny-lora-all-rslora-f16", base.weights);
  const mlp = await loadAdapter("llama-tiny-lora-mlp-b", base.weights);
  const linear = base.weights.modules.filter((m) => base.weights.get(m)!.kind === "linear");
  const { model, branches } = addLoraBranches(base.model, base.weights, linear);
  const r = await runner(model, base.config);
  const e = await expected("llama-tiny");
  const sets: ActiveAdapter[][] = [
    [qv, all], // overlapping modules (q, v): both deltas on the same weight
    [qv, mlp], // disjoint modules
    [{ ...qv, weight: 0.5 }, { ...all, weight: -1.5 }, { ...mlp, weight: 2 }],
  ];
  for (const set of sets) {
    const feeds = adapterFeeds(branches, set);
    // Ranks concatenate: the q_proj branch gets the sum of the adapters' ranks there.
    const q0 = branches.get("model.layers.0.self_attn.q_proj")!;
    const rank = set.flatMap((a) => a.plan.patches).reduce(
      (n, p) => n + (p.kind === "lora" && p.module === q0.module ? p.rank : 0),
      0,
    );
    assert.equal(feeds[q0.a].dims[1], rank);
    r.extra = feeds;
    const out = await prefillAndStep(r, e);
    const ref = await runner(mergedReference(base.model, base.weights, set), base.config);
    const want = await prefillAndStep(ref, e);
    assert.ok(maxAbsDiff(out.logits, want.logits) < ATOL, `prefill max diff ${maxAbsDiff(out.logits, want.logits)}`);
    assert.ok(maxAbsDiff(out.nextLogits, want.nextLogits) < ATOL);
    // and the sum really differs from either adapter alone
    const single = await runner(mergedReference(base.model, base.weights, [set[0]]), base.config);
    assert.ok(maxAbsDiff(out.logits, (await prefillAndStep(single, e)).logits) > 0.05);
    await Promise.all([ref.session.release(), single.session.release()]);
  }
  await r.session.release();
});

test("DoRA on a Gemm with bias: the bias is not scaled (matches the DoRA merge)", async () => {
  const base = await loadBase("gpt2-tiny");
  const adapter = await loadAdapter("gpt2-tiny-lora-c_attn", base.weights);
  // Give every c_attn patch a magnitude vector: DoRA on transformer.h.*.attn.c_attn (Gemm with C = bias).
  const magnitude = (p: LoraPatch) =>
    Float32Array.from({ length: p.target.outFeatures }, (_, o) => 0.5 + ((o * 37) % 11) / 10);
  const patches = adapter.plan.patches.map((p) => p.kind === "lora" ? { ...p, magnitude: `${p.module}.magnitude` } : p);
  const plan: AdapterPlan = { ...adapter.plan, patches };
  const tensor = (key: string) => {
    const p = patches.find((x) => x.kind === "lora" && x.magnitude === key) as LoraPatch | undefined;
    return p ? magnitude(p) : adapter.tensor(key);
  };
  const modules = planModules(plan).modules;
  const kernels = await loadKernels();
  const { model, branches } = addLoraBranches(base.model, base.weights, modules, { dora: modules });
  const scales = doraScales(plan, weightReader(base.model), tensor, kernels);
  const r = await runner(model, base.config, adapterFeeds(branches, [{ plan, tensor, doraScales: scales }]));
  const ref = await runner(mergedReference(base.model, base.weights, [{ plan, tensor }]), base.config);
  const e = await expected("gpt2-tiny");
  const out = await prefillAndStep(r, e);
  const want = await prefillAndStep(ref, e);
  assert.ok(maxAbsDiff(out.logits, want.logits) < ATOL, `prefill max diff ${maxAbsDiff(out.logits, want.logits)}`);
  assert.ok(maxAbsDiff(out.nextLogits, want.nextLogits) < ATOL);
  // DoRA really changed the result compared with the plain adapter.
  assert.ok(maxAbsDiff(out.logits, (await expected("gpt2-tiny-lora-c_attn")).logits) > 0.05);
  await Promise.all([r.session.release(), ref.session.release()]);
});

test("addLoraBranches leaves its input untouched and names inputs lora.<module>.A/B/scale", async () => {
  const base = await loadBase("llama-tiny");
  const before = encodeModel(base.model);
  const q = "model.layers.0.self_attn.q_proj";
  const { model, branches } = addLoraBranches(base.model, base.weights, [q, "model.embed_tokens"], { dora: [q] });
  assert.deepEqual(encodeModel(base.model), before);
  assert.deepEqual(branches.get(q), {
    module: q,
    kind: "linear",
    a: `lora.${q}.A`,
    b: `lora.${q}.B`,
    scale: `lora.${q}.scale`,
    inFeatures: 64,
    outFeatures: 64,
    rankDim: `lora.${q}.rank`,
    elementType: "float32",
  });
  assert.equal(branches.get("model.embed_tokens")!.kind, "embedding");
  assert.equal(branches.get("model.embed_tokens")!.inFeatures, 256);
  const names = model.graph!.input.map((i) => i.name);
  assert.deepEqual(names.slice(-5), [
    `lora.${q}.A`,
    `lora.${q}.B`,
    `lora.${q}.scale`,
    "lora.model.embed_tokens.A",
    "lora.model.embed_tokens.B",
  ]);
  // Initializers are shared, not copied.
  const original = base.model.graph!.initializer;
  assert.ok(model.graph!.initializer.every((t, i) => t === original[i]));
  assert.equal(model.graph!.initializer.length, original.length);
});

test("branch errors: unknown module, branching twice, DoRA on an embedding", async () => {
  const base = await loadBase("llama-tiny");
  assert.throws(() => addLoraBranches(base.model, base.weights, ["model.nope"]), OnnxModelError);
  const once = addLoraBranches(base.model, base.weights, ["model.layers.0.self_attn.q_proj"]).model;
  assert.throws(
    () => addLoraBranches(once, base.weights, ["model.layers.0.self_attn.q_proj"]),
    /already has a tensor named/,
  );
  assert.throws(
    () => addLoraBranches(base.model, base.weights, ["model.embed_tokens"], { dora: ["model.embed_tokens"] }),
    UnsupportedError,
  );
  assert.throws(() => addLoraBranches(base.model, base.weights, [], { dora: ["model.embed_tokens"] }), OnnxModelError);
});

test("feed errors: missing branch, DoRA mixed with another adapter, replaced parameters", async () => {
  const base = await loadBase("llama-tiny");
  const qv = await loadAdapter("llama-tiny-lora-qv", base.weights);
  const doraAdapter = await loadAdapter("llama-tiny-dora-qv", base.weights);
  const { branches } = addLoraBranches(base.model, base.weights, ["model.layers.0.self_attn.q_proj"]);
  assert.throws(() => adapterFeeds(branches, [qv]), /no LoRA branch for this module/);
  const { modules, dora } = planModules(doraAdapter.plan);
  const full = addLoraBranches(base.model, base.weights, modules, { dora }).branches;
  const scales = doraScales(doraAdapter.plan, weightReader(base.model), doraAdapter.tensor, await loadKernels());
  const withScales = { ...doraAdapter, doraScales: scales };
  assert.ok(adapterFeeds(full, [withScales]));
  assert.throws(() => adapterFeeds(full, [withScales, qv]), UnsupportedError);
  assert.throws(() => adapterFeeds(full, [withScales, withScales]), UnsupportedError);
  assert.throws(() => adapterFeeds(full, [doraAdapter]), /doraScales/);
  assert.throws(() => adapterFeeds(full, [{ ...withScales, weight: 2 }]), /weighted/);
  const plain = addLoraBranches(base.model, base.weights, modules).branches;
  assert.throws(() => adapterFeeds(plain, [withScales]), /no DoRA scale input/);
  const target = base.weights.get("model.layers.0.self_attn.q_proj")!;
  const replace: AdapterPlan = {
    ...qv.plan,
    patches: [...qv.plan.patches, { kind: "replace", module: target.module, target, param: "weight", key: "w" }],
  };
  assert.throws(() => adapterFeeds(full, [{ ...qv, plan: replace }]), /modules_to_save/);
});

test("AdapterFeedCache builds each adapter set once", async () => {
  const base = await loadBase("llama-tiny");
  const qv = await loadAdapter("llama-tiny-lora-qv", base.weights);
  const mlp = await loadAdapter("llama-tiny-lora-mlp-b", base.weights);
  const linear = base.weights.modules.filter((m) => base.weights.get(m)!.kind === "linear");
  const { branches } = addLoraBranches(base.model, base.weights, linear);
  const cache = new AdapterFeedCache(branches, 8);
  const a = cache.feeds([qv]);
  assert.equal(cache.feeds([qv]), a);
  assert.notEqual(cache.feeds([{ ...qv, weight: 2 }]), a);
  assert.notEqual(cache.feeds([mlp, qv]), cache.feeds([qv, mlp]));
  assert.equal(cache.feeds([qv]), a);
  cache.forget(qv.plan);
  assert.notEqual(cache.feeds([qv]), a);
  assert.deepEqual(cache.feeds([]), adapterFeeds(branches, []));
});

test("AdapterFeedCache keeps its sets within a byte budget (continuous batching makes one per batch composition)", async () => {
  const base = await loadBase("llama-tiny");
  const qv = await loadAdapter("llama-tiny-lora-qv", base.weights);
  const mlp = await loadAdapter("llama-tiny-lora-mlp-b", base.weights);
  const linear = base.weights.modules.filter((m) => base.weights.get(m)!.kind === "linear");
  const { branches } = addLoraBranches(base.model, base.weights, linear, { perRow: true });
  const bytes = (f: Record<string, { data: unknown }>) =>
    Object.values(f).reduce((n, t) => n + (t.data as ArrayBufferView).byteLength, 0);
  const one = bytes(new AdapterFeedCache(branches).rowFeeds([[qv], [mlp]]));
  // Room for about one stacked set (plus the per-set entries it is built from): the older set is dropped.
  const tight = new AdapterFeedCache(branches, 32, new Map(), 0, one * 2);
  const first = tight.rowFeeds([[qv], [mlp]]);
  assert.equal(tight.rowFeeds([[qv], [mlp]]), first); // still held
  tight.rowFeeds([[mlp], [qv], [mlp], [qv]]);
  assert.notEqual(tight.rowFeeds([[qv], [mlp]]), first); // dropped for the bytes, rebuilt equal
  assert.deepEqual(tight.rowFeeds([[qv], [mlp]]), first);
  // A stack over the budget on its own keeps the adapter sets it is built from (the next composition reuses them).
  const sets = new AdapterFeedCache(branches, 32, new Map(), 0, one);
  const own = sets.feeds([qv]);
  sets.rowFeeds([[mlp], [qv], [mlp], [qv]]);
  assert.equal(sets.feeds([qv]), own);
  const roomy = new AdapterFeedCache(branches, 32);
  const kept = roomy.rowFeeds([[qv], [mlp]]);
  roomy.rowFeeds([[mlp], [qv], [mlp], [qv]]);
  assert.equal(roomy.rowFeeds([[qv], [mlp]]), kept);
});
