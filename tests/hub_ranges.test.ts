/**
 * A base loaded from the Hub's disk cache reads its weights range by range
 * from the cached blobs, as a local folder does: same logits, no copy of the
 * weights in JavaScript, a blob changed after the load refused naming the
 * file, and `verifyCache` checking what the ranged reads will read.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileAccessError, fromPretrained, HubError, loadBaseModel } from "../mod.ts";
import { diskHubCache, hubSource, memoryHubCache } from "../src/hub/mod.ts";
import { rangeFileOf } from "../src/storage/range_bytes.ts";
import { localSource } from "../src/storage/local.ts";
import { matchesEtag, matchesEtagRanges } from "../src/hub/verify.ts";
import { eventLoopTurn } from "../src/runtime/timers.ts";
import { listTree, startTestHub, type TestHub, withEnv, withTempDir } from "./support/hub_server.ts";
import { expected, fixture, prefillAndStep } from "./support/fixtures.ts";

const FILE = "onnx/model.onnx";

function rangesTest(name: string, fn: (hub: TestHub, cacheDir: string) => Promise<void>) {
  test(name, { timeout: 120_000 }, () =>
    withEnv({}, () =>
      withTempDir(async (cacheDir) => {
        const hub = await startTestHub({
          repos: {
            "test/llama-tiny": { folder: fixture("llama-tiny") },
            "test/llama-dynamo": { folder: fixture("index/llama-dynamo") },
          },
        });
        try {
          await fn(hub, cacheDir);
        } finally {
          await hub.stop();
        }
      })));
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

const downloads = (hub: TestHub, file: string) =>
  hub.requests.filter((r) => r.method === "GET" && r.path.endsWith(file) && r.range !== "bytes=0-0").length;

rangesTest(
  "a Hub-cached base is read range by range, gives the folder's logits, and refuses its blob rewritten since",
  async (hub, cacheDir) => {
    const e = await expected("llama-tiny");
    const local = await loadBaseModel(fixture("llama-tiny"));
    const want = await prefillAndStep(local, e);
    const options = { hubUrl: hub.url, cacheDir };
    // Downloaded first (the file is not cached yet), then read from the cache range by range.
    const base = await loadBaseModel("test/llama-tiny", options);
    const ranged = [...base.externalData.values()];
    assert.ok(ranged.length > 0 && ranged.every((b) => rangeFileOf(b) !== undefined), "weights read from the cache");
    assert.deepEqual((await prefillAndStep(base, e)).logits, want.logits);
    // Offline from the cache alone, the same.
    const offline = await loadBaseModel("test/llama-tiny", { ...options, localFilesOnly: true });
    assert.ok([...offline.externalData.values()].every((b) => rangeFileOf(b) !== undefined));
    assert.deepEqual((await prefillAndStep(offline, e)).nextLogits, want.nextLogits);

    // Another process rewrites the blob (a repaired download, an edit by hand): a new session refuses it.
    const blob = join(
      cacheDir,
      "models--test--llama-tiny",
      "blobs",
      await sha256(await readFile(fixture(`llama-tiny/${FILE}`))),
    );
    const bytes = await readFile(blob);
    bytes[bytes.length - 1] ^= 1;
    await writeFile(blob, bytes);
    const refused = await fromPretrained(base, fixture("llama-tiny-lora-qv")).then(() => undefined, (err) => err);
    assert.ok(refused instanceof FileAccessError, `refused with ${refused}`);
    assert.equal(refused.file, FILE);
    assert.ok(!refused.message.includes(cacheDir), "the cache folder is not in the message");
    for (const b of [local, base, offline]) await b.release();
  },
);

rangesTest(
  "external data and the fp32 graph beside a quantized base come from the cache by ranges",
  async (hub, cacheDir) => {
    const options = { hubUrl: hub.url, cacheDir };
    const fp32 = await loadBaseModel("test/llama-dynamo", options);
    const data = fp32.externalData.get("model.onnx_data");
    assert.ok(data && rangeFileOf(data), "model.onnx_data read range by range");
    const local = await loadBaseModel(fixture("index/llama-dynamo"));
    assert.equal(fp32.weights.modules.length, local.weights.modules.length);
    // q8 (onnxruntime's quantizer dropped the module paths): they are read from the cached fp32 graph's nodes.
    const q8 = await loadBaseModel("test/llama-dynamo", { ...options, dtype: "q8" });
    assert.equal(q8.weights.get("model.layers.0.mlp.down_proj")?.nodeName, "node_linear_6_quant");
    assert.deepEqual(q8.weights.unscoped, []);
    for (const b of [fp32, local, q8]) await b.release();
  },
);

rangesTest(
  "verifyCache checks a cached file before its ranges are read; a bad one is fetched again",
  async (hub, cacheDir) => {
    const good = new Uint8Array(await readFile(fixture(`llama-tiny/${FILE}`)));
    const options = { hubUrl: hub.url, cacheDir };
    await (await hubSource("test/llama-tiny", options)).read(FILE);
    const blob = join(cacheDir, "models--test--llama-tiny", "blobs", await sha256(good));
    const bad = good.slice();
    bad[200] ^= 0x40;
    await writeFile(blob, bad);
    const pinned = { ...options, revision: hub.commitOf("test/llama-tiny") };

    // Not asked to verify: the cache is trusted, as by read.
    const trusting = await (await hubSource("test/llama-tiny", pinned)).openRanges!(FILE);
    assert.deepEqual(await trusting!.readAll(), bad);

    // Online: found bad, fetched again, and the ranges read the good bytes.
    const before = downloads(hub, FILE);
    const checking = await hubSource("test/llama-tiny", { ...pinned, verifyCache: true });
    const file = await checking.openRanges!(FILE);
    assert.deepEqual(await file!.readAll(), good);
    const tail = new Uint8Array(64);
    file!.readInto(good.length - 64, tail);
    assert.deepEqual(tail, good.subarray(good.length - 64));
    assert.equal(downloads(hub, FILE), before + 1);
    assert.deepEqual(new Uint8Array(await readFile(blob)), good);

    // Offline: the bad blob is removed and the error says so.
    await writeFile(blob, bad);
    const offline = await hubSource("test/llama-tiny", { ...pinned, verifyCache: true, localFilesOnly: true });
    const error = await offline.openRanges!(FILE).then(() => undefined, (err) => err);
    assert.ok(error instanceof HubError && error.reason === "corrupt", String(error));
    assert.equal(error.file, FILE);
  },
);

rangesTest(
  "a file opened for ranges before it is cached is downloaded, checked as it arrives and resumed as a read is",
  async (hub, cacheDir) => {
    const good = new Uint8Array(await readFile(fixture(`llama-tiny/${FILE}`)));
    const src = await hubSource("test/llama-tiny", { hubUrl: hub.url, cacheDir });
    // Bytes that differ from the ETag: refused, nothing cached.
    hub.fail = "corrupt";
    const error = await src.openRanges!(FILE).then(() => undefined, (err) => err);
    assert.ok(error instanceof HubError && error.reason === "truncated", String(error));
    assert.match(error.message, /differ from the ETag/);
    assert.deepEqual((await listTree(cacheDir)).filter((f) => f.includes("/blobs/") || f.includes("/snapshots/")), []);
    // A body cut in half goes on with Range from where it dropped: the check covers both parts.
    hub.fail = "truncate";
    const before = hub.requests.length;
    const file = await src.openRanges!(FILE);
    hub.fail = undefined;
    assert.equal(hub.requests.slice(before).filter((r) => r.range?.match(/^bytes=[1-9]\d*-$/)).length, 1);
    assert.equal(file!.size, good.length);
    assert.deepEqual(await file!.readAll(), good);
    assert.deepEqual(
      new Uint8Array(await readFile(join(cacheDir, "models--test--llama-tiny", "blobs", await sha256(good)))),
      good,
    );
  },
);

rangesTest("caches off the disk read whole; a file the repo lacks is the read's error", async (hub, cacheDir) => {
  const memory = await hubSource("test/llama-tiny", { hubUrl: hub.url, cache: memoryHubCache() });
  assert.equal(await memory.openRanges!(FILE), undefined);
  // Only a snapshot named by a commit may resolve into the blobs (the Hub's layout); another is read whole.
  assert.equal(await diskHubCache(cacheDir).openRanges!("test/llama-tiny", "v1.0", FILE), undefined);
  const disk = await hubSource("test/llama-tiny", { hubUrl: hub.url, cacheDir });
  const missing = await disk.openRanges!("onnx/absent.onnx").then(() => undefined, (err) => err);
  assert.ok(missing instanceof HubError && missing.reason === "not_found", String(missing));
  assert.equal(missing.file, "onnx/absent.onnx");
});

test("matchesEtagRanges checks a file chunk by chunk as matchesEtag checks its bytes", async () => {
  const dir = await mkdtemp(join(tmpdir(), "peft-edge-etag-"));
  try {
    // Over one 8 MiB chunk, not a multiple of it.
    const bytes = new Uint8Array((9 << 20) + 123);
    for (let i = 0, x = 7; i < bytes.length; i++) bytes[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
    await writeFile(join(dir, "big.bin"), bytes);
    await writeFile(join(dir, "empty.bin"), new Uint8Array(0));
    const head = new TextEncoder().encode(`blob ${bytes.length}\0`);
    const withHead = new Uint8Array(head.length + bytes.length);
    withHead.set(head);
    withHead.set(bytes, head.length);
    const hex = async (algorithm: string, b: Uint8Array) =>
      Array.from(
        new Uint8Array(await crypto.subtle.digest(algorithm, b as Uint8Array<ArrayBuffer>)),
        (x) => x.toString(16).padStart(2, "0"),
      ).join("");
    const sha256 = await hex("SHA-256", bytes);
    const gitId = await hex("SHA-1", withHead);
    const big = (await localSource(dir).openRanges!("big.bin"))!;
    // The event loop gets a turn between chunks: one asked for before the check comes during it.
    let fired = false;
    eventLoopTurn().then(() => fired = true);
    const checking = matchesEtagRanges(sha256, big).then((ok) => ({ ok, firedBefore: fired }));
    assert.deepEqual(await checking, { ok: true, firedBefore: true });
    assert.equal(await matchesEtagRanges(gitId, big), true);
    assert.equal(await matchesEtag(gitId, bytes), true);
    assert.equal(await matchesEtagRanges("0".repeat(64), big), false);
    assert.equal(await matchesEtagRanges("0".repeat(40), big), false);
    assert.equal(await matchesEtagRanges("not-a-hash", big), undefined);
    const empty = (await localSource(dir).openRanges!("empty.bin"))!;
    assert.equal(await matchesEtagRanges(await hex("SHA-256", new Uint8Array(0)), empty), true);
    // A byte changed in the last chunk is found; a file rewritten since it was opened is refused, naming it.
    bytes[bytes.length - 1] ^= 1;
    await writeFile(join(dir, "big.bin"), bytes);
    await assert.rejects(
      matchesEtagRanges(sha256, big),
      (err) => err instanceof FileAccessError && err.file === "big.bin",
    );
    assert.equal(await matchesEtagRanges(sha256, (await localSource(dir).openRanges!("big.bin"))!), false);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
