/**
 * The adapter pool in code, without HTTP: it reuses the base's tokenizer,
 * keeps every adapter in one PeftModel (dynamic and merged), hands out
 * leases that `using` gives back, frees the model with its last adapter and
 * builds a new one on the next load, refuses a base without a tokenizer, and
 * takes URL and FileSource locations as well as folders.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { GenerationError, loadBaseModel } from "../mod.ts";
import { AdapterPool, createAdapterPool } from "../src/serving/mod.ts";
import { adapterJson } from "../src/server/routes_adapters.ts";
import { localSource } from "../src/storage/local.ts";
import { DEMO_ADAPTER, loadDemo, references } from "./support/server_setup.ts";
import { serveFolder } from "./support/static_server.ts";

const demo = await loadDemo();
const refs = await references();
const LONG = { timeout: 120_000 };
const pythonText = refs.find((r) => r.variant === "adapter" && r.prompt === "def ")!.text;
const baseText = refs.find((r) => r.variant === "base" && r.prompt === "def ")!.text;
const greedy = { maxNewTokens: 120, temperature: 0 };

for (const mode of ["dynamic", "merged"] as const) {
  test(
    `${mode}: one PeftModel holds every adapter; leases are disposable; the last delete frees the model`,
    LONG,
    async () => {
      const pool = await createAdapterPool(demo.base, { mode });
      assert.equal(pool.tokenizer, demo.base.text.tokenizer, "the base's tokenizer is reused");
      await pool.load("a", { kind: "local", path: DEMO_ADAPTER });
      await pool.load("b", { kind: "local", path: `${DEMO_ADAPTER}/` });
      {
        using a = await pool.acquire("a");
        using b = await pool.acquire("b");
        assert.equal(a.model, b.model, "both adapters live in one model");
        assert.notEqual(a.adapter, b.adapter);
        assert.equal(pool.usage().active, 2);
        assert.equal(pool.get("a")?.inUse, 1);
        assert.equal((await a.model.generate("def ", { ...greedy, adapter: a.adapter ?? undefined })).text, pythonText);
      }
      assert.equal(pool.usage().active, 0, "leaving the block released both leases");
      assert.equal(pool.get("a")?.inUse, 0);
      {
        using base = await pool.acquire("base");
        assert.equal(base.model, demo.base);
        assert.equal(base.adapter, null);
        base.release(); // releasing twice (here and at the end of the block) counts once
      }
      assert.equal(pool.usage().active, 0);

      await pool.delete("a");
      await pool.delete("b");
      assert.equal(pool.usage().bytes, 0);
      await pool.load("c", { kind: "local", path: DEMO_ADAPTER }); // a new model after the last one was freed
      let text = "";
      for await (const piece of pool.stream("c", "def ", greedy)) text += piece;
      assert.equal(text, pythonText);
      text = "";
      for await (const piece of pool.stream("base", "def ", greedy)) text += piece;
      assert.equal(text, baseText);
      await pool.close();
    },
  );
}

test("a base without tokenizer.json and no tokenizer given is refused", LONG, async () => {
  const base = await loadBaseModel("tests/fixtures/llama-tiny");
  try {
    assert.throws(
      () => new AdapterPool(base),
      (e: unknown) => e instanceof GenerationError && /tokenizer/.test(e.message),
    );
    await assert.rejects(createAdapterPool(base), GenerationError);
    assert.ok(new AdapterPool(base, { tokenizer: demo.tokenizer }));
  } finally {
    await base.release();
  }
});

test(
  "the pool loads adapters by http(s) URL and from a FileSource; the same location joins, another conflicts",
  LONG,
  async () => {
    const files = await serveFolder(DEMO_ADAPTER);
    try {
      const pool = await createAdapterPool(demo.base);
      const url = `${files.url}/?sig=secret`;
      const { info } = await pool.load("by-url", { kind: "url", url });
      assert.equal(info.status, "ready");
      assert.ok(files.requests.some((r) => r.path === "/adapter_model.safetensors"), "the weights came over HTTP");
      assert.equal((await pool.load("by-url", { kind: "url", url: new URL(url) })).created, false, "same URL joins");
      await assert.rejects(pool.load("by-url", { kind: "url", url: files.url }), /already loaded from/);
      const json = adapterJson(pool.get("by-url")!);
      assert.equal(json.source, "url");
      assert.equal(json.id, `${files.url}/`, "listed without its query");

      const source = localSource(DEMO_ADAPTER);
      await pool.load("by-source", { kind: "source", source, id: "demo-files" });
      assert.equal((await pool.load("by-source", { kind: "source", source })).created, false);
      await assert.rejects(
        pool.load("by-source", { kind: "source", source: localSource(DEMO_ADAPTER) }),
        /already loaded from demo-files/,
        "another source object is another location",
      );
      assert.equal(adapterJson(pool.get("by-source")!).id, "demo-files");
      for (const name of ["by-url", "by-source"]) {
        let text = "";
        for await (const piece of pool.stream(name, "def ", greedy)) text += piece;
        assert.equal(text, pythonText, name);
      }
      await pool.close();
    } finally {
      await files.close();
    }
  },
);
