import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fromPretrained, HubError, loadBaseModel } from "../mod.ts";
import { type HubCache, hubSource, memoryHubCache } from "../src/hub/mod.ts";
import {
  fullDownloads,
  listTree,
  sha256Hex,
  type TestHub,
  variedBytes,
  withHubAndCache,
} from "./support/hub_server.ts";
import { expected, fixture, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));
const REPO = "test/llama-tiny-lora-qv";
const FILE = "adapter_model.safetensors";
const REPO_DIR = "models--test--llama-tiny-lora-qv";

/** 4 MiB of varied bytes: several hundred chunks, long enough for two processes to overlap. */
const bigFile = variedBytes(4 << 20, 12345);

function cacheTest(name: string, fn: (hub: TestHub, cacheDir: string) => Promise<void>) {
  test(name, () =>
    withHubAndCache({
      repos: {
        [REPO]: { folder: `${FIXTURES}llama-tiny-lora-qv` },
        "test/big": { files: { "big.safetensors": bigFile } },
      },
    }, fn));
}

const fixtureWeights = () => readFile(`${FIXTURES}llama-tiny-lora-qv/${FILE}`).then((b) => new Uint8Array(b));

cacheTest(
  "a flipped byte in a cached blob is found with verifyCache, removed and fetched again",
  async (hub, cacheDir) => {
    const weights = await fixtureWeights();
    const etag = await sha256Hex(weights);
    await (await hubSource(REPO, { hubUrl: hub.url, cacheDir })).read(FILE);
    const blob = join(cacheDir, REPO_DIR, "blobs", etag);
    const bad = new Uint8Array(await readFile(blob));
    bad[100] ^= 0x40;
    await writeFile(blob, bad);

    // Not asked to verify: the cache is trusted (no request, no hashing).
    const trusting = await hubSource(REPO, { hubUrl: hub.url, cacheDir, revision: hub.commitOf(REPO) });
    assert.deepEqual(await trusting.read(FILE), bad);

    const before = fullDownloads(hub, FILE).length;
    const checking = await hubSource(REPO, { hubUrl: hub.url, cacheDir, verifyCache: true });
    assert.deepEqual(await checking.read(FILE), weights);
    assert.equal(fullDownloads(hub, FILE).length, before + 1);
    assert.deepEqual(new Uint8Array(await readFile(blob)), weights);
  },
);

cacheTest("a truncated cached blob is fetched again; offline it is a HubError corrupt", async (hub, cacheDir) => {
  const weights = await fixtureWeights();
  const etag = await sha256Hex(weights);
  await (await hubSource(REPO, { hubUrl: hub.url, cacheDir })).read(FILE);
  const blob = join(cacheDir, REPO_DIR, "blobs", etag);
  await truncate(blob, 1000);

  const offline = await hubSource(REPO, { hubUrl: hub.url, cacheDir, verifyCache: true, localFilesOnly: true });
  const error = await offline.read(FILE).then(() => undefined, (e) => e);
  assert.ok(error instanceof HubError && error.reason === "corrupt", String(error));
  assert.ok(!error.message.includes(cacheDir), "the cache folder is not in the message");
  assert.ok(!(await listTree(cacheDir)).some((f) => f.endsWith(`blobs/${etag}`)), "the bad blob was removed");

  const online = await hubSource(REPO, { hubUrl: hub.url, cacheDir, verifyCache: true });
  assert.deepEqual(await online.read(FILE), weights);
  assert.deepEqual(new Uint8Array(await readFile(blob)), weights);
});

cacheTest(
  "through mod.ts: fromPretrained with verifyCache repairs a corrupted cache and gives PEFT's logits",
  async (hub, cacheDir) => {
    const weights = await fixtureWeights();
    const base = await loadBaseModel(fixture("llama-tiny"));
    try {
      const options = { hubUrl: hub.url, cacheDir, verifyCache: true };
      await (await fromPretrained(base, REPO, options)).release();
      const blob = join(cacheDir, REPO_DIR, "blobs", await sha256Hex(weights));
      const bad = new Uint8Array(await readFile(blob));
      bad[bad.length - 5] ^= 0xff;
      await writeFile(blob, bad);
      const model = await fromPretrained(base, REPO, options);
      const e = await expected("llama-tiny-lora-qv");
      assert.ok(maxAbsDiff((await prefillAndStep(model, e)).logits, e.logits) < 1e-4);
      await model.release();
    } finally {
      await base.release();
    }
  },
);

cacheTest("a download whose bytes differ from the ETag is refused and caches nothing", async (hub, cacheDir) => {
  hub.fail = "corrupt";
  const src = await hubSource(REPO, { hubUrl: hub.url, cacheDir });
  const error = await src.read(FILE).then(() => undefined, (e) => e);
  assert.ok(error instanceof HubError && error.reason === "truncated", String(error));
  assert.match(error.message, /differ from the ETag/);
  // Also for a regular (non-LFS) file, checked against its git blob id.
  const config = await src.read("adapter_config.json").then(() => undefined, (e) => e);
  assert.ok(config instanceof HubError && /differ from the ETag [0-9a-f]{40}/.test(config.message), String(config));
  assert.deepEqual((await listTree(cacheDir)).filter((f) => f.includes("/blobs/") || f.includes("/snapshots/")), []);
  hub.fail = undefined;
  assert.deepEqual(await src.read(FILE), await fixtureWeights());
});

cacheTest("the in-memory cache verifies too", async (hub) => {
  const cache = memoryHubCache();
  const src = await hubSource(REPO, { hubUrl: hub.url, cache, verifyCache: true });
  const weights = await src.read(FILE);
  weights[10] ^= 1; // the cache hands out its own bytes: corrupt them in place
  assert.deepEqual(await src.read(FILE), await fixtureWeights());
});

cacheTest(
  "a cache that cannot store (full disk, quota) is a HubError of reason cache, not a network failure",
  async (hub) => {
    const inner = memoryHubCache();
    const full: HubCache = {
      ...inner,
      writeBlob: async (repo, etag) => {
        const writer = await inner.writeBlob(repo, etag);
        return { ...writer, write: () => Promise.reject(new Error("QuotaExceededError: the quota has been exceeded")) };
      },
    };
    const src = await hubSource(REPO, { hubUrl: hub.url, cache: full });
    const error = await src.read(FILE).then(() => undefined, (e) => e);
    assert.ok(error instanceof HubError && error.reason === "cache", String(error));
    assert.match(error.message, /adapter_model\.safetensors.*the cache cannot store the file \(QuotaExceededError/);
    // Nothing partial is left behind: a cache that works gets the file.
    assert.deepEqual(
      await (await hubSource(REPO, { hubUrl: hub.url, cache: inner })).read(FILE),
      await fixtureWeights(),
    );
  },
);

cacheTest("two processes downloading one file into one cache end with one good blob", async (hub, cacheDir) => {
  const deno = join(ROOT, "node_modules/.bin/deno");
  const script = `
    import { hubSource } from ${JSON.stringify(new URL("../src/hub/mod.ts", import.meta.url).href)};
    const src = await hubSource("test/big", { hubUrl: ${JSON.stringify(hub.url)}, cacheDir: ${
    JSON.stringify(cacheDir)
  } });
    const bytes = await src.read("big.safetensors");
    console.log(bytes.length);
  `;
  const run = () =>
    new Promise<string>((resolve, reject) =>
      execFile(deno, ["eval", "--no-check", script], { cwd: ROOT }, (error, stdout, stderr) => {
        if (error) reject(new Error(`${error.message}\n${stderr}`));
        else resolve(stdout.trim());
      })
    );
  hub.fail = "slow"; // 4 MiB at 2.5 MiB/s: the two downloads would overlap without the lock
  const outputs = await Promise.all([run(), run()]);
  assert.deepEqual(outputs, [String(bigFile.length), String(bigFile.length)]);

  const etag = await sha256Hex(bigFile);
  const files = await listTree(cacheDir);
  assert.deepEqual(files.filter((f) => f.includes("/blobs/")), ["models--test--big/blobs/" + etag]);
  assert.deepEqual(files.filter((f) => f.endsWith(".incomplete")), []);
  // The second process waited on the lock and found the blob: one download.
  assert.equal(fullDownloads(hub, "big.safetensors").length, 1);
  // The lock file sits where Python huggingface_hub puts it.
  assert.ok(files.includes(`.locks/models--test--big/${etag}.lock`), files.join("\n"));
  assert.equal(await sha256Hex(new Uint8Array(await readFile(join(cacheDir, "models--test--big/blobs", etag)))), etag);
});
