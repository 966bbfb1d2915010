import { test } from "node:test";
import assert from "node:assert/strict";
import { fromPretrained, loadBaseModel } from "../mod.ts";
import { expected, fixture, prefillAndStep } from "./support/fixtures.ts";
import { readFile } from "node:fs/promises";
import { withHubAndCache } from "./support/hub_server.ts";

const PAIRS = [["llama-tiny-lora-qv", "llama-tiny"], ["gpt2-tiny-lora-c_attn", "gpt2-tiny"]] as const;

test("an adapter and base loaded by repo id give the same logits as from disk", () =>
  withHubAndCache(
    { repos: Object.fromEntries(PAIRS.flat().map((name) => [`test/${name}`, { folder: fixture(name) }])) },
    async (hub, cacheDir) => {
      for (const [adapter, baseName] of PAIRS) {
        const e = await expected(adapter);
        const diskBase = await loadBaseModel(fixture(baseName));
        const diskModel = await fromPretrained(diskBase, fixture(adapter));
        const fromDisk = await prefillAndStep(diskModel, e);

        const options = { hubUrl: hub.url, cacheDir };
        const hubBase = await loadBaseModel(`test/${baseName}`, options);
        const hubModel = await fromPretrained(hubBase, `test/${adapter}`, options);
        const fromHub = await prefillAndStep(hubModel, e);
        assert.deepEqual(fromHub.logits, fromDisk.logits);
        assert.deepEqual(fromHub.nextLogits, fromDisk.nextLogits);

        // Loading again pinned to the commits makes no request at all.
        const before = hub.requests.length;
        const pinnedBase = await loadBaseModel(`test/${baseName}`, {
          ...options,
          revision: hub.commitOf(`test/${baseName}`),
        });
        const pinned = await fromPretrained(pinnedBase, `test/${adapter}`, {
          ...options,
          revision: hub.commitOf(`test/${adapter}`),
        });
        assert.deepEqual((await prefillAndStep(pinned, e)).logits, fromDisk.logits);
        assert.equal(hub.requests.length, before);

        for (const m of [diskModel, hubModel, pinned]) await m.release();
        for (const b of [diskBase, hubBase, pinnedBase]) await b.release();
      }
    },
  ));

test("subfolders of one Hub repo load as base and adapter; a .bin-only adapter is refused", async () => {
  const config = new Uint8Array(await readFile(`${fixture("llama-tiny-lora-qv")}/adapter_config.json`));
  await withHubAndCache({
    repos: {
      "test/fixtures": { folder: fixture("") },
      "test/bin-only": { files: { "adapter_config.json": config, "adapter_model.bin": new Uint8Array(8) } },
    },
  }, async (hub, cacheDir) => {
    const options = { hubUrl: hub.url, cacheDir };
    const e = await expected("llama-tiny-lora-qv");
    const base = await loadBaseModel("test/fixtures", { ...options, subfolder: "llama-tiny" });
    const model = await fromPretrained(base, "test/fixtures", { ...options, subfolder: "llama-tiny-lora-qv" });
    const diskBase = await loadBaseModel(fixture("llama-tiny"));
    const diskModel = await fromPretrained(diskBase, fixture("llama-tiny-lora-qv"));
    assert.deepEqual((await prefillAndStep(model, e)).logits, (await prefillAndStep(diskModel, e)).logits);

    const error = await fromPretrained(base, "test/bin-only", options).catch((err) => err);
    assert.ok(error instanceof Error);
    assert.match(error.message, /safetensors/);
    assert.match(error.message, /pickle/);
    for (const m of [model, diskModel]) await m.release();
    for (const b of [base, diskBase]) await b.release();
  });
});
