// The Cache-API Hub cache (src/hub/cache_api.ts) against the test Hub, on the runtime's own Cache API: Deno's
// `caches` is a real implementation (stored on disk under DENO_DIR). Bun and Node have none: skipped there.
// The same cache in headless Chromium, across a page reload: tests/browser_hub_cache.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { fromPretrained, HubError, loadBaseModel, UnsupportedError } from "../mod.ts";
import { cacheKey, hubCacheStorage, hubSettings, hubSource, type HubSourceOptions } from "../src/hub/mod.ts";
import {
  fullDownloads,
  sha256Hex,
  type TestHub,
  variedBytes,
  withEnv,
  withTempDir,
  withTestHub,
} from "./support/hub_server.ts";
import { expected, fixture, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";

const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));
const REPO = "test/llama-tiny-lora-qv";
const FILE = "adapter_model.safetensors";
const storage = (globalThis as { caches?: CacheStorage }).caches;
const skip = storage ? false : "this runtime has no Cache API";

/** 4 MiB of varied bytes: many chunks through the stream into cache.put. */
const bigFile = variedBytes(4 << 20, 777);

const fixtureWeights = () => readFile(`${FIXTURES}llama-tiny-lora-qv/${FILE}`).then((b) => new Uint8Array(b));

/** File requests (not the revision API); `bytes=0-0` probes included. */
const fileRequests = (hub: TestHub) => hub.requests.filter((r) => r.path.includes("/resolve/"));

/** A test with a fresh test Hub and a fresh, uniquely named Cache API cache (deleted afterwards). */
function cacheApiTest(
  name: string,
  fn: (hub: TestHub, options: HubSourceOptions & { cacheName: string }, cache: Cache) => Promise<void>,
) {
  test(name, { skip }, () =>
    withEnv({}, () =>
      withTestHub({
        repos: {
          [REPO]: { folder: `${FIXTURES}llama-tiny-lora-qv` },
          "test/big": { files: { "big.safetensors": bigFile } },
        },
      }, async (hub) => {
        const cacheName = `peft-edge-test-${crypto.randomUUID()}`;
        try {
          await fn(hub, { hubUrl: hub.url, cacheStorage: "cache-api", cacheName }, await storage!.open(cacheName));
        } finally {
          await storage!.delete(cacheName);
        }
      })));
}

test("the default stays the disk cache where there is a file system; cacheStorage picks the Cache API", async () => {
  await withTempDir((cacheDir) =>
    withEnv({}, async () => {
      assert.equal((await hubSource(REPO, { cacheDir })).cache.location, cacheDir);
      assert.equal((await hubSource(REPO, { cacheStorage: "memory" })).cache.location, "memory");
      const noHome = { HOME: undefined, USERPROFILE: undefined, XDG_CACHE_HOME: undefined };
      if (!storage) {
        // Bun, Node: no Cache API; asking for it is an UnsupportedError, and with no cache folder it is memory.
        const error = await hubSource(REPO, { cacheStorage: "cache-api" }).then(() => undefined, (e) => e);
        assert.ok(error instanceof UnsupportedError && /no Cache API/.test(error.message), String(error));
        await withEnv(noHome, async () => assert.equal(await hubCacheStorage(hubSettings({})), "memory"));
        return;
      }
      const chosen = await hubSource(REPO, { cacheDir, cacheStorage: "cache-api", cacheName: "x" });
      assert.equal(chosen.cache.location, "cache-api:x");
      // No cache folder known (no HOME, no HF_* variables): the Cache API, as in a browser.
      await withEnv(noHome, async () => {
        assert.equal(await hubCacheStorage(hubSettings({})), "cache-api");
        assert.equal((await hubSource(REPO)).cache.location, "cache-api:peft-edge-hub");
      });
      await storage.delete("x");
    })
  );
});

cacheApiTest(
  "downloads land under the documented keys; cached files cost no file request",
  async (hub, options, cache) => {
    const weights = await fixtureWeights();
    const first = await hubSource(REPO, options);
    assert.deepEqual(await first.read(FILE), weights);
    const commit = hub.commitOf(REPO);
    const etag = await sha256Hex(weights);
    assert.equal(await (await cache.match(cacheKey(REPO, "refs", "main")))?.text(), commit);
    assert.equal(await (await cache.match(cacheKey(REPO, "snapshots", commit, FILE)))?.text(), etag);
    assert.deepEqual(new Uint8Array(await (await cache.match(cacheKey(REPO, "blobs", etag)))!.arrayBuffer()), weights);
    assert.equal(
      cacheKey(REPO, "snapshots", commit, "a b/c.json"),
      `https://hub-cache.invalid/models--test--llama-tiny-lora-qv/snapshots/${commit}/a%20b/c.json`,
    );

    // revision main: one request to resolve the branch, none for the file.
    const files = fileRequests(hub).length;
    const requests = hub.requests.length;
    assert.deepEqual(await (await hubSource(REPO, options)).read(FILE), weights);
    assert.equal(fileRequests(hub).length, files);
    assert.equal(hub.requests.length, requests + 1);
    // A pinned commit: no request at all.
    assert.deepEqual(await (await hubSource(REPO, { ...options, revision: commit })).read(FILE), weights);
    assert.equal(hub.requests.length, requests + 1);

    // Offline: the cached ref and file answer; an uncached file is a HubError offline.
    const offline = await hubSource(REPO, { ...options, localFilesOnly: true });
    assert.deepEqual(await offline.read(FILE), weights);
    const error = await offline.read("adapter_config.json").then(() => undefined, (e) => e);
    assert.ok(error instanceof HubError && error.reason === "offline", String(error));
    assert.equal(hub.requests.length, requests + 1);
  },
);

cacheApiTest("a file the repo lacks is remembered (.no_exist) and not asked for again", async (hub, options, cache) => {
  const commit = hub.commitOf(REPO);
  const src = await hubSource(REPO, { ...options, revision: commit });
  assert.equal(await src.exists("tokenizer.json"), false);
  assert.ok(await cache.match(cacheKey(REPO, ".no_exist", commit, "tokenizer.json")));
  const requests = hub.requests.length;
  const again = await hubSource(REPO, { ...options, revision: commit });
  assert.equal(await again.exists("tokenizer.json"), false);
  const error = await again.read("tokenizer.json").then(() => undefined, (e) => e);
  assert.ok(error instanceof HubError && error.reason === "not_found", String(error));
  assert.equal(hub.requests.length, requests);
});

cacheApiTest("a download that is cut short or differs from its ETag stores nothing", async (hub, options, cache) => {
  hub.fail = "corrupt";
  const src = await hubSource(REPO, options);
  const corrupt = await src.read(FILE).then(() => undefined, (e) => e);
  assert.ok(corrupt instanceof HubError && corrupt.reason === "truncated", String(corrupt));
  hub.fail = "truncate";
  const cut = await (await hubSource(REPO, { ...options, retries: 0 })).read(FILE).then(() => undefined, (e) => e);
  assert.ok(cut instanceof HubError && /cut short: got \d+ of \d+ bytes/.test(cut.message), String(cut));
  const keys = (await cache.keys()).map((r) => new URL(r.url).pathname);
  assert.deepEqual(keys.filter((k) => k.includes("/blobs/") || k.includes("/snapshots/")), []);
  hub.fail = undefined;
  assert.deepEqual(await src.read(FILE), await fixtureWeights());
});

cacheApiTest("a large file streams into the cache and back", async (hub, options) => {
  hub.fail = "slow"; // 256 KiB pieces
  assert.deepEqual(await (await hubSource("test/big", options)).read("big.safetensors"), bigFile);
  hub.fail = undefined;
  const files = fileRequests(hub).length;
  const pinned = { ...options, revision: hub.commitOf("test/big") };
  assert.deepEqual(await (await hubSource("test/big", pinned)).read("big.safetensors"), bigFile);
  assert.equal(fileRequests(hub).length, files);
});

cacheApiTest(
  "two loads of one blob at once download it once (Web Locks, as the disk cache's .locks)",
  async (hub, options) => {
    hub.fail = "slow"; // 4 MiB at 2.5 MiB/s: the two downloads would overlap without the lock
    const read = async () => await (await hubSource("test/big", options)).read("big.safetensors");
    const [a, b] = await Promise.all([read(), read()]);
    assert.deepEqual(a, bigFile);
    assert.deepEqual(b, bigFile);
    assert.equal(fullDownloads(hub, "big.safetensors").length, 1);
  },
);

cacheApiTest(
  "a corrupted entry is fetched again with verifyCache; offline it is a HubError corrupt, never served",
  async (hub, options, cache) => {
    const weights = await fixtureWeights();
    const key = cacheKey(REPO, "blobs", await sha256Hex(weights));
    const corrupt = async () => {
      await (await hubSource(REPO, options)).read(FILE);
      const bad = new Uint8Array(await (await cache.match(key))!.arrayBuffer());
      bad[100] ^= 0x40;
      await cache.put(key, new Response(bad));
    };
    await corrupt();
    const before = fullDownloads(hub, FILE).length;
    assert.deepEqual(await (await hubSource(REPO, { ...options, verifyCache: true })).read(FILE), weights);
    assert.equal(fullDownloads(hub, FILE).length, before + 1);
    assert.deepEqual(new Uint8Array(await (await cache.match(key))!.arrayBuffer()), weights, "the entry was repaired");

    await corrupt();
    const offline = await hubSource(REPO, { ...options, verifyCache: true, localFilesOnly: true });
    const error = await offline.read(FILE).then(() => undefined, (e) => e);
    assert.ok(error instanceof HubError && error.reason === "corrupt", String(error));
    assert.equal(await cache.match(key), undefined, "the bad entry was removed");
  },
);

cacheApiTest("a snapshot whose blob was evicted is fetched again", async (hub, options, cache) => {
  const weights = await fixtureWeights();
  const pinned = { ...options, revision: hub.commitOf(REPO) };
  await (await hubSource(REPO, pinned)).read(FILE);
  await cache.delete(cacheKey(REPO, "blobs", await sha256Hex(weights)));
  const src = await hubSource(REPO, pinned);
  assert.equal(await src.cache.hasFile(REPO, hub.commitOf(REPO), FILE), false);
  assert.deepEqual(await src.read(FILE), weights);
});

cacheApiTest("through mod.ts: fromPretrained on the Cache API gives PEFT's logits, twice", async (hub, options) => {
  const base = await loadBaseModel(fixture("llama-tiny"));
  try {
    const e = await expected("llama-tiny-lora-qv");
    for (let i = 0; i < 2; i++) {
      const model = await fromPretrained(base, REPO, options);
      assert.ok(maxAbsDiff((await prefillAndStep(model, e)).logits, e.logits) < 1e-4);
      await model.release();
      if (i === 0) hub.requests.length = 0;
    }
    assert.deepEqual(fileRequests(hub), [], "the second load made no file request");
  } finally {
    await base.release();
  }
});
