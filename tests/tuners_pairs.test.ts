/**
 * Two adapters of one dense-delta method (LoHa, LoKr, OFT, BOFT, FourierFT)
 * active at once on shared modules, against the real PEFT fixtures of
 * tests/fixtures/tuners/<arch>-<method>-pair (tests/fixtures/make/dense_pairs.py; GPT-2's FourierFT on Conv1D):
 * dynamic mode gives PEFT's forward with set_adapter([a, b]) and with
 * [b, a] (OFT and BOFT depend on the order) without a new session;
 * mergeAndUnload of both gives PEFT's merge_and_unload (for OFT that is the
 * other order than its forward); combining two methods is refused as PEFT
 * refuses it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { type FileSource, fromPretrained, loadBaseModel, memorySource, UnsupportedError } from "../mod.ts";
import { comparedDiff, type RealBase, realExpected, realPath } from "./support/real_fixtures.ts";
import { sessionsCreated } from "./support/sessions.ts";
import { probeWebGpu } from "../src/webgpu/mod.ts";

const INPUTS = ["input_ids", "attention_mask", "position_ids"];
const decoder = { compare: "attention_mask" } as RealBase;
const silent = { onWarning: () => {} };
// <arch>-<method>: GPT-2's FourierFT is on Conv1D layers (fan_in_fan_out).
const CASES = ["llama-loha", "llama-lokr", "llama-oft", "llama-boft", "llama-fourierft", "gpt2-fourierft"];

for (const [arch, method] of CASES.map((c) => c.split("-"))) {
  const pair = `../tuners/${arch}-${method}-pair`;
  for (const exporter of ["torchscript", "dynamo"]) {
    test(`${arch}-${exporter} dynamic: two ${method} adapters active at once give PEFT's logits in either order`, async () => {
      await using base = await loadBaseModel(realPath(`bases/${arch}-${exporter}`));
      await using model = await fromPretrained(base, realPath(`${pair}/a`), { adapterName: "a", ...silent });
      await model.loadAdapter(realPath(`${pair}/b`), "b", silent);
      const both = await realExpected(pair, INPUTS);
      const reversed = await realExpected(`${pair}/reversed`, INPUTS);
      const created = await sessionsCreated(async () => {
        model.setAdapter(["a", "b"]);
        for (let i = 0; i < 2; i++) { // the second run reuses the combined weights
          const diff = comparedDiff(decoder, both, (await model.run(both.feeds)).logits.data as Float32Array);
          assert.ok(diff <= 1e-4, `[a, b]: max abs diff ${diff}`);
        }
        const out = await model.run(reversed.feeds, { adapter: ["b", "a"] });
        const diff = comparedDiff(decoder, reversed, out.logits.data as Float32Array);
        assert.ok(diff <= 1e-4, `[b, a]: max abs diff ${diff}`);
        // Either alone is another model: the pair's logits are not reached by one of them.
        const alone = comparedDiff(
          decoder,
          both,
          (await model.run(both.feeds, { adapter: "a" })).logits.data as Float32Array,
        );
        assert.ok(alone > 1e-2, `adapter a alone is within ${alone} of the pair`);
      });
      assert.equal(created, 0);
      // Deleting one drops its combined weights; the other runs alone again.
      await model.deleteAdapter("a");
      const diff = comparedDiff(
        decoder,
        both,
        (await model.run(both.feeds, { adapter: "b" })).logits.data as Float32Array,
      );
      assert.ok(diff > 1e-2, `adapter b alone is within ${diff} of the pair`);
    });
  }
  for (const mode of ["dynamic", "merged"] as const) {
    test(`${arch}-torchscript ${mode}: mergeAndUnload of two ${method} adapters gives PEFT's merge_and_unload`, async () => {
      await using base = await loadBaseModel(realPath(`bases/${arch}-torchscript`));
      await using model = await fromPretrained(base, realPath(`${pair}/a`), { adapterName: "a", mode, ...silent });
      await model.loadAdapter(realPath(`${pair}/b`), "b", silent);
      const e = await realExpected(`${pair}/merged`, INPUTS);
      await using merged = await model.mergeAndUnload({ adapterNames: ["a", "b"], safeMerge: true });
      const diff = comparedDiff(decoder, e, (await merged.session.run(e.feeds)).logits.data as Float32Array);
      assert.ok(diff <= 1e-4, `max abs diff ${diff}`);
    });
  }
}

// The tiny Llama with every weight in model.onnx_data (tests/fixtures/make/external_base.py): the file a loaded
// model drops once a session holds it, so combining after a run cannot lean on inline weights kept in memory.
for (const method of ["loha", "lokr", "oft", "boft", "fourierft"]) {
  test(`llama dynamic: two ${method} adapters combined after the weight file was dropped give PEFT's logits, reading no file`, async () => {
    const pair = `../tuners/llama-${method}-pair`;
    const folder = realPath("../tuners/llama-torchscript-external");
    const reads: string[] = [];
    const source: FileSource = {
      location: "llama-torchscript-external",
      read: async (file) => {
        reads.push(file);
        return await memorySource("local", { [file]: new Uint8Array(await readFile(`${folder}/${file}`)) }).read(file);
      },
      exists: (file) => readFile(`${folder}/${file}`).then(() => true, () => false),
    };
    await using base = await loadBaseModel(source);
    await using model = await fromPretrained(base, realPath(`${pair}/a`), { adapterName: "a", ...silent });
    await model.loadAdapter(realPath(`${pair}/b`), "b", silent);
    const both = await realExpected(pair, INPUTS);
    const reversed = await realExpected(`${pair}/reversed`, INPUTS);
    await model.run(both.feeds, { adapter: "a" }); // a session holds the weights: the JavaScript copy is gone
    const before = reads.length;
    for (const [names, e] of [[["a", "b"], both], [["b", "a"], reversed]] as const) {
      const diff = comparedDiff(
        decoder,
        e,
        (await model.run(e.feeds, { adapter: [...names] })).logits.data as Float32Array,
      );
      assert.ok(diff <= 1e-4, `[${names}]: max abs diff ${diff}`);
    }
    assert.deepEqual(reads.slice(before), [], "combining read no file");
  });
}

const { adapter: gpu, description } = await probeWebGpu();
test("WebGPU dynamic: two OFT adapters active at once give PEFT's logits in either order", {
  skip: gpu ? false : `no WebGPU adapter: ${description}`,
}, async () => {
  const pair = "../tuners/llama-oft-pair";
  await using base = await loadBaseModel(realPath("bases/llama-torchscript"), { device: "webgpu" });
  await using model = await fromPretrained(base, realPath(`${pair}/a`), { adapterName: "a", ...silent });
  await model.loadAdapter(realPath(`${pair}/b`), "b", silent);
  for (const [names, folder] of [[["a", "b"], pair], [["b", "a"], `${pair}/reversed`]] as const) {
    const e = await realExpected(folder, INPUTS);
    const diff = comparedDiff(
      decoder,
      e,
      (await model.run(e.feeds, { adapter: [...names] })).logits.data as Float32Array,
    );
    assert.ok(diff <= 1e-4, `[${names}]: max abs diff ${diff}`);
  }
});

test("two dense methods on one module in one run are refused as PEFT refuses combining peft types", async () => {
  await using base = await loadBaseModel(realPath("bases/llama-torchscript"));
  await using model = await fromPretrained(base, realPath("../tuners/llama-loha-pair/a"), {
    adapterName: "loha",
    ...silent,
  });
  await model.loadAdapter(realPath("../tuners/llama-lokr-pair/a"), "lokr", silent);
  const e = await realExpected("../tuners/llama-loha-pair", INPUTS);
  const refused = (err: unknown) => err instanceof UnsupportedError && /different peft types/.test(err.message);
  await assert.rejects((async () => await model.run(e.feeds, { adapter: ["loha", "lokr"] }))(), refused);
  await assert.rejects(model.mergeAndUnload({ adapterNames: ["loha", "lokr"] }), refused);
});

test("two LN tuning adapters are not merged together, as PEFT's LNTuningLayer refuses it", async () => {
  await using base = await loadBaseModel(realPath("bases/gpt2-torchscript"));
  await using model = await fromPretrained(base, realPath("../tuners/gpt2-ln-tuning"), { adapterName: "a", ...silent });
  await model.loadAdapter(realPath("../tuners/gpt2-ln-tuning"), "b", silent);
  await assert.rejects(
    model.mergeAndUnload({ adapterNames: ["a", "b"] }),
    (err: unknown) =>
      err instanceof UnsupportedError && /LN tuning does not allow merging more than one/.test(err.message),
  );
});

test("mergeAndUnload of two IA3 adapters merges both scales: PEFT's logits with both active", async () => {
  await using base = await loadBaseModel(realPath("bases/llama-torchscript"));
  const pair = "../tuners/llama-ia3-pair";
  await using model = await fromPretrained(base, realPath(`${pair}/a`), { adapterName: "a", ...silent });
  await model.loadAdapter(realPath(`${pair}/b`), "b", silent);
  const e = await realExpected(pair, INPUTS);
  model.setAdapter(["a", "b"]);
  await using merged = await model.mergeAndUnload();
  const diff = comparedDiff(decoder, e, (await merged.session.run(e.feeds)).logits.data as Float32Array);
  assert.ok(diff <= 1e-4, `max abs diff ${diff}`);
});
