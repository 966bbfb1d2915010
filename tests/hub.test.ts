import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile, readlink, symlink, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { FileNotFoundError, HubError, PeftEdgeError, UnsupportedError } from "../src/errors.ts";
import { DEFAULT_HUB_URL, hubSettings, hubSource, isValidRepoId, memoryHubCache } from "../src/hub/mod.ts";
import { resolveSource } from "../src/hub/resolve.ts";
import { listTree, sha256Hex, type TestHub, withEnv, withHubAndCache, withTempDir } from "./support/hub_server.ts";

const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));
const QV = `${FIXTURES}llama-tiny-lora-qv`;
const TOKEN = "hf_valid_reader_token";
const APPROVED = "hf_approved_reader_token";
const enc = new TextEncoder();

async function fixtureBytes(path: string): Promise<Uint8Array> {
  return new Uint8Array(await readFile(`${FIXTURES}${path}`));
}

/** Runs a test with a fresh test Hub, a fresh cache folder and a clean environment. */
function hubTest(name: string, fn: (hub: TestHub, cacheDir: string) => Promise<void>) {
  test(name, async () =>
    withHubAndCache({
      repos: {
        "test/llama-tiny-lora-qv": { folder: QV },
        "test/fixtures": { folder: FIXTURES.replace(/\/$/, "") },
        "single-name": { folder: `${FIXTURES}gpt2-tiny-lora-c_attn` },
        "test/private": { folder: QV, private: true },
        "test/gated": { folder: QV, gated: true },
        "test/bin-only": {
          files: {
            "adapter_config.json": await fixtureBytes("llama-tiny-lora-qv/adapter_config.json"),
            "adapter_model.bin": enc.encode("PK\u0003\u0004 not really a pickle"),
          },
        },
      },
      tokens: [TOKEN, APPROVED],
      approvedTokens: [APPROVED],
    }, fn));
}

/** Asserts a rejection is a HubError naming repo, revision and file, and returns it. */
async function hubFailure(promise: Promise<unknown>, repo: string, revision: string, file: string): Promise<HubError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  assert.ok(error instanceof HubError, `expected a HubError, got ${error}`);
  assert.ok(error instanceof PeftEdgeError);
  // A 5xx or a refused connection is no missing file; reason "not_found" says that one.
  assert.ok(!(error instanceof FileNotFoundError));
  assert.equal(error.repo, repo);
  assert.equal(error.revision, revision);
  for (const part of [repo, revision, file]) {
    assert.ok(error.message.includes(part), `${part} not in: ${error.message}`);
  }
  assert.ok(!error.message.includes(TOKEN) && !error.message.includes(APPROVED), "a token leaked into a message");
  return error;
}

/** Asserts the cache holds no partial download, no blob and no snapshot entry. */
async function assertNothingCached(cacheDir: string) {
  const files = await listTree(cacheDir);
  assert.deepEqual(
    files.filter((f) => f.includes("/blobs/") || f.includes("/snapshots/") || f.endsWith(".incomplete")),
    [],
  );
}

const REPO = "test/llama-tiny-lora-qv";

hubTest("a file read by repo id equals the fixture, cached in Python's layout", async (hub, cacheDir) => {
  const src = await resolveSource(REPO, { hubUrl: hub.url, cacheDir });
  assert.equal(src.location, `${REPO}@main`);
  for (const file of ["adapter_config.json", "adapter_model.safetensors"]) {
    assert.deepEqual(await src.read(file), await fixtureBytes(`llama-tiny-lora-qv/${file}`));
  }
  assert.equal(await src.exists("adapter_config.json"), true);
  assert.equal(await src.exists("tokenizer.json"), false);

  const commit = hub.commitOf(REPO);
  const repoDir = `${cacheDir}/models--test--llama-tiny-lora-qv`;
  assert.equal(await readFile(`${repoDir}/refs/main`, "utf8"), commit);
  const weights = await fixtureBytes("llama-tiny-lora-qv/adapter_model.safetensors");
  const blob = await sha256Hex(weights);
  assert.equal(await readlink(`${repoDir}/snapshots/${commit}/adapter_model.safetensors`), `../../blobs/${blob}`);
  assert.deepEqual(new Uint8Array(await readFile(`${repoDir}/blobs/${blob}`)), weights);
  const tree = await listTree(repoDir);
  assert.ok(tree.includes(`.no_exist/${commit}/tokenizer.json`));
  assert.deepEqual(tree.filter((f) => f.endsWith(".incomplete")), []);
  // Only the two files were downloaded (one full GET each).
  assert.equal(hub.requests.filter((r) => r.path.includes("/resolve/") && !r.range).length, 2);
});

hubTest("a repo id without an org works", async (hub, cacheDir) => {
  const src = await resolveSource("single-name", { hubUrl: hub.url, cacheDir });
  assert.deepEqual(
    await src.read("adapter_config.json"),
    await fixtureBytes("gpt2-tiny-lora-c_attn/adapter_config.json"),
  );
  assert.ok((await listTree(cacheDir)).some((f) => f.startsWith("models--single-name/snapshots/")));
});

hubTest("a second load with a pinned revision makes no request", async (hub, cacheDir) => {
  const revision = hub.commitOf(REPO);
  const load = async () => {
    const src = await resolveSource(REPO, { hubUrl: hub.url, cacheDir, revision });
    const config = await src.read("adapter_config.json");
    const weights = await src.read("adapter_model.safetensors");
    const hasTokenizer = await src.exists("tokenizer.json");
    return { config, weights, hasTokenizer };
  };
  const first = await load();
  assert.ok(hub.requests.length > 0);
  assert.ok(!hub.requests.some((r) => r.path.startsWith("/api/")), "a commit revision needs no API call");
  const before = hub.requests.length;
  const second = await load();
  assert.equal(hub.requests.length, before, "the pinned second load made requests");
  assert.deepEqual(second, first);
});

hubTest(
  'revision "main" resolves to the commit the server reports, and follows it when it moves',
  async (hub, cacheDir) => {
    const src = await hubSource(REPO, { hubUrl: hub.url, cacheDir });
    assert.equal(await src.commit(), hub.commitOf(REPO));
    await src.read("adapter_config.json");

    const moved = "1234567890abcdef1234567890abcdef12345678";
    hub.setCommit(REPO, moved);
    const again = await hubSource(REPO, { hubUrl: hub.url, cacheDir });
    const before = hub.requests.length;
    assert.deepEqual(
      await again.read("adapter_config.json"),
      await fixtureBytes("llama-tiny-lora-qv/adapter_config.json"),
    );
    assert.equal(await again.commit(), moved);
    const repoDir = `${cacheDir}/models--test--llama-tiny-lora-qv`;
    assert.equal(await readFile(`${repoDir}/refs/main`, "utf8"), moved);
    assert.ok((await listTree(repoDir)).includes(`snapshots/${moved}/adapter_config.json`));
    // Same content (same ETag): the blob is reused, no body is downloaded again.
    assert.equal(hub.requests.slice(before).filter((r) => r.path.includes("/resolve/") && !r.range).length, 0);
  },
);

hubTest("subfolder reads files from a folder inside the repo", async (hub, cacheDir) => {
  const src = await resolveSource("test/fixtures", { hubUrl: hub.url, cacheDir, subfolder: "llama-tiny-lora-qv" });
  assert.equal(src.location, "test/fixtures@main/llama-tiny-lora-qv");
  assert.deepEqual(
    await src.read("adapter_model.safetensors"),
    await fixtureBytes("llama-tiny-lora-qv/adapter_model.safetensors"),
  );
  const base = await resolveSource("test/fixtures", { hubUrl: hub.url, cacheDir, subfolder: "llama-tiny/" });
  assert.deepEqual(await base.read("onnx/model.onnx"), await fixtureBytes("llama-tiny/onnx/model.onnx"));
  const commit = hub.commitOf("test/fixtures");
  const pointer = `${cacheDir}/models--test--fixtures/snapshots/${commit}/llama-tiny/onnx/model.onnx`;
  assert.ok((await readlink(pointer)).startsWith("../../../../blobs/"));
  await assert.rejects(
    resolveSource("test/fixtures", { hubUrl: hub.url, cacheDir, subfolder: "../escape" }),
    HubError,
  );
});

hubTest("404 for a missing repo, revision or file names them and caches nothing", async (hub, cacheDir) => {
  const noRepo = await hubSource("test/does-not-exist", { hubUrl: hub.url, cacheDir });
  const e1 = await hubFailure(noRepo.read("adapter_config.json"), "test/does-not-exist", "main", "adapter_config.json");
  assert.equal(e1.status, 404);
  assert.equal(e1.reason, "not_found");
  assert.match(e1.message, /repository not found/);

  const noRevision = await hubSource(REPO, { hubUrl: hub.url, cacheDir, revision: "no-such-branch" });
  const e2 = await hubFailure(noRevision.read("adapter_config.json"), REPO, "no-such-branch", "adapter_config.json");
  assert.match(e2.message, /revision not found/);
  await assertNothingCached(cacheDir);

  const src = await hubSource(REPO, { hubUrl: hub.url, cacheDir });
  const e3 = await hubFailure(src.read("missing.json"), REPO, "main", "missing.json");
  assert.equal(e3.status, 404);
  assert.match(e3.message, /file not found/);
  assert.equal(await src.exists("missing.json"), false);
  await assertNothingCached(cacheDir);
});

hubTest("401 without a token for a private repo; the token option or HF_TOKEN fixes it", async (hub, cacheDir) => {
  const anonymous = await hubSource("test/private", { hubUrl: hub.url, cacheDir });
  const error = await hubFailure(anonymous.read("adapter_config.json"), "test/private", "main", "adapter_config.json");
  assert.equal(error.status, 401);
  assert.equal(error.reason, "unauthorized");
  assert.match(error.message, /HF_TOKEN/);
  await assertNothingCached(cacheDir);

  const withOption = await hubSource("test/private", { hubUrl: hub.url, cacheDir, token: TOKEN });
  assert.deepEqual(
    await withOption.read("adapter_config.json"),
    await fixtureBytes("llama-tiny-lora-qv/adapter_config.json"),
  );
  await withEnv({ HF_TOKEN: TOKEN }, async () => {
    const fromEnv = await hubSource("test/private", { hubUrl: hub.url, cacheDir });
    assert.ok((await fromEnv.read("adapter_model.safetensors")).length > 0);
  });
  assert.ok(hub.requests.filter((r) => r.token !== undefined).every((r) => r.token === TOKEN));

  const badFormat = "not-a-token-secret";
  const invalid = await hubSource("test/private", { hubUrl: hub.url, cacheDir, token: badFormat }).catch((e) => e);
  assert.ok(invalid instanceof HubError && invalid.reason === "invalid");
  assert.ok(!invalid.message.includes(badFormat));
});

hubTest("403 on a gated repo explains how to get access; an approved token works", async (hub, cacheDir) => {
  const notApproved = await hubSource("test/gated", { hubUrl: hub.url, cacheDir, token: TOKEN });
  const error = await hubFailure(
    notApproved.read("adapter_model.safetensors"),
    "test/gated",
    "main",
    "adapter_model.safetensors",
  );
  assert.equal(error.status, 403);
  assert.equal(error.reason, "gated");
  assert.ok(error.message.includes(`${hub.url}/test/gated`));
  const anonymous = await hubSource("test/gated", { hubUrl: hub.url, cacheDir });
  const e401 = await hubFailure(
    anonymous.read("adapter_model.safetensors"),
    "test/gated",
    "main",
    "adapter_model.safetensors",
  );
  assert.equal(e401.reason, "gated");
  await assertNothingCached(cacheDir);

  const approved = await hubSource("test/gated", { hubUrl: hub.url, cacheDir, token: APPROVED });
  assert.deepEqual(
    await approved.read("adapter_model.safetensors"),
    await fixtureBytes("llama-tiny-lora-qv/adapter_model.safetensors"),
  );
});

hubTest("5xx gives a server error and caches nothing; a retry after recovery succeeds", async (hub, cacheDir) => {
  const src = await hubSource(REPO, { hubUrl: hub.url, cacheDir });
  hub.fail = { status: 503 };
  const early = await hubFailure(src.read("adapter_config.json"), REPO, "main", "adapter_config.json");
  assert.equal(early.status, 503);
  assert.equal(early.reason, "server");
  await assertNothingCached(cacheDir);
  hub.fail = undefined;
  assert.ok((await src.read("adapter_config.json")).length > 0);

  hub.fail = { status: 500 };
  const late = await hubFailure(src.read("adapter_model.safetensors"), REPO, "main", "adapter_model.safetensors");
  assert.equal(late.status, 500);
  assert.ok(
    !(await listTree(cacheDir)).some((f) => f.endsWith("adapter_model.safetensors") || f.endsWith(".incomplete")),
  );
  hub.fail = undefined;
  assert.deepEqual(
    await src.read("adapter_model.safetensors"),
    await fixtureBytes("llama-tiny-lora-qv/adapter_model.safetensors"),
  );
});

hubTest("connection refused names the endpoint; a retry after the server is back succeeds", async (hub, cacheDir) => {
  const src = await hubSource(REPO, { hubUrl: hub.url, cacheDir });
  await hub.stop();
  const error = await hubFailure(src.read("adapter_config.json"), REPO, "main", "adapter_config.json");
  assert.equal(error.reason, "network");
  assert.equal(error.status, undefined);
  assert.ok(error.message.includes(hub.url));
  await assertNothingCached(cacheDir);
  await hub.start();
  assert.deepEqual(await src.read("adapter_config.json"), await fixtureBytes("llama-tiny-lora-qv/adapter_config.json"));
});

hubTest(
  "a dropped body is resumed with Range; without retries it is an error that caches nothing",
  async (hub, cacheDir) => {
    const weights = await fixtureBytes("llama-tiny-lora-qv/adapter_model.safetensors");
    const strict = await hubSource(REPO, { hubUrl: hub.url, cacheDir, retries: 0 });
    hub.fail = "truncate";
    const error = await hubFailure(strict.read("adapter_model.safetensors"), REPO, "main", "adapter_model.safetensors");
    assert.equal(error.reason, "network");
    assert.match(error.message, /cut short/);
    await assertNothingCached(cacheDir);

    // With retries (the default) the download goes on from where the connection dropped.
    const resuming = await hubSource(REPO, { hubUrl: hub.url, cacheDir });
    const before = hub.requests.length;
    assert.deepEqual(await resuming.read("adapter_model.safetensors"), weights);
    const resumed = hub.requests.slice(before).filter((r) => r.range?.match(/^bytes=[1-9]\d*-$/));
    assert.equal(resumed.length, 1, "one request resumed the body with Range");
    assert.deepEqual((await listTree(cacheDir)).filter((f) => f.endsWith(".incomplete")), []);
    hub.fail = undefined;
  },
);

hubTest("offline mode with a warm cache works with the server stopped", async (hub, cacheDir) => {
  const warm = await hubSource(REPO, { hubUrl: hub.url, cacheDir });
  const config = await warm.read("adapter_config.json");
  const weights = await warm.read("adapter_model.safetensors");
  assert.equal(await warm.exists("tokenizer.json"), false);
  await hub.stop();
  const requests = hub.requests.length;

  const offline = await resolveSource(REPO, { hubUrl: hub.url, cacheDir, localFilesOnly: true });
  assert.deepEqual(await offline.read("adapter_config.json"), config);
  assert.deepEqual(await offline.read("adapter_model.safetensors"), weights);
  assert.equal(await offline.exists("tokenizer.json"), false);
  const missing = await hubFailure(offline.read("expected.safetensors"), REPO, "main", "expected.safetensors");
  assert.equal(missing.reason, "offline");
  assert.match(missing.message, /offline/);

  await withEnv({ HF_HUB_OFFLINE: "1", HF_ENDPOINT: hub.url }, async () => {
    const fromEnv = await resolveSource(REPO, { cacheDir });
    assert.deepEqual(await fromEnv.read("adapter_model.safetensors"), weights);
    const cold = await resolveSource("test/private", { cacheDir });
    const e = await hubFailure(cold.read("adapter_config.json"), "test/private", "main", "adapter_config.json");
    assert.equal(e.reason, "offline");
  });

  // Without offline mode, a server that cannot be reached falls back to the cache (as Python does).
  const fallback = await resolveSource(REPO, { hubUrl: hub.url, cacheDir });
  assert.deepEqual(await fallback.read("adapter_config.json"), config);
  const notCached = await hubFailure(fallback.read("expected.safetensors"), REPO, "main", "expected.safetensors");
  assert.equal(notCached.reason, "network");
  assert.equal(hub.requests.length, requests);
});

hubTest("a Python-layout cache prepared by hand is found and used", async (hub, cacheDir) => {
  const commit = "a".repeat(40);
  const repoDir = `${cacheDir}/models--py--adapter`;
  const files = ["adapter_config.json", "adapter_model.safetensors"];
  await mkdir(`${repoDir}/blobs`, { recursive: true });
  await mkdir(`${repoDir}/snapshots/${commit}`, { recursive: true });
  await mkdir(`${repoDir}/refs`, { recursive: true });
  for (const file of files) {
    const bytes = await fixtureBytes(`llama-tiny-lora-qv/${file}`);
    const blob = await sha256Hex(bytes);
    await writeFile(`${repoDir}/blobs/${blob}`, bytes);
    await symlink(`../../blobs/${blob}`, `${repoDir}/snapshots/${commit}/${file}`);
  }
  await writeFile(`${repoDir}/refs/main`, commit);

  const offline = await resolveSource("py/adapter", { cacheDir, localFilesOnly: true });
  for (const file of files) {
    assert.deepEqual(await offline.read(file), await fixtureBytes(`llama-tiny-lora-qv/${file}`));
  }

  // A pinned commit needs no server at all (this one does not know the repo).
  const pinned = await resolveSource("py/adapter", { cacheDir, revision: commit, hubUrl: hub.url });
  assert.deepEqual(
    await pinned.read("adapter_model.safetensors"),
    await fixtureBytes("llama-tiny-lora-qv/adapter_model.safetensors"),
  );
  assert.equal(hub.requests.length, 0);

  // Found through HF_HUB_CACHE, and through HF_HOME (<HF_HOME>/hub).
  await withEnv({ HF_HUB_CACHE: cacheDir, HF_HUB_OFFLINE: "1" }, async () => {
    assert.ok((await (await resolveSource("py/adapter")).read("adapter_config.json")).length > 0);
  });
  await withTempDir(async (home) => {
    await mkdir(`${home}/hub`);
    await symlink(repoDir, `${home}/hub/models--py--adapter`);
    await withEnv({ HF_HOME: home, HF_HUB_OFFLINE: "true" }, async () => {
      assert.ok((await (await resolveSource("py/adapter")).read("adapter_config.json")).length > 0);
    });
  });
});

hubTest("HF_ENDPOINT, HF_TOKEN and HF_HOME are honoured; options win over them", async (hub) => {
  await withTempDir(async (home) => {
    await withEnv({ HF_ENDPOINT: hub.url, HF_TOKEN: TOKEN, HF_HOME: home }, async () => {
      const src = await resolveSource("test/private");
      assert.deepEqual(
        await src.read("adapter_config.json"),
        await fixtureBytes("llama-tiny-lora-qv/adapter_config.json"),
      );
      assert.ok(hub.requests.length > 0 && hub.requests.every((r) => r.token === TOKEN));
      const commit = hub.commitOf("test/private");
      assert.ok(
        (await listTree(`${home}/hub`)).includes(`models--test--private/snapshots/${commit}/adapter_config.json`),
      );

      // Explicit options override the environment.
      await withTempDir(async (other) => {
        const explicit = await resolveSource("test/private", { cacheDir: other, token: APPROVED, hubUrl: hub.url });
        await explicit.read("adapter_config.json");
        assert.equal(hub.requests[hub.requests.length - 1].token, APPROVED);
        assert.ok((await listTree(other)).includes(`models--test--private/snapshots/${commit}/adapter_config.json`));
      });
      const wrongEndpoint = await resolveSource(REPO, { hubUrl: "http://127.0.0.1:9", cacheDir: home });
      const e = await wrongEndpoint.read("adapter_config.json").catch((error) => error);
      assert.ok(e instanceof HubError && e.reason === "network" && e.message.includes("127.0.0.1:9"));
    });
    // HF_HUB_CACHE beats HF_HOME.
    await withTempDir(async (hubCache) => {
      await withEnv({ HF_ENDPOINT: hub.url, HF_HOME: home, HF_HUB_CACHE: hubCache }, async () => {
        await (await resolveSource(REPO)).read("adapter_config.json");
        assert.ok((await listTree(hubCache)).some((f) => f.startsWith("models--test--llama-tiny-lora-qv/snapshots/")));
        assert.ok(!(await listTree(home)).some((f) => f.includes("llama-tiny-lora-qv")));
      });
    });
  });
});

hubTest("the huggingface-cli login token file is used when no token is given", async (hub, cacheDir) => {
  await withTempDir(async (home) => {
    await writeFile(`${home}/token`, `${TOKEN}\n`);
    await withEnv({ HF_HOME: home }, async () => {
      const src = await hubSource("test/private", { hubUrl: hub.url, cacheDir });
      assert.ok((await src.read("adapter_config.json")).length > 0);
      assert.equal(hub.requests[hub.requests.length - 1].token, TOKEN);
    });
    await writeFile(`${home}/other-token`, APPROVED);
    await withEnv({ HF_HOME: home, HF_TOKEN_PATH: `${home}/other-token` }, async () => {
      const src = await hubSource("test/gated", { hubUrl: hub.url, cacheDir });
      assert.ok((await src.read("adapter_config.json")).length > 0);
      assert.equal(hub.requests[hub.requests.length - 1].token, APPROVED);
    });
    // HF_TOKEN wins over the file.
    await withEnv({ HF_HOME: home, HF_TOKEN: APPROVED }, async () => {
      await (await hubSource("test/private", { hubUrl: hub.url, cacheDir: `${cacheDir}/2` })).read(
        "adapter_config.json",
      );
      assert.equal(hub.requests[hub.requests.length - 1].token, APPROVED);
    });
  });
});

hubTest("onProgress reports the bytes of each downloaded file", async (hub, cacheDir) => {
  const events: { file: string; loaded: number; total?: number }[] = [];
  const src = await resolveSource(REPO, { hubUrl: hub.url, cacheDir, onProgress: (p) => events.push(p) });
  const weights = await src.read("adapter_model.safetensors");
  const config = await src.read("adapter_config.json");
  for (const [file, bytes] of [["adapter_model.safetensors", weights], ["adapter_config.json", config]] as const) {
    const mine = events.filter((e) => e.file === file);
    assert.ok(mine.length > 0, `no progress for ${file}`);
    assert.ok(mine.every((e, i) => e.total === bytes.length && (i === 0 || e.loaded > mine[i - 1].loaded)));
    assert.equal(mine[mine.length - 1].loaded, bytes.length);
  }
  const count = events.length;
  await src.read("adapter_model.safetensors");
  assert.equal(events.length, count, "a cached file reports no progress");
});

hubTest("concurrent reads of one file download it once", async (hub, cacheDir) => {
  const src = await hubSource(REPO, { hubUrl: hub.url, cacheDir });
  const reads = await Promise.all([1, 2, 3].map(() => src.read("adapter_model.safetensors")));
  assert.deepEqual(reads[1], reads[0]);
  assert.equal(hub.requests.filter((r) => r.path.endsWith("adapter_model.safetensors") && !r.range).length, 1);
});

hubTest("an in-memory cache serves a pinned revision again without requests", async (hub, cacheDir) => {
  const cache = memoryHubCache();
  const revision = hub.commitOf(REPO);
  const first = await resolveSource(REPO, { hubUrl: hub.url, cache, revision });
  const bytes = await first.read("adapter_model.safetensors");
  const before = hub.requests.length;
  const second = await resolveSource(REPO, { hubUrl: hub.url, cache, revision });
  assert.deepEqual(await second.read("adapter_model.safetensors"), bytes);
  assert.equal(hub.requests.length, before);
  assert.deepEqual(await listTree(cacheDir), [], "the disk cache was not touched");
  // With "main", the memory cache also keeps the ref for offline use.
  await (await resolveSource(REPO, { hubUrl: hub.url, cache })).read("adapter_config.json");
  await hub.stop();
  const offline = await resolveSource(REPO, { cache, localFilesOnly: true });
  assert.ok((await offline.read("adapter_config.json")).length > 0);
});

hubTest("a .bin-only adapter repo says that only safetensors is loaded", async (hub, cacheDir) => {
  const src = await resolveSource("test/bin-only", { hubUrl: hub.url, cacheDir });
  const error = await src.read("adapter_model.safetensors").catch((e) => e);
  assert.ok(error instanceof UnsupportedError, `got ${error}`);
  assert.match(error.message, /adapter_model\.bin/);
  assert.match(error.message, /only safetensors/);
  assert.match(error.message, /pickle/);
  assert.equal(hub.requests.filter((r) => r.path.endsWith(".bin") && !r.range).length, 0, "the pickle was downloaded");
});

test("strings that are neither a folder nor a valid repo id get a clear error", async () => {
  for (const bad of ["org/name/extra", "bad--name", "a..b", "-leading", "name.git", "x".repeat(97), "org/ space"]) {
    assert.equal(isValidRepoId(bad), false, bad);
    const error = await resolveSource(bad).catch((e) => e);
    assert.ok(error instanceof FileNotFoundError, bad);
    assert.match(error.message, /neither an existing local folder, an http\(s\) URL nor a valid Hub repo id/);
  }
  for (const good of ["gpt2", "org/name", "Org_1/name-2.v3", "x".repeat(96)]) {
    assert.equal(isValidRepoId(good), true, good);
  }
  // Paths that look local are never sent to the Hub.
  await assert.rejects(resolveSource("./no/such/folder"), FileNotFoundError);
});

test("bad file names never reach the network or the cache", async () => {
  await withTempDir(async (cacheDir) => {
    const src = await hubSource("org/name", { hubUrl: "http://127.0.0.1:9", cacheDir, revision: "b".repeat(40) });
    for (const bad of ["../x", "/etc/passwd", "a//b", "a\\b", "C:x"]) {
      const error = await src.read(bad).catch((e) => e);
      assert.ok(error instanceof HubError && error.reason === "invalid", bad);
    }
    assert.deepEqual(await listTree(cacheDir), []);
  });
});

test("settings come from options, then HF_* variables, then Python's defaults", async () => {
  await withEnv({ HOME: "/home/u", XDG_CACHE_HOME: undefined }, async () => {
    assert.deepEqual(hubSettings({}), {
      endpoint: DEFAULT_HUB_URL,
      token: undefined,
      cacheDir: "/home/u/.cache/huggingface/hub",
      cacheStorage: undefined,
      cacheName: "peft-edge-hub",
      offline: false,
    });
    await withEnv({ HOME: "/home/u", XDG_CACHE_HOME: "/x" }, () => {
      assert.equal(hubSettings({}).cacheDir, "/x/huggingface/hub");
    });
    await withEnv({
      HOME: "/home/u",
      HF_HOME: "~/hf",
      HF_ENDPOINT: "http://mirror.test/",
      HF_TOKEN: "hf_env",
      HF_HUB_OFFLINE: "YES",
    }, () => {
      assert.deepEqual(hubSettings({}), {
        endpoint: "http://mirror.test",
        token: "hf_env",
        cacheDir: "/home/u/hf/hub",
        cacheStorage: undefined,
        cacheName: "peft-edge-hub",
        offline: true,
      });
      assert.deepEqual(hubSettings({ hubUrl: "http://other", token: "hf_opt", cacheDir: "/c" }), {
        endpoint: "http://other",
        token: "hf_opt",
        cacheDir: "/c",
        cacheStorage: undefined,
        cacheName: "peft-edge-hub",
        offline: true,
      });
    });
    await withEnv({ HOME: "/home/u", HF_HOME: "/hf", HF_HUB_CACHE: "/hubcache", HF_HUB_OFFLINE: "0" }, () => {
      assert.equal(hubSettings({}).cacheDir, "/hubcache");
      assert.equal(hubSettings({}).offline, false);
      assert.equal(hubSettings({ localFilesOnly: true }).offline, true);
    });
  });
});
