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
import { fromPretrained, loadBaseModel, UnsupportedError } from "../mod.ts";
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
import { batchOf } from "./support/batch_rows.ts";
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

/**
 * A dynamic model of `adapters` (name: fixture folder, loaded in this order) on the base in `basePath`, with
 * each one's expected logits and the base's (under BASE_ADAPTER); every fixture runs the same inputs, so rows of
 * different adapters can share a batch.
 */
async function adapterSet(basePath: string, adapters: Readonly<Record<string, string>>) {
  const base = await loadBaseModel(realPath(basePath));
  const [[first, path], ...rest] = Object.entries(adapters);
  const model = await fromPretrained(base, realPath(path), { adapterName: first, ...silent });
  for (const [name, folder] of rest) await model.loadAdapter(realPath(folder), name, silent);
  const expect: Record<string, RealExpected> = { [BASE_ADAPTER]: await realExpected(basePath, INPUTS) };
  for (const [name, folder] of Object.entries(adapters)) expect[name] = await realExpected(folder, INPUTS);
  for (const e of Object.values(expect)) assert.deepEqual(e.feeds.input_ids.data, expect[first].feeds.input_ids.data);
  return {
    model,
    expect,
    /** Runs `name`'s inputs (with `options`) and holds the logits to its expected ones. */
    async check(name: string, options?: { adapter: string | null }) {
      const out = await model.run(expect[name].feeds, options);
      const diff = comparedDiff(decoder, expect[name], out.logits.data as Float32Array);
      assert.ok(diff <= 1e-4, `${name}: max abs diff ${diff}`);
    },
    /** One batch whose row `i` runs adapter `rows[i]`, each row held to that adapter's logits. */
    async checkRows(rows: readonly string[]) {
      const e = batchOf(rows.map((r) => expect[r]));
      const out = await model.run(e.feeds, { adapterNames: rows });
      const diff = comparedDiff(decoder, e, out.logits.data as Float32Array);
      assert.ok(diff <= 1e-4, `rows ${rows.join(", ")}: max abs diff ${diff}`);
    },
    async [Symbol.asyncDispose]() {
      await model[Symbol.asyncDispose]();
      await base[Symbol.asyncDispose]();
    },
  };
}

// Three adapters on one graph: `a` (loaded first: the active one), `b` and a LoRA; `a` with LoRA on one row is refused,
// as PEFT keeps one peft_type per model.
const SWITCHES = [
  ["IA3, LN tuning", { a: "ia3", b: "ln", aPath: "llama-ia3", bPath: "llama-ln-tuning" }],
  ["AdaLoRA, VeRA", { a: "adalora", b: "vera", aPath: "llama-adalora", bPath: "llama-vera" }],
] as const;
for (const [what, { a, b, aPath, bPath }] of SWITCHES) {
  for (const exporter of ["torchscript", "dynamo"]) {
    test(`llama-${exporter} dynamic: ${what} and LoRA adapters switch with no new session, and mix per row`, async () => {
      await using set = await adapterSet(`bases/llama-${exporter}`, {
        [a]: `${TUNERS}/${aPath}`,
        [b]: `${TUNERS}/${bPath}`,
        lora: "adapters/llama-lora-attn",
      });
      const created = await sessionsCreated(async () => {
        await set.check(a);
        for (const name of [b, "lora", a, b]) {
          set.model.setAdapter(name);
          await set.check(name);
        }
        await set.check(BASE_ADAPTER, { adapter: null });
        await set.check(a, { adapter: a });
        for (const rows of [[a, BASE_ADAPTER], ["lora", a], [b, a], ["lora", b], [BASE_ADAPTER, b]]) {
          await set.checkRows(rows);
        }
      });
      assert.equal(created, 0);
      await assert.rejects(
        (async () => await set.model.run(set.expect[a].feeds, { adapter: [a, "lora"] }))(),
        (e: unknown) => e instanceof UnsupportedError && /different peft types/.test(e.message),
      );
    });
  }
}

test("gpt2 dynamic (Conv1D, fan_in_fan_out): AdaLoRA and VeRA rows beside LoRA and base rows give PEFT's logits", async () => {
  await using set = await adapterSet("bases/gpt2-dynamo", {
    adalora: `${TUNERS}/gpt2-adalora`,
    vera: `${TUNERS}/gpt2-vera`,
    lora: "adapters/gpt2-lora-attn",
  });
  for (const rows of [[BASE_ADAPTER, "adalora"], ["vera", "lora"], ["adalora", "vera"]]) await set.checkRows(rows);
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
    const names = ["loha", "lokr", "oft", "fourierft"];
    await using set = await adapterSet(
      `bases/llama-${exporter}`,
      Object.fromEntries(names.map((n) => [n, `${TUNERS}/llama-${n}`])),
    );
    const created = await sessionsCreated(async () => {
      for (const name of ["lokr", "oft", "fourierft", "loha", BASE_ADAPTER]) {
        await set.check(name, { adapter: name === BASE_ADAPTER ? null : name });
      }
      for (const rows of [["loha", BASE_ADAPTER], ["oft", "lokr"], ["fourierft", "loha"]]) await set.checkRows(rows);
    });
    assert.equal(created, 0);
    // Two methods on one row: refused as PEFT refuses combining peft types (two of one method combine:
    // tuners_pairs.test.ts).
    await assert.rejects(
      (async () => await set.model.run(set.expect.loha.feeds, { adapter: ["loha", "lokr"] }))(),
      (e: unknown) => e instanceof UnsupportedError && /different peft types/.test(e.message),
    );
    // A module fed whole cannot also take a LoRA branch in one graph: refused, not run without one of them.
    await assert.rejects(
      set.model.loadAdapter(realPath("adapters/llama-lora-attn"), "lora", silent),
      (e: unknown) => e instanceof UnsupportedError && /LoHa/.test(e.message) && /mode "merged"/.test(e.message),
    );
  });
}

test("gpt2 dynamic (Conv1D, fan_in_fan_out): IA3 rows beside base rows in one batch give PEFT's logits", async () => {
  await using set = await adapterSet("bases/gpt2-dynamo", {
    ia3: `${TUNERS}/gpt2-ia3`,
    ln: `${TUNERS}/gpt2-ln-tuning`,
  });
  for (const rows of [[BASE_ADAPTER, "ia3"], ["ia3", "ln"]]) await set.checkRows(rows);
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
