/**
 * Adapter management over HTTP: loading from a local root and from a
 * (test) Hub, listing, eviction by count and by bytes (least recently used
 * among adapters no request is using), shared concurrent loads, deleting
 * (also while in use), and failing loads (bad id, corrupt files, Hub down)
 * that leave every other adapter serving.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { startTestHub, withTempDir } from "./support/hub_server.ts";
import {
  ADMIN,
  call,
  DEMO_ADAPTER,
  loadDemo,
  makeAdapterRoot,
  references,
  type Service,
  waitFor,
  withService,
} from "./support/server_setup.ts";

const demo = await loadDemo();
const refs = await references();
const root = await makeAdapterRoot();
const LONG = { timeout: 120_000 };
after(() => root.remove());

const pythonText = refs.find((r) => r.variant === "adapter" && r.prompt === "def ")!.text;
const baseText = refs.find((r) => r.variant === "base" && r.prompt === "def ")!.text;

/** Loads an adapter over HTTP. */
function load(url: string, id: string, name: string, revision?: string) {
  return call(url, "POST", "/v1/adapters", { token: ADMIN, body: { id, name, revision } });
}

/** The names of the adapters listed, in order. */
async function listed(url: string): Promise<string[]> {
  const { status, body } = await call(url, "GET", "/v1/adapters", { token: ADMIN });
  assert.equal(status, 200);
  // deno-lint-ignore no-explicit-any
  return body.data.map((a: any) => a.name);
}

/** A short greedy completion of "def " (its first 16 bytes). */
async function complete(url: string, model: string): Promise<{ status: number; text?: string }> {
  const { status, body } = await call(url, "POST", "/v1/completions", {
    body: { model, prompt: "def ", max_tokens: 16, temperature: 0 },
  });
  return { status, text: body.choices?.[0]?.text };
}

/** Asserts that each model (adapter names or the base) still serves its text. */
async function stillServing(service: Service, models: Record<string, string>): Promise<void> {
  for (const [model, text] of Object.entries(models)) {
    assert.deepEqual(await complete(service.url, model), { status: 200, text: text.slice(0, 16) }, model);
  }
}

const sources = { localRoots: [root.dir], allowHub: false };

test(
  "load from a local root, list it, serve it; loading it again is a no-op; delete it",
  LONG,
  () =>
    withService(demo, { app: sources }, async (service) => {
      const { url, host } = service;
      const created = await load(url, "python", "py");
      assert.equal(created.status, 201);
      assert.equal(created.body.name, "py");
      assert.equal(created.body.id, "python");
      assert.equal(created.body.source, "local");
      assert.equal(created.body.status, "ready");
      assert.ok(created.body.bytes > 0);
      assert.equal(created.body.in_use, 0);

      const nested = await load(url, "nested/python", "nested");
      assert.equal(nested.status, 201);
      assert.deepEqual(await listed(url), ["py", "nested"]);
      const models = await call(url, "GET", "/v1/models");
      // deno-lint-ignore no-explicit-any
      assert.deepEqual(models.body.data.map((m: any) => [m.id, m.parent]), [
        ["byte-llama", null],
        ["py", "byte-llama"],
        ["nested", "byte-llama"],
      ]);
      await stillServing(service, { py: pythonText, nested: pythonText, "byte-llama": baseText });

      const again = await load(url, "python", "py");
      assert.equal(again.status, 200);
      assert.deepEqual(host.loads, ["py", "nested"], "the second load reused the first");

      const deleted = await call(url, "DELETE", "/v1/adapters/py", { token: ADMIN });
      assert.deepEqual([deleted.status, deleted.body], [200, { object: "adapter", name: "py", deleted: true }]);
      assert.deepEqual(await listed(url), ["nested"]);
      assert.equal((await complete(url, "py")).status, 404);
      const gone = await call(url, "DELETE", "/v1/adapters/py", { token: ADMIN });
      assert.equal(gone.status, 404);
      assert.equal(gone.body.error.type, "not_found_error");
      const health = await call(url, "GET", "/health");
      assert.deepEqual(health.body, { status: "ok", model: "byte-llama", adapters: 1, active: 0 });
    }),
);

test(
  "concurrent loads of the same adapter share one load",
  LONG,
  () =>
    withService(demo, { app: sources }, async ({ url, host }) => {
      const replies = await Promise.all(Array.from({ length: 6 }, () => load(url, "python", "py")));
      assert.deepEqual(replies.map((r) => r.status).sort(), [200, 200, 200, 200, 200, 201]);
      assert.deepEqual(host.loads, ["py"]);
      // A request naming an adapter that is still loading waits for it.
      const loading = load(url, "python-x2", "x2");
      await waitFor(() => host.loads.length === 2);
      const completion = await complete(url, "x2");
      assert.equal(completion.status, 200);
      assert.equal((await loading).status, 201);
    }),
);

test(
  "the least recently used idle adapter is evicted when the count limit is reached",
  LONG,
  () =>
    withService(demo, { app: sources, pool: { maxAdapters: 2 } }, async (service) => {
      const { url } = service;
      assert.equal((await load(url, "python", "a")).status, 201);
      assert.equal((await load(url, "python", "b")).status, 201);
      await complete(url, "a"); // a is now more recently used than b
      assert.equal((await load(url, "python-x2", "c")).status, 201);
      assert.deepEqual(await listed(url), ["a", "c"]);
      assert.equal((await complete(url, "b")).status, 404);
      await stillServing(service, { a: pythonText, "byte-llama": baseText });
      const { body } = await call(url, "GET", "/v1/adapters", { token: ADMIN });
      assert.equal(body.usage.adapters, 2);
      assert.equal(body.usage.max_adapters, 2);
    }),
);

test("the byte limit evicts too, and an adapter larger than the limit is refused", LONG, async () => {
  let bytes = 0;
  await withService(demo, { app: sources }, async ({ url }) => {
    bytes = (await load(url, "python", "probe")).body.bytes;
  });
  await withService(demo, { app: sources, pool: { maxBytes: Math.floor(2.5 * bytes) } }, async (service) => {
    const { url } = service;
    await load(url, "python", "a");
    await load(url, "python", "b");
    await complete(url, "a");
    assert.equal((await load(url, "python", "c")).status, 201);
    assert.deepEqual(await listed(url), ["a", "c"]);
    const { body } = await call(url, "GET", "/v1/adapters", { token: ADMIN });
    assert.equal(body.usage.bytes, 2 * bytes);
  });
  await withService(demo, { app: sources, pool: { maxBytes: bytes - 1 } }, async ({ url }) => {
    const refused = await load(url, "python", "a");
    assert.equal(refused.status, 400);
    assert.match(refused.body.error.message, /more than the pool's limit/);
    assert.deepEqual(await listed(url), []);
  });
});

test(
  "an adapter in use is never evicted: the load is refused with 503 until the request ends",
  LONG,
  () =>
    withService(demo, { app: sources, pool: { maxAdapters: 1 } }, async (service) => {
      const { url, pool, host } = service;
      host.delayMs = 20; // 120 pieces: over 2 s
      await load(url, "python", "a");
      const controller = new AbortController();
      const response = await fetch(`${url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "a", prompt: "def ", max_tokens: 120, temperature: 0, stream: true }),
        signal: controller.signal,
      });
      const reader = response.body!.getReader();
      await reader.read(); // generation is running
      assert.equal(pool.get("a")?.inUse, 1);
      const refused = await load(url, "python-x2", "b");
      assert.equal(refused.status, 503);
      assert.equal(refused.body.error.type, "service_unavailable");
      assert.deepEqual(await listed(url), ["a"]);
      controller.abort();
      await reader.cancel().catch(() => {});
      await waitFor(() => pool.get("a")?.inUse === 0);
      assert.equal(host.generations[0].outcome, "aborted");
      assert.ok(host.generations[0].pieces < 120);
      host.delayMs = 0;
      assert.equal((await load(url, "python-x2", "b")).status, 201);
      assert.deepEqual(await listed(url), ["b"]);
    }),
);

test(
  "deleting an adapter in use lets the running request finish, then frees it",
  LONG,
  () =>
    withService(demo, { app: sources }, async (service) => {
      const { url, pool, host } = service;
      host.delayMs = 5;
      await load(url, "python", "a");
      const response = await fetch(`${url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "a", prompt: "def ", max_tokens: 120, temperature: 0, stream: true }),
      });
      const reader = response.body!.getReader();
      const decoder = new TextDecoder();
      let raw = decoder.decode((await reader.read()).value);
      const deleted = await call(url, "DELETE", "/v1/adapters/a", { token: ADMIN });
      assert.equal(deleted.status, 200);
      assert.deepEqual(await listed(url), []);
      assert.ok(pool.usage().bytes > 0, "still held by the running request");
      assert.equal((await complete(url, "a")).status, 404);
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        raw += decoder.decode(value, { stream: true });
      }
      const text = raw.split("\n\n").filter((e) => e.startsWith("data: {")).map((e) => JSON.parse(e.slice(6)))
        .map((e) => e.choices[0].text).join("");
      assert.equal(text, pythonText);
      assert.equal(host.generations[0].outcome, "done");
      await waitFor(() => pool.usage().bytes === 0);
    }),
);

test(
  "failing loads (bad id, missing, corrupt, not an adapter, symlink) change nothing",
  LONG,
  () =>
    withService(demo, { app: sources }, async (service) => {
      const { url, host } = service;
      await load(url, "python", "py");
      const cases: Array<[id: string, status: number, message: RegExp]> = [
        ["../python", 400, /'\.' or '\.\.'/],
        ["/etc", 400, /absolute/],
        ["http://127.0.0.1:1/x", 400, /URL/],
        ["file:///etc", 400, /URL/],
        ["a\\b", 400, /absolute path or contain/],
        ["-x", 400, /parts must be/],
        ["missing", 404, /no adapter "missing"/],
        ["corrupt", 400, /adapter cannot be used/],
        ["empty", 404, /adapter_config\.json/],
        ["link", 404, /no adapter "link"/],
      ];
      for (const [id, status, message] of cases) {
        const reply = await load(url, id, "other");
        assert.equal(reply.status, status, id);
        assert.match(reply.body.error.message, message, id);
        assert.equal(typeof reply.body.error.type, "string");
        assert.deepEqual(await listed(url), ["py"], id);
      }
      assert.deepEqual(host.loads, ["py", "other", "other"], "only corrupt and empty reached the host");
      await stillServing(service, { py: pythonText, "byte-llama": baseText });
    }),
);

test(
  "loading from the Hub by repo id; a Hub that is down or lacks the repo changes nothing",
  LONG,
  () =>
    withTempDir(async (cacheDir) => {
      const hub = await startTestHub({ repos: { "test/python": { folder: DEMO_ADAPTER } } });
      try {
        await withService(
          demo,
          { app: { localRoots: [root.dir] }, pool: { hub: { hubUrl: hub.url, cacheDir } } },
          async (service) => {
            const { url } = service;
            const loaded = await load(url, "test/python", "hubpy", "main");
            assert.equal(loaded.status, 201);
            assert.deepEqual([loaded.body.id, loaded.body.source, loaded.body.revision], [
              "test/python",
              "hub",
              "main",
            ]);
            await stillServing(service, { hubpy: pythonText });

            const missing = await load(url, "test/nope", "nope");
            assert.equal(missing.status, 404);
            assert.match(missing.body.error.message, /test\/nope/);

            await hub.stop();
            const down = await load(url, "test/python", "again", "v2");
            assert.equal(down.status, 503);
            assert.equal(down.body.error.type, "service_unavailable");
            hub.fail = { status: 500 };
            await hub.start();
            const failing = await load(url, "test/python", "again", "v3");
            assert.equal(failing.status, 503);

            const badRevision = await load(url, "test/python", "again", "../x");
            assert.equal(badRevision.status, 400);
            assert.equal(badRevision.body.error.param, "revision");
            assert.deepEqual(await listed(url), ["hubpy"]);
            await stillServing(service, { hubpy: pythonText, "byte-llama": baseText });
          },
        );
      } finally {
        await hub.stop();
      }
    }),
);
