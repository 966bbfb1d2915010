import { test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { FileNotFoundError, fromPretrained, loadBaseModel, memorySource, UrlError } from "../mod.ts";
import { resolveSource } from "../src/hub/resolve.ts";
import { serveFolder, type StaticServer } from "./support/static_server.ts";
import { expected, fixture, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";
import { encodeModel, fixtureModel, toExternalData } from "./support/onnx_variants.ts";

const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));
const ATOL = 1e-4;

async function withServer(fn: (server: StaticServer) => Promise<void>) {
  const server = await serveFolder(FIXTURES);
  try {
    await fn(server);
  } finally {
    await server.close();
  }
}

async function assertReference(model: Parameters<typeof prefillAndStep>[0], name: string) {
  const e = await expected(name);
  const out = await prefillAndStep(model, e);
  assert.ok(maxAbsDiff(out.logits, e.logits) < ATOL, `${name}: ${maxAbsDiff(out.logits, e.logits)}`);
  assert.ok(maxAbsDiff(out.nextLogits, e.nextLogits) < ATOL);
}

test("a base and an adapter loaded by URL give PEFT's logits, with progress", () =>
  withServer(async (server) => {
    const progress: { file: string; loaded: number; total?: number }[] = [];
    const base = await loadBaseModel(`${server.url}/llama-tiny`, { onProgress: (p) => progress.push(p) });
    try {
      await assertReference(base, "llama-tiny");
      const model = await fromPretrained(base, new URL(`${server.url}/llama-tiny-lora-qv/`));
      await assertReference(model, "llama-tiny-lora-qv");
      await model.release();
    } finally {
      await base.release();
    }
    const onnxSize = (await readFile(`${FIXTURES}llama-tiny/onnx/model.onnx`)).length;
    const last = progress.filter((p) => p.file === "onnx/model.onnx").pop();
    assert.deepEqual(last, { file: "onnx/model.onnx", loaded: onnxSize, total: onnxSize });
  }));

test("a URL server without HEAD still answers exists(); subfolder works for URLs", () =>
  withServer(async (server) => {
    server.fail = { mode: "no-head" };
    const src = await resolveSource(server.url, { subfolder: "llama-tiny-lora-qv" });
    assert.equal(await src.exists("adapter_config.json"), true);
    assert.equal(await src.exists("nope.json"), false);
    const missing = await src.read("nope.json").then(() => undefined, (e) => e);
    assert.ok(missing instanceof FileNotFoundError);
    assert.ok(server.requests.some((r) => r.method === "GET" && r.range === "bytes=0-0"));
  }));

test("a URL server that drops the connection: UrlError network; nothing kept; resumed with retries", () =>
  withServer(async (server) => {
    const base = await loadBaseModel(fixture("llama-tiny"));
    try {
      server.fail = { mode: "drop", only: "adapter_model.safetensors" };
      const url = `${server.url}/llama-tiny-lora-qv`;
      const error = await fromPretrained(base, url, { retries: 0 }).then(() => undefined, (e) => e);
      assert.ok(error instanceof UrlError, String(error));
      assert.equal(error.reason, "network");
      assert.equal(error.file, "adapter_model.safetensors");
      assert.ok(!error.message.includes(FIXTURES), "no server path in the message");
      // The base is untouched, and the next load (the server healed) is exact.
      await assertReference(base, "llama-tiny");
      server.fail = undefined;
      const model = await fromPretrained(base, url);
      await assertReference(model, "llama-tiny-lora-qv");
      await model.release();

      // With retries, a dropped body is resumed with Range from where it stopped.
      // Only the first request drops; the resume (and anything later) is served.
      server.fail = { mode: "drop", only: "adapter_model.safetensors", times: 1 };
      const before = server.requests.length;
      const weights = (await resolveSource(url)).read("adapter_model.safetensors");
      assert.deepEqual(
        await weights,
        new Uint8Array(await readFile(`${FIXTURES}llama-tiny-lora-qv/adapter_model.safetensors`)),
      );
      assert.ok(server.requests.slice(before).some((r) => /^bytes=[1-9]\d*-$/.test(r.range ?? "")));
    } finally {
      await base.release();
    }
  }));

test("a URL server that sends a wrong size, never answers or trickles: typed UrlError in time", () =>
  withServer(async (server) => {
    const src = await resolveSource(`${server.url}/llama-tiny-lora-qv`, { timeoutMs: 300, retries: 0 });
    server.fail = { mode: "short" };
    const short = await src.read("adapter_config.json").then(() => undefined, (e) => e);
    assert.ok(short instanceof UrlError && (short.reason === "truncated" || short.reason === "network"), String(short));
    for (const mode of ["hang", "trickle"] as const) {
      server.fail = { mode };
      const started = performance.now();
      const error = await src.read("adapter_model.safetensors").then(() => undefined, (e) => e);
      assert.ok(error instanceof UrlError && error.reason === "timeout", `${mode}: ${error}`);
      assert.ok(performance.now() - started < 2500, `${mode} took too long`);
    }
    server.fail = undefined;
    assert.ok((await src.read("adapter_config.json")).length > 0);
  }));

test("memorySource takes Node Buffers (views into a shared pool), ArrayBuffers and Blobs", async () => {
  const read = (path: string) => readFile(`${FIXTURES}${path}`).then((b) => new Uint8Array(b));
  // Weights as external data: the bytes readers take views of.
  const { model, data } = toExternalData(await fixtureModel("llama-tiny"), "model.onnx_data");
  const files = {
    "config.json": await read("llama-tiny/config.json"),
    "onnx/model.onnx": encodeModel(model),
    "onnx/model.onnx_data": data,
    "adapter_config.json": await read("llama-tiny-lora-qv/adapter_config.json"),
    "adapter_model.safetensors": await read("llama-tiny-lora-qv/adapter_model.safetensors"),
  };
  // One pool, every file at an odd offset: each Buffer's .buffer is the whole pool.
  const total = Object.values(files).reduce((n, f) => n + f.length + 1, 1);
  const pool = Buffer.alloc(total);
  const views: Record<string, Buffer> = {};
  let at = 1;
  for (const [name, bytes] of Object.entries(files)) {
    pool.set(bytes, at);
    views[name] = pool.subarray(at, at + bytes.length);
    at += bytes.length + 1;
  }
  const base = await loadBaseModel(memorySource("pooled-base", {
    "config.json": views["config.json"],
    "onnx/model.onnx": views["onnx/model.onnx"],
    "onnx/model.onnx_data": views["onnx/model.onnx_data"],
  }));
  try {
    await assertReference(base, "llama-tiny");
    const pooled = await fromPretrained(
      base,
      memorySource("pooled-adapter", {
        "adapter_config.json": views["adapter_config.json"],
        "adapter_model.safetensors": views["adapter_model.safetensors"],
      }),
      { mode: "merged" },
    ); // merging reads the external weights of the base

    await assertReference(pooled, "llama-tiny-lora-qv");
    await pooled.release();
    const weights = files["adapter_model.safetensors"];
    const other = await fromPretrained(
      base,
      memorySource("blob-adapter", {
        "adapter_config.json": new Blob([files["adapter_config.json"] as Uint8Array<ArrayBuffer>]),
        "adapter_model.safetensors": weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.length),
      }),
    );
    await assertReference(other, "llama-tiny-lora-qv");
    await other.release();
  } finally {
    await base.release();
  }
});
