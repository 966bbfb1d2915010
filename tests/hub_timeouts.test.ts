import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { fromPretrained, HubError, loadBaseModel } from "../mod.ts";
import { hubSource } from "../src/hub/mod.ts";
import { listTree, type TestHub, withHubAndCache } from "./support/hub_server.ts";

const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));
const REPO = "test/llama-tiny-lora-qv";
const FILE = "adapter_model.safetensors";
const TIMEOUT = 300;

function timeoutTest(name: string, fn: (hub: TestHub, cacheDir: string) => Promise<void>) {
  test(name, () =>
    withHubAndCache({
      repos: {
        [REPO]: { folder: `${FIXTURES}llama-tiny-lora-qv` },
        "test/llama-tiny": { folder: `${FIXTURES}llama-tiny` },
      },
    }, fn));
}

/** Runs `promise`, expecting a HubError within `withinMs`; returns it. */
async function failsWithin(promise: Promise<unknown>, withinMs: number): Promise<HubError> {
  const started = performance.now();
  const error = await promise.then(() => undefined, (e: unknown) => e);
  const took = performance.now() - started;
  assert.ok(error instanceof HubError, `expected a HubError, got ${error}`);
  assert.ok(took < withinMs, `took ${Math.round(took)} ms, more than ${withinMs}`);
  return error;
}

async function assertNoBlob(cacheDir: string) {
  const files = await listTree(cacheDir);
  assert.deepEqual(files.filter((f) => f.includes("/blobs/") || f.endsWith(".incomplete")), []);
}

timeoutTest("a Hub that never answers: HubError timeout within timeoutMs", async (hub, cacheDir) => {
  hub.fail = "hang";
  const src = await hubSource(REPO, { hubUrl: hub.url, cacheDir, timeoutMs: TIMEOUT, retries: 0 });
  const error = await failsWithin(src.read("adapter_config.json"), TIMEOUT + 1500);
  assert.equal(error.reason, "timeout");
  assert.match(error.message, /no response within 300 ms/);
  await assertNoBlob(cacheDir);
});

timeoutTest("headers then a stalled body: HubError timeout; nothing cached", async (hub, cacheDir) => {
  hub.fail = "stall";
  const src = await hubSource(REPO, { hubUrl: hub.url, cacheDir, timeoutMs: TIMEOUT, retries: 0 });
  const error = await failsWithin(src.read(FILE), 2 * TIMEOUT + 2000);
  assert.equal(error.reason, "timeout");
  assert.equal(error.file, FILE);
  await assertNoBlob(cacheDir);
});

timeoutTest("a 2 KiB/s trickle does not keep a download alive", async (hub, cacheDir) => {
  hub.fail = "trickle";
  const src = await hubSource(REPO, { hubUrl: hub.url, cacheDir, timeoutMs: TIMEOUT, retries: 0 });
  const error = await failsWithin(src.read(FILE), 2 * TIMEOUT + 2000);
  assert.equal(error.reason, "timeout");
  assert.match(error.message, /less than 64 KiB/);
  await assertNoBlob(cacheDir);
});

timeoutTest("a dropped connection: HubError network; after recovery the file loads", async (hub, cacheDir) => {
  hub.fail = "drop";
  const src = await hubSource(REPO, { hubUrl: hub.url, cacheDir, timeoutMs: TIMEOUT, retries: 0 });
  const error = await failsWithin(src.read("adapter_config.json"), TIMEOUT + 1500);
  assert.equal(error.reason, "network");
  await assertNoBlob(cacheDir);
  hub.fail = undefined;
  assert.deepEqual(
    await src.read("adapter_config.json"),
    new Uint8Array(await readFile(`${FIXTURES}llama-tiny-lora-qv/adapter_config.json`)),
  );
});

timeoutTest("retries cover the timeouts too: each try is bounded, the total is too", async (hub, cacheDir) => {
  hub.fail = "trickle";
  const src = await hubSource(REPO, { hubUrl: hub.url, cacheDir, timeoutMs: TIMEOUT, retries: 1 });
  const before = hub.requests.length;
  // Two tries of the body (the second resumes), one backoff of 1 s between them.
  const error = await failsWithin(src.read(FILE), 2 * (2 * TIMEOUT) + 1000 + 1500);
  assert.equal(error.reason, "timeout");
  const downloads = hub.requests.slice(before).filter((r) => r.path.endsWith(FILE) && r.range !== "bytes=0-0");
  assert.equal(downloads.length, 2);
});

timeoutTest("429 and 503 are retried (Retry-After honoured) and then succeed", async (hub, cacheDir) => {
  const src = await hubSource(REPO, { hubUrl: hub.url, cacheDir, timeoutMs: 5000 });
  hub.fail = { status: 429, times: 2 };
  const config = await src.read("adapter_config.json");
  assert.ok(config.length > 0);
  hub.fail = { status: 503, times: 3 };
  assert.ok((await src.read(FILE)).length > 0);
  const spent = await hubSource(REPO, { hubUrl: hub.url, cacheDir, retries: 1, revision: "main" });
  hub.fail = { status: 503, times: 5 };
  const error = await spent.read("tokenizer.json").then(() => undefined, (e) => e);
  assert.ok(error instanceof HubError && error.status === 503 && error.reason === "server");
});

timeoutTest("through mod.ts: loadBaseModel and fromPretrained take timeoutMs", async (hub, cacheDir) => {
  const options = { hubUrl: hub.url, cacheDir, timeoutMs: TIMEOUT, retries: 0 };
  const base = await loadBaseModel("test/llama-tiny", options);
  try {
    hub.fail = "stall";
    const error = await failsWithin(fromPretrained(base, REPO, options), 2 * TIMEOUT + 2000);
    assert.equal(error.reason, "timeout");
    hub.fail = "hang";
    const early = await failsWithin(loadBaseModel("test/llama-tiny", { ...options, revision: "v2" }), TIMEOUT + 1500);
    assert.equal(early.reason, "timeout");
  } finally {
    await base.release();
  }
});
