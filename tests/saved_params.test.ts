/**
 * Trained biases (`bias: "all"`, norms included) and `modules_to_save` in both
 * modes, through the public API, against real PEFT (tests/fixtures/real/saved,
 * made by tests/fixtures/make/saved.py, and the manifest's BERT adapters):
 * decomposed LayerNorms (opset 16) and fp16 files, non-zero base biases (so a
 * delta differs from the adapter's value), replaced LayerNorms, a replaced
 * embedding and lm_head;
 * switching such adapters per run creates no session, and mixed batches pick
 * each row's parameters.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { AdapterMismatchError, fromPretrained, loadBaseModel, UnsupportedError } from "../mod.ts";
import { AdapterFeedCache, loraPatches } from "../src/lora/dynamic_feeds.ts";
import { adapterParams } from "../src/lora/param_feeds.ts";
import { readAdapter } from "../src/model/adapter.ts";
import { BASE_ADAPTER } from "../src/model/peft_model.ts";
import { addLoraBranches } from "../src/onnx/lora_branches.ts";
import { addParamBranches } from "../src/onnx/param_branches.ts";
import { comparedDiff, type RealBase, type RealExpected, realExpected, realPath } from "./support/real_fixtures.ts";
import { concatRows } from "./support/batch_rows.ts";
import { sessionsCreated } from "./support/sessions.ts";

interface SavedCase {
  adapter: string;
  base: string;
  file: string;
  atol: number;
  delta_from_base: number;
}

const { cases } = JSON.parse(await readFile(realPath("saved/cases.json"), "utf8")) as { cases: SavedCase[] };
const DECODER_INPUTS = ["input_ids", "attention_mask", "position_ids"];
const decoder = { compare: "attention_mask" } as RealBase;
const silent = { onWarning: () => {} };

for (const c of cases) {
  for (const mode of ["dynamic", "merged"] as const) {
    test(`${c.adapter} on ${c.base} ${c.file} ${mode} gives PEFT's logits`, async () => {
      // A case proves something only if the adapter moves the logits well past the tolerance.
      assert.ok(c.delta_from_base > 2 * c.atol);
      await using model = await loadBaseModel(realPath(c.base), { file: c.file });
      await using peft = await fromPretrained(model, realPath(c.adapter), { mode, ...silent });
      const e = await realExpected(c.adapter, DECODER_INPUTS);
      const out = await peft.run(e.feeds);
      const diff = comparedDiff(decoder, e, out.logits.data as Float32Array);
      assert.ok(diff < c.atol, `max abs diff ${diff} >= ${c.atol}`);
    });
  }
}

const BERT_INPUTS = ["input_ids", "attention_mask", "token_type_ids"];
const bert = { compare: "all" } as RealBase;

for (const baseName of ["bert-torchscript", "bert-dynamo"]) {
  test(`${baseName} dynamic: switching modules_to_save / bias="all" adapters on and off creates no session and gives PEFT's logits each way`, async () => {
    await using model = await loadBaseModel(realPath(`bases/${baseName}`));
    await using peft = await fromPretrained(model, realPath("adapters/bert-lora-attn"), {
      adapterName: "attn",
      ...silent,
    });
    await peft.loadAdapter(realPath("adapters/bert-lora-bias-all"), "bias", silent);
    const expect = {
      attn: await realExpected("adapters/bert-lora-attn", BERT_INPUTS),
      bias: await realExpected("adapters/bert-lora-bias-all", BERT_INPUTS),
      base: await realExpected(`bases/${baseName}`, BERT_INPUTS),
    };
    const check = async (what: keyof typeof expect, options?: { adapter: string | null }) => {
      const out = await peft.run(expect[what].feeds, options);
      const diff = comparedDiff(bert, expect[what], out.logits.data as Float32Array);
      assert.ok(diff < 1e-4, `${what}: max abs diff ${diff}`);
    };
    await check("attn"); // loaded first: the active adapter
    const created = await sessionsCreated(async () => {
      for (const name of ["bias", "attn", "bias"] as const) {
        peft.setAdapter(name);
        await check(name);
      }
      {
        using _off = peft.disableAdapter();
        await check("base");
      }
      await check("attn", { adapter: "attn" });
      await check("base", { adapter: null });
      await check("bias");
    });
    assert.equal(created, 0);
  });
}

// Row sets per base: a replaced embedding and lm_head beside a plain LoRA, norm bias deltas and whole norms.
const MIXED: ReadonlyArray<[base: string, adapters: string[]]> = [
  ["bases/llama-torchscript", ["saved/adapters/llama-save-embed-head", "adapters/llama-lora-attn"]],
  ["bases/llama-dynamo", ["adapters/llama-lora-attn", "saved/adapters/llama-save-embed-head"]],
  // ln_2: one adapter's trained bias (a delta) and the other's whole norm share one site.
  ["saved/bases/gpt2-nz-torchscript16", ["saved/adapters/gpt2-nz-bias-all", "saved/adapters/gpt2-nz-save-norms"]],
  ["saved/bases/gpt2-nz-dynamo", ["saved/adapters/gpt2-nz-save-norms", "saved/adapters/gpt2-nz-bias-all"]],
];

for (const [basePath, adapters] of MIXED) {
  test(`${basePath}: a mixed batch over ${adapters.join(", ")} and the base gives each row PEFT's logits`, async () => {
    await using model = await loadBaseModel(realPath(basePath));
    const nameOf = (path: string) => path.slice(path.lastIndexOf("/") + 1);
    await using peft = await fromPretrained(model, realPath(adapters[0]), {
      adapterName: nameOf(adapters[0]),
      ...silent,
    });
    for (const a of adapters.slice(1)) await peft.loadAdapter(realPath(a), nameOf(a), silent);
    const paths = [adapters[0], basePath, ...adapters.slice(1), adapters[0]];
    const names = paths.map((p) => p === basePath ? BASE_ADAPTER : nameOf(p));
    const expected: RealExpected[] = [];
    for (const path of paths) expected.push(await realExpected(path, DECODER_INPUTS));
    const rowNames = names.flatMap((name, i) => Array(expected[i].dims[0]).fill(name));
    const out = await peft.run(concatRows(expected.map((e) => e.feeds)), { adapterNames: rowNames });
    const per = out.logits.size / out.logits.dims[0];
    let row = 0;
    for (const [i, name] of names.entries()) {
      const e = expected[i];
      const got = (out.logits.data as Float32Array).slice(row * per, (row + e.dims[0]) * per);
      const diff = comparedDiff(decoder, e, got);
      assert.ok(diff < 1e-4, `${name}: max abs diff ${diff}`);
      row += e.dims[0];
    }
  });
}

for (const mode of ["dynamic", "merged"] as const) {
  test(`onnxruntime-optimized BERT ${mode}: a bias fused into BiasGelu/SkipLayerNorm fails whole, naming the module; other adapters load`, async () => {
    await using model = await loadBaseModel(realPath("saved/bases/bert-ort-optimized"));
    await assert.rejects(
      () => fromPretrained(model, realPath("adapters/bert-lora-bias-all"), { mode, ...silent }),
      (e) => {
        assert.ok(e instanceof AdapterMismatchError);
        assert.match((e as Error).message, /bert\.encoder\.layer\.0\.[\w.]*dense.*fused op/);
        return true;
      },
    );
    await using peft = await fromPretrained(model, realPath("adapters/bert-lora-attn"), { mode, ...silent });
    const e = await realExpected("adapters/bert-lora-attn", BERT_INPUTS);
    const diff = comparedDiff(bert, e, (await peft.run(e.feeds)).logits.data as Float32Array);
    assert.ok(diff < 1e-4, `max abs diff ${diff}`);
  });
}

test('dynamic with prepareModules "all-linear": a modules_to_save adapter takes its module back from the prepared LoRA branches', async () => {
  await using model = await loadBaseModel(realPath("bases/bert-torchscript"));
  await using peft = await fromPretrained(model, realPath("adapters/bert-lora-all-linear"), {
    prepareModules: "all-linear",
    ...silent,
  });
  await peft.loadAdapter(realPath("adapters/bert-lora-attn"), "attn", silent);
  for (const [name, path] of [["default", "adapters/bert-lora-all-linear"], ["attn", "adapters/bert-lora-attn"]]) {
    const e = await realExpected(path, BERT_INPUTS);
    const out = await peft.run(e.feeds, { adapter: name });
    const diff = comparedDiff(bert, e, out.logits.data as Float32Array);
    assert.ok(diff < 1e-4, `${name}: max abs diff ${diff}`);
  }
});

test("mixed batches over the same parameter sets share one stacked weight, whatever the rows' order", async () => {
  await using model = await loadBaseModel(realPath("bases/bert-torchscript"));
  const adapter = await readAdapter(model.weights, realPath("adapters/bert-lora-attn"), "attn", silent);
  const lora = loraPatches(adapter.plan).map((p) => p.module);
  const branched = addLoraBranches(model.onnx, model.weights, lora, { perRow: true });
  const read = (n: string) => model.readWeight(n);
  const { sites } = addParamBranches(branched.model, model.weights, { deltas: [], fed: ["classifier"] }, read);
  const cache = new AdapterFeedCache(branched.branches, 32, sites);
  const tensor = (k: string) => adapter.weights.toFloat32(k);
  const params = adapterParams(adapter.plan, sites, tensor, (n) => model.readWeight(n), false);
  const active = [{ plan: adapter.plan, tensor, params }];
  const site = sites.get("classifier")!;
  assert.equal(site.kind, "linear");
  const name = (site as { weight: string }).weight;
  const a = cache.rowFeeds([active, [], active]);
  const b = cache.rowFeeds([[], active, [], []]);
  assert.notEqual(a, b); // different compositions, different feed sets
  assert.equal(a[name], b[name]); // the same [in, 2*out] weight tensor
  assert.deepEqual(a[name].dims, [16, 6]);
  // One set: the adapter's own weight, not a copy stacked with the base's.
  const single = cache.feeds(active)[name];
  assert.deepEqual(single.dims, [16, 3]);
  assert.equal(single.data, params.modules.get("classifier")!.weight);
});

test("a LoRA on a module another adapter saves whole: each runs alone in both modes; one dynamic graph refuses both, typed", async () => {
  await using model = await loadBaseModel(realPath("bases/bert-torchscript"));
  const lora = { path: "saved/adapters/bert-lora-classifier", name: "cls" };
  const saved = { path: "adapters/bert-lora-attn", name: "attn" };
  const check = async (peft: Awaited<ReturnType<typeof fromPretrained>>, a: typeof lora) => {
    const e = await realExpected(a.path, BERT_INPUTS);
    const diff = comparedDiff(bert, e, (await peft.run(e.feeds, { adapter: a.name })).logits.data as Float32Array);
    assert.ok(diff < 1e-4, `${a.name}: max abs diff ${diff}`);
  };
  {
    await using merged = await fromPretrained(model, realPath(lora.path), {
      mode: "merged",
      adapterName: "cls",
      ...silent,
    });
    await merged.loadAdapter(realPath(saved.path), saved.name, silent);
    await check(merged, lora);
    await check(merged, saved);
  }
  for (const [first, second] of [[lora, saved], [saved, lora]]) {
    await using peft = await fromPretrained(model, realPath(first.path), { adapterName: first.name, ...silent });
    await check(peft, first);
    await assert.rejects(() => peft.loadAdapter(realPath(second.path), second.name, silent), (e) => {
      assert.ok(e instanceof UnsupportedError);
      assert.match((e as Error).message, /classifier.*replaces this module whole.*LoRA/);
      return true;
    });
    await check(peft, first); // the failed load left the model as it was
  }
});
