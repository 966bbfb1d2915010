// Hub downloads in a browser are kept in the Cache API (the default there): in headless Chromium, the test base and
// adapter loaded by Hub repo id from the test Hub give PEFT's logits; loading them again in the same page and after a
// reload makes no file request to the Hub server (only the branch is resolved), a pinned commit no request at all,
// and the logits are the same. A cached blob corrupted in place is fetched again with verifyCache, and offline it is a
// HubError "corrupt": never used; a download cut short stores nothing; two tabs loading at once download each
// file once. Chromium's HTTP cache is off (tests/support/browser_hub.mjs), so what the server did not see came from
// the Cache API. Runs once, in the Deno suite; tests/run_all.sh installs Debian's chromium.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LoggedRequest, startTestHub } from "./support/hub_server.ts";
import { serveFolder } from "./support/static_server.ts";
import { expected, fixture, maxAbsDiff } from "./support/fixtures.ts";
import { bundleForBrowser, chromiumSkip, REPO, runInRepo } from "./support/browser.ts";

const BASE = "test/llama-tiny";
const ADAPTER = "test/llama-tiny-lora-qv";
const FILE = "adapter_model.safetensors";

interface LoadResult {
  storage: string;
  logits?: number[];
  error?: { name: string; hubError: boolean; reason?: string; message: string };
}

/** The requests the Hub saw during a phase: between its `/__mark/<phase>` and the next mark. */
function during(requests: LoggedRequest[], phase: string): LoggedRequest[] {
  const start = requests.findIndex((r) => r.path === `/__mark/${phase}`);
  assert.ok(start >= 0, `no mark for ${phase}`);
  const end = requests.findIndex((r, i) => i > start && r.path.startsWith("/__mark/"));
  return requests.slice(start + 1, end < 0 ? undefined : end);
}

const files = (requests: LoggedRequest[]) => requests.filter((r) => r.path.includes("/resolve/"));

test("in headless Chromium, Hub downloads are kept in the Cache API across loads and reloads, checked when asked", {
  skip: chromiumSkip,
  timeout: 240_000,
}, async () => {
  const hub = await startTestHub({
    repos: { [BASE]: { folder: fixture("llama-tiny") }, [ADAPTER]: { folder: fixture("llama-tiny-lora-qv") } },
    // Before the driver's next step: downloads are cut in half during "truncated", slowed down during "tabs".
    onRequest: (r) => {
      if (r.path === "/__mark/truncated") hub.fail = "truncate";
      else if (r.path === "/__mark/tabs") hub.fail = "slow";
      else if (r.path.startsWith("/__mark/")) hub.fail = undefined;
    },
  });
  const out = await mkdtemp(join(tmpdir(), "peft-edge-browser-hub-"));
  const server = await serveFolder(out);
  try {
    await bundleForBrowser("tests/support/browser_hub_page.ts", out);
    await writeFile(
      join(out, "index.html"),
      '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><script type="module" src="./browser_hub_page.js"></script>',
    );
    await symlink(join(REPO, "node_modules/onnxruntime-web/dist"), join(out, "ort"));
    const e = await expected("llama-tiny-lora-qv");
    const spec = {
      load: { hubUrl: hub.url, base: BASE, adapter: ADAPTER, inputIds: Array.from(e.inputIds, Number) },
      baseCommit: hub.commitOf(BASE),
      adapterCommit: hub.commitOf(ADAPTER),
      file: FILE,
    };
    const stdout = await runInRepo("node", [
      "tests/support/browser_hub.mjs",
      `${server.url}/index.html`,
      JSON.stringify(spec),
    ]);
    const result = JSON.parse(stdout.trim().split("\n").pop()!) as {
      phases: Record<string, LoadResult> & {
        corrupted: boolean;
        corruptedAgain: boolean;
        keysAfterTruncated: string[];
      };
      keys: string[];
      errors: string[];
    };
    const { phases } = result;
    assert.deepEqual(result.errors, []);

    const first = phases.first;
    assert.equal(first.error, undefined, first.error?.message ?? "");
    assert.equal(first.storage, "cache-api", "a page's default Hub cache is the Cache API");
    assert.ok(maxAbsDiff(new Float32Array(first.logits!), e.logits) < 1e-4, "PEFT's logits");
    const downloaded = files(during(hub.requests, "first")).filter((r) => r.method === "GET" && !r.range);
    for (
      const file of [
        `/${BASE}/resolve/${spec.baseCommit}/onnx/model.onnx`,
        `/${ADAPTER}/resolve/${spec.adapterCommit}/${FILE}`,
      ]
    ) {
      assert.ok(downloaded.some((r) => r.path === file), `the first load downloaded ${file}`);
    }

    for (const phase of ["again", "reload"]) {
      assert.deepEqual(phases[phase].logits, first.logits, `${phase}: the same logits`);
      const seen = during(hub.requests, phase);
      assert.deepEqual(files(seen), [], `${phase}: no file request`);
      // Only the branch is resolved, once per repo, as the disk cache does for revision "main".
      assert.deepEqual(
        seen.map((r) => `${r.method} ${r.path}`).sort(),
        [`GET /api/models/${BASE}/revision/main`, `GET /api/models/${ADAPTER}/revision/main`].sort(),
      );
    }
    assert.deepEqual(phases.pinned.logits, first.logits, "pinned: the same logits");
    assert.deepEqual(during(hub.requests, "pinned"), [], "a pinned commit: no request at all");

    const folder = (id: string) => `/models--${id.replace("/", "--")}`;
    for (const key of [`${folder(ADAPTER)}/refs/main`, `${folder(ADAPTER)}/snapshots/${spec.adapterCommit}/${FILE}`]) {
      assert.ok(result.keys.includes(key), `cached under ${key}: ${result.keys.join(", ")}`);
    }
    assert.ok(result.keys.some((k) => k.startsWith(`${folder(BASE)}/blobs/`)), "the base's blobs are cached");

    assert.equal(phases.corrupted, true);
    assert.equal(phases.verified.error, undefined, phases.verified.error?.message ?? "");
    assert.deepEqual(phases.verified.logits, first.logits, "the corrupted blob was not used");
    const refetched = files(during(hub.requests, "verified")).filter((r) => r.method === "GET" && !r.range);
    assert.deepEqual(refetched.map((r) => r.path), [`/${ADAPTER}/resolve/${spec.adapterCommit}/${FILE}`]);

    assert.equal(phases.corruptedAgain, true);
    assert.equal(phases.offline.logits, undefined, "offline, the corrupted blob is refused");
    assert.equal(phases.offline.error?.hubError, true, phases.offline.error?.message ?? "");
    assert.equal(phases.offline.error?.reason, "corrupt", phases.offline.error?.message ?? "");
    assert.deepEqual(during(hub.requests, "offline"), [], "offline: no request");

    // A download cut short (retries: 0, so no resume) leaves no blob and no snapshot entry in the Cache API.
    const cut = phases.truncated.error;
    assert.ok(cut?.hubError && /cut short: got \d+ of \d+ bytes/.test(cut.message), JSON.stringify(cut));
    assert.ok(files(during(hub.requests, "truncated")).length > 0, "the truncated phase did download");
    assert.deepEqual(phases.keysAfterTruncated.filter((k) => k.includes("/blobs/") || k.includes("/snapshots/")), []);
    assert.deepEqual(phases.recovered.logits, first.logits, "after the Hub recovers, the same logits");

    // Two tabs at once: each file downloaded once (the other tab waited on the blob's Web Lock), same logits.
    assert.deepEqual(phases.tabs.logits, first.logits);
    assert.deepEqual(phases.otherTab.logits, first.logits);
    const tabs = files(during(hub.requests, "tabs")).filter((r) => r.method === "GET" && !r.range).map((r) => r.path);
    assert.ok(tabs.length > 0, "the tabs downloaded");
    assert.deepEqual(tabs, [...new Set(tabs)], "no file downloaded twice");
  } finally {
    await server.close();
    await hub.stop();
    await rm(out, { recursive: true, force: true });
  }
});
