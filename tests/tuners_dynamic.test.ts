/**
 * Dynamic mode for IA³ (a fed per-channel scale of a module's input or
 * output) and LN tuning (fed norm parameters), and LN tuning on dynamo
 * exports (norms found by module scope, a shared initializer copied per
 * norm), through the public API against the real PEFT fixtures of
 * tests/fixtures/tuners (made on the torchscript bases' weights, which the
 * dynamo bases share): logits at 1e-4 in both modes on both exporters;
 * switching adapters creates no session; mixed batches give each row its
 * adapter's logits; a row combining IA³ with another peft_type is refused as
 * PEFT refuses it; mergeAndUnload of a dynamic IA³ model merges the scales.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { type Feeds, fromPretrained, loadBaseModel, Tensor, UnsupportedError } from "../mod.ts";
import { BASE_ADAPTER } from "../src/model/peft_model.ts";
import { parseSafetensors } from "../src/safetensors/mod.ts";
import {
  baseNamed,
  comparedDiff,
  type RealBase,
  type RealExpected,
  realExpected,
  realManifest,
  realPath,
} from "./support/real_fixtures.ts";
import { sessionsCreated } from "./support/sessions.ts";

const INPUTS = ["input_ids", "attention_mask", "position_ids"];
const decoder = { compare: "attention_mask" } as RealBase;
const silent = { onWarning: () => {} };
const TUNERS = "../tuners";

const CASES = [
  "llama-ia3",
  "gpt2-ia3",
  "llama-ln-tuning",
  "gpt2-ln-tuning",
  "llama-adalora",
  "gpt2-adalora",
  "llama-vera",
  "gpt2-vera",
  "llama-loha",
  "llama-lokr",
  "llama-oft",
  "llama-boft",
  "llama-fourierft",
  "gpt2-fourierft",
];

for (const name of CASES) {
  const arch = name.slice(0, name.indexOf("-"));
  for (const exporter of ["torchscript", "dynamo"]) {
    for (const mode of ["dynamic", "merged"] as const) {
      test(`${name} on ${arch}-${exporter} ${mode} gives PEFT's logits`, async () => {
        await using base = await loadBaseModel(realPath(`bases/${arch}-${exporter}`));
        await using model = await fromPretrained(base, realPath(`${TUNERS}/${name}`), {
          mode,
          onWarning: (m) => assert.fail(m),
        });
        const e = await realExpected(`${TUNERS}/${name}`, INPUTS);
        const diff = comparedDiff(decoder, e, (await model.run(e.feeds)).logits.data as Float32Array);
        assert.ok(diff <= 1e-4, `max abs diff ${diff}`);
      });
    }
  }
}

// fp16 files: held to the tolerance the manifest gives the file (the adapters move logits by ~1, far past it).
const real = await realManifest();
for (const name of ["llama-ia3", "llama-ln-tuning"]) {
  for (const exporter of ["torchscript", "dynamo"]) {
    const info = baseNamed(real, `llama-${exporter}`);
    const variant = info.variants.find((v) => v.file === "onnx/model_fp16.onnx")!;
    for (const mode of ["dynamic", "merged"] as const) {
      test(`${name} on llama-${exporter} ${variant.file} ${mode} gives PEFT's logits within ${variant.atol}`, async () => {
        await using base = await loadBaseModel(realPath(info.path), { file: variant.file });
        await using model = await fromPretrained(base, realPath(`${TUNERS}/${name}`), { mode, ...silent });
        const e = await realExpected(`${TUNERS}/${name}`, INPUTS);
        const diff = comparedDiff(decoder, e, (await model.run(e.feeds)).logits.data as Float32Array);
        assert.ok(diff < variant.atol, `max abs diff ${diff}`);
      });
    }
  }
}

/** Row `row` of a `[batch, ...]` expectation, as a one-row expectation. */
function rowOf(e: RealExpected, row: number): RealExpected {
  const feeds: Feeds = {};
  for (const [name, t] of Object.entries(e.feeds)) {
    const per = t.size / t.dims[0];
    feeds[name] = new Tensor("int64", (t.data as BigInt64Array).slice(row * per, (row + 1) * per), [
      1,
      ...t.dims.slice(1),
    ]);
  }
  const per = e.logits.length / e.dims[0];
  const maskPer = e.mask.length / e.dims[0];
  return {
    feeds,
    mask: e.mask.slice(row * maskPer, (row + 1) * maskPer),
    logits: e.logits.slice(row * per, (row + 1) * per),
    dims: [1, ...e.dims.slice(1)],
  };
}

/** A batch whose row `i` is row `i` of `parts[i]`. */
function batchOf(parts: readonly RealExpected[]): RealExpected {
  const rows = parts.map(rowOf);
  const feeds: Feeds = {};
  for (const name of Object.keys(rows[0].feeds)) {
    const data = rows.flatMap((r) => [...(r.feeds[name].data as BigInt64Array)]);
    feeds[name] = new Tensor("int64", BigInt64Array.from(data), [rows.length, ...rows[0].feeds[name].dims.slice(1)]);
  }
  const cat = (xs: Float32Array[]) => Float32Array.from(xs.flatMap((x) => [...x]));
  return {
    feeds,
    mask: BigInt64Array.from(rows.flatMap((r) => [...r.mask])),
    logits: cat(rows.map((r) => r.logits)),
    dims: [rows.length, ...rows[0].dims.slice(1)],
  };
}

for (const exporter of ["torchscript", "dynamo"]) {
  test(`llama-${exporter} dynamic: IA3, LN tuning and LoRA adapters switch with no new session, and mix per row`, async () => {
    await using base = await loadBaseModel(realPath(`bases/llama-${exporter}`));
    await using model = await fromPretrained(base, realPath(`${TUNERS}/llama-ia3`), { adapterName: "ia3", ...silent });
    await model.loadAdapter(realPath(`${TUNERS}/llama-ln-tuning`), "ln", silent);
    await model.loadAdapter(realPath("adapters/llama-lora-attn"), "lora", silent);
    const expect = {
      ia3: await realExpected(`${TUNERS}/llama-ia3`, INPUTS),
      ln: await realExpected(`${TUNERS}/llama-ln-tuning`, INPUTS),
      lora: await realExpected("adapters/llama-lora-attn", INPUTS),
      [BASE_ADAPTER]: await realExpected(`bases/llama-${exporter}`, INPUTS),
    };
    // Every fixture runs the same inputs, so rows of different adapters can share a batch.
    for (const e of Object.values(expect)) assert.deepEqual(e.feeds.input_ids.data, expect.ia3.feeds.input_ids.data);
    const check = async (what: keyof typeof expect, options?: { adapter: string | null }) => {
      const out = await model.run(expect[what].feeds, options);
      const diff = comparedDiff(decoder, expect[what], out.logits.data as Float32Array);
      assert.ok(diff <= 1e-4, `${what}: max abs diff ${diff}`);
    };
    const created = await sessionsCreated(async () => {
      await check("ia3"); // loaded first: the active adapter
      for (const name of ["ln", "lora", "ia3", "ln"] as const) {
        model.setAdapter(name);
        await check(name);
      }
      await check(BASE_ADAPTER, { adapter: null });
      await check("ia3", { adapter: "ia3" });
      for (const rows of [["ia3", BASE_ADAPTER], ["lora", "ia3"], ["ln", "ia3"], [BASE_ADAPTER, "ln"]] as const) {
        const e = batchOf(rows.map((r) => expect[r]));
        const out = await model.run(e.feeds, { adapterNames: rows });
        const diff = comparedDiff(decoder, e, out.logits.data as Float32Array);
        assert.ok(diff <= 1e-4, `rows ${rows.join(", ")}: max abs diff ${diff}`);
      }
    });
    assert.equal(created, 0);
    // PEFT keeps one peft_type per model: an IA3 and a LoRA adapter never run on one row.
    await assert.rejects(
      (async () => await model.run(expect.ia3.feeds, { adapter: ["ia3", "lora"] }))(),
      (e: unknown) => e instanceof UnsupportedError && /different peft types/.test(e.message),
    );
  });
}

for (const exporter of ["torchscript", "dynamo"]) {
  test(`llama-${exporter} dynamic: AdaLoRA, VeRA and LoRA adapters switch with no new session, and mix per row`, async () => {
    await using base = await loadBaseModel(realPath(`bases/llama-${exporter}`));
    await using model = await fromPretrained(base, realPath(`${TUNERS}/llama-adalora`), {
      adapterName: "adalora",
      ...silent,
    });
    await model.loadAdapter(realPath(`${TUNERS}/llama-vera`), "vera", silent);
    await model.loadAdapter(realPath("adapters/llama-lora-attn"), "lora", silent);
    const expect = {
      adalora: await realExpected(`${TUNERS}/llama-adalora`, INPUTS),
      vera: await realExpected(`${TUNERS}/llama-vera`, INPUTS),
      lora: await realExpected("adapters/llama-lora-attn", INPUTS),
      [BASE_ADAPTER]: await realExpected(`bases/llama-${exporter}`, INPUTS),
    };
    for (const e of Object.values(expect)) {
      assert.deepEqual(e.feeds.input_ids.data, expect.adalora.feeds.input_ids.data);
    }
    const check = async (what: keyof typeof expect, options?: { adapter: string | null }) => {
      const out = await model.run(expect[what].feeds, options);
      const diff = comparedDiff(decoder, expect[what], out.logits.data as Float32Array);
      assert.ok(diff <= 1e-4, `${what}: max abs diff ${diff}`);
    };
    const created = await sessionsCreated(async () => {
      await check("adalora");
      for (const name of ["vera", "lora", "adalora", "vera"] as const) {
        model.setAdapter(name);
        await check(name);
      }
      await check(BASE_ADAPTER, { adapter: null });
      const mixes = [["adalora", BASE_ADAPTER], ["lora", "vera"], ["vera", "adalora"], [BASE_ADAPTER, "vera"]];
      for (const rows of mixes as (keyof typeof expect)[][]) {
        const e = batchOf(rows.map((r) => expect[r]));
        const out = await model.run(e.feeds, { adapterNames: rows });
        const diff = comparedDiff(decoder, e, out.logits.data as Float32Array);
        assert.ok(diff <= 1e-4, `rows ${rows.join(", ")}: max abs diff ${diff}`);
      }
    });
    assert.equal(created, 0);
    await assert.rejects(
      (async () => await model.run(expect.vera.feeds, { adapter: ["vera", "lora"] }))(),
      (e: unknown) => e instanceof UnsupportedError && /different peft types/.test(e.message),
    );
  });
}

test("gpt2 dynamic (Conv1D, fan_in_fan_out): AdaLoRA and VeRA rows beside LoRA and base rows give PEFT's logits", async () => {
  await using base = await loadBaseModel(realPath("bases/gpt2-dynamo"));
  await using model = await fromPretrained(base, realPath(`${TUNERS}/gpt2-adalora`), {
    adapterName: "adalora",
    ...silent,
  });
  await model.loadAdapter(realPath(`${TUNERS}/gpt2-vera`), "vera", silent);
  await model.loadAdapter(realPath("adapters/gpt2-lora-attn"), "lora", silent);
  const expect = {
    adalora: await realExpected(`${TUNERS}/gpt2-adalora`, INPUTS),
    vera: await realExpected(`${TUNERS}/gpt2-vera`, INPUTS),
    lora: await realExpected("adapters/gpt2-lora-attn", INPUTS),
    [BASE_ADAPTER]: await realExpected("bases/gpt2-dynamo", INPUTS),
  };
  for (const rows of [[BASE_ADAPTER, "adalora"], ["vera", "lora"], ["adalora", "vera"]] as const) {
    const e = batchOf(rows.map((r) => expect[r]));
    const out = await model.run(e.feeds, { adapterNames: rows });
    const diff = comparedDiff(decoder, e, out.logits.data as Float32Array);
    assert.ok(diff <= 1e-4, `rows ${rows.join(", ")}: max abs diff ${diff}`);
  }
});

for (const name of ["llama-adalora", "gpt2-vera"]) {
  test(`mergeAndUnload of ${name} loaded in dynamic mode gives PEFT's logits from the new base`, async () => {
    await using base = await loadBaseModel(realPath(`bases/${name.slice(0, name.indexOf("-"))}-torchscript`));
    await using model = await fromPretrained(base, realPath(`${TUNERS}/${name}`), silent);
    const e = await realExpected(`${TUNERS}/${name}`, INPUTS);
    await using merged = await model.mergeAndUnload();
    const out = await merged.session.run(e.feeds);
    const diff = comparedDiff(decoder, e, out.logits.data as Float32Array);
    assert.ok(diff <= 1e-4, `max abs diff ${diff}`);
  });
}

for (const exporter of ["torchscript", "dynamo"]) {
  test(`llama-${exporter} dynamic: LoHa, LoKr, OFT and FourierFT switch with no new session, and mix per row`, async () => {
    await using base = await loadBaseModel(realPath(`bases/llama-${exporter}`));
    const names = ["loha", "lokr", "oft", "fourierft"] as const;
    await using model = await fromPretrained(base, realPath(`${TUNERS}/llama-loha`), {
      adapterName: "loha",
      ...silent,
    });
    for (const n of names.slice(1)) await model.loadAdapter(realPath(`${TUNERS}/llama-${n}`), n, silent);
    const expect: Record<string, RealExpected> = {
      [BASE_ADAPTER]: await realExpected(`bases/llama-${exporter}`, INPUTS),
    };
    for (const n of names) expect[n] = await realExpected(`${TUNERS}/llama-${n}`, INPUTS);
    const created = await sessionsCreated(async () => {
      for (const name of ["lokr", "oft", "fourierft", "loha", BASE_ADAPTER]) {
        const out = await model.run(expect[name].feeds, { adapter: name === BASE_ADAPTER ? null : name });
        const diff = comparedDiff(decoder, expect[name], out.logits.data as Float32Array);
        assert.ok(diff <= 1e-4, `${name}: max abs diff ${diff}`);
      }
      for (const rows of [["loha", BASE_ADAPTER], ["oft", "lokr"], ["fourierft", "loha"]]) {
        const e = batchOf(rows.map((r) => expect[r]));
        const out = await model.run(e.feeds, { adapterNames: rows });
        const diff = comparedDiff(decoder, e, out.logits.data as Float32Array);
        assert.ok(diff <= 1e-4, `rows ${rows.join(", ")}: max abs diff ${diff}`);
      }
    });
    assert.equal(created, 0);
    // Two methods on one row: refused as PEFT refuses combining peft types (two of one method combine:
    // tuners_pairs.test.ts).
    await assert.rejects(
      (async () => await model.run(expect.loha.feeds, { adapter: ["loha", "lokr"] }))(),
      (e: unknown) => e instanceof UnsupportedError && /different peft types/.test(e.message),
    );
    // A module fed whole cannot also take a LoRA branch in one graph: refused, not run without one of them.
    await assert.rejects(
      model.loadAdapter(realPath("adapters/llama-lora-attn"), "lora", silent),
      (e: unknown) => e instanceof UnsupportedError && /LoHa/.test(e.message) && /mode "merged"/.test(e.message),
    );
  });
}

test("gpt2 dynamic (Conv1D, fan_in_fan_out): IA3 rows beside base rows in one batch give PEFT's logits", async () => {
  await using base = await loadBaseModel(realPath("bases/gpt2-dynamo"));
  await using model = await fromPretrained(base, realPath(`${TUNERS}/gpt2-ia3`), { adapterName: "ia3", ...silent });
  await model.loadAdapter(realPath(`${TUNERS}/gpt2-ln-tuning`), "ln", silent);
  const expect = {
    ia3: await realExpected(`${TUNERS}/gpt2-ia3`, INPUTS),
    ln: await realExpected(`${TUNERS}/gpt2-ln-tuning`, INPUTS),
    [BASE_ADAPTER]: await realExpected("bases/gpt2-dynamo", INPUTS),
  };
  for (const rows of [[BASE_ADAPTER, "ia3"], ["ia3", "ln"]] as const) {
    const e = batchOf(rows.map((r) => expect[r]));
    const out = await model.run(e.feeds, { adapterNames: rows });
    const diff = comparedDiff(decoder, e, out.logits.data as Float32Array);
    assert.ok(diff <= 1e-4, `rows ${rows.join(", ")}: max abs diff ${diff}`);
  }
});

test("mergeAndUnload of an IA3 adapter loaded in dynamic mode merges its scales: PEFT's logits from the new base", async () => {
  await using base = await loadBaseModel(realPath("bases/llama-torchscript"));
  await using model = await fromPretrained(base, realPath(`${TUNERS}/llama-ia3`), silent);
  const e = await realExpected(`${TUNERS}/llama-ia3`, INPUTS);
  // PEFT counts the ia3_l vectors: every tensor of the saved file.
  const saved = parseSafetensors(await readFile(realPath(`${TUNERS}/llama-ia3/adapter_model.safetensors`)));
  const count = saved.names().reduce((n, k) => n + saved.info(k).shape.reduce((a, b) => a * b, 1), 0);
  assert.equal(model.getNbTrainableParameters().all - base.numParameters(), count);
  await using merged = await model.mergeAndUnload();
  const out = await merged.session.run(e.feeds);
  const diff = comparedDiff(decoder, e, out.logits.data as Float32Array);
  assert.ok(diff <= 1e-4, `max abs diff ${diff}`);
});

for (const exporter of ["torchscript", "dynamo"]) {
  test(`llama-${exporter} dynamic: two IA3 adapters active at once multiply their scales, as PEFT does`, async () => {
    await using base = await loadBaseModel(realPath(`bases/llama-${exporter}`));
    const pair = `${TUNERS}/llama-ia3-pair`;
    await using model = await fromPretrained(base, realPath(`${pair}/a`), { adapterName: "a", ...silent });
    await model.loadAdapter(realPath(`${pair}/b`), "b", silent);
    const e = await realExpected(pair, INPUTS);
    const created = await sessionsCreated(async () => {
      model.setAdapter(["a", "b"]);
      const diff = comparedDiff(decoder, e, (await model.run(e.feeds)).logits.data as Float32Array);
      assert.ok(diff <= 1e-4, `max abs diff ${diff}`);
      // One of them alone is another model: the pair's logits are not reached by either.
      const alone = comparedDiff(decoder, e, (await model.run(e.feeds, { adapter: "a" })).logits.data as Float32Array);
      assert.ok(alone > 1e-2, `adapter a alone is within ${alone} of the pair`);
    });
    assert.equal(created, 0);
  });
}

test("two LN tuning adapters active at once are refused, as PEFT's LNTuningLayer refuses them", async () => {
  await using base = await loadBaseModel(realPath("bases/gpt2-torchscript"));
  await using model = await fromPretrained(base, realPath(`${TUNERS}/gpt2-ln-tuning`), { adapterName: "a", ...silent });
  await model.loadAdapter(realPath(`${TUNERS}/gpt2-ln-tuning`), "b", silent);
  const e = await realExpected(`${TUNERS}/gpt2-ln-tuning`, INPUTS);
  await assert.rejects(
    (async () => await model.run(e.feeds, { adapter: ["a", "b"] }))(),
    (err: unknown) => err instanceof UnsupportedError && /more than one adapter/.test(err.message),
  );
});

test("IA3 on a quantized export is refused in dynamic mode too, with a typed error naming the module", async () => {
  await using base = await loadBaseModel(realPath("bases/llama-torchscript"), { file: "onnx/model_quantized.onnx" });
  await assert.rejects(
    fromPretrained(base, realPath(`${TUNERS}/llama-ia3`), silent),
    (e: unknown) =>
      e instanceof UnsupportedError && /quantized weight/.test(e.message) && /layers\.0\./.test(e.message),
  );
});
