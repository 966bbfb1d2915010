/**
 * The service's safety over real HTTP: every bad input gets its status and
 * a JSON error `{ error: { message, type } }` and changes no state (admin
 * token, body validation and size, `max_tokens` cap, unknown models and
 * routes, conflicts, a busy server), and a client that disconnects stops
 * its generation, streamed or not.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import {
  ADMIN,
  call,
  DEMO_ADAPTER,
  type JsonReply,
  loadDemo,
  makeAdapterRoot,
  type Service,
  waitFor,
  withService,
} from "./support/server_setup.ts";

const demo = await loadDemo();
const root = await makeAdapterRoot();
const LONG = { timeout: 120_000 };
after(() => root.remove());

const LIMITS = { maxTokens: 64, maxBodyBytes: 4096, localRoots: [root.dir], allowHub: false };

/** A service with adapter `py` loaded, and the limits above. */
function withLimits(fn: (service: Service) => Promise<void>, pool = {}, app = {}): Promise<void> {
  return withService(demo, { app: { ...LIMITS, ...app }, pool }, async (service) => {
    await service.pool.load("py", { kind: "local", path: DEMO_ADAPTER });
    await fn(service);
  });
}

/** Everything a bad request must leave as it was. */
async function snapshot(service: Service) {
  const adapters = await call(service.url, "GET", "/v1/adapters", { token: ADMIN });
  const models = await call(service.url, "GET", "/v1/models");
  // A request refused by generation (bad prompt) has used its adapter, so `last_used_at` (whole seconds) may move
  // on when a second boundary passes: comparing it made this test fail about one run in five.
  // deno-lint-ignore no-explicit-any
  for (const adapter of adapters.body.data as any[]) delete adapter.last_used_at;
  return {
    adapters: adapters.body,
    models: models.body,
    loads: service.host.loads.length,
    usage: service.pool.usage(),
  };
}

/** Asserts the reply is a JSON error with this status (and type, when given). */
function assertError(reply: JsonReply, status: number, type?: string, what = "") {
  assert.equal(reply.status, status, `${what}: ${JSON.stringify(reply.body)}`);
  assert.match(reply.headers.get("content-type") ?? "", /application\/json/, what);
  assert.equal(typeof reply.body?.error?.message, "string", what);
  assert.ok(reply.body.error.message.length > 0, what);
  assert.equal(typeof reply.body.error.type, "string", what);
  if (type) assert.equal(reply.body.error.type, type, what);
}

type Case = [
  what: string,
  method: string,
  path: string,
  options: Parameters<typeof call>[3],
  status: number,
  type?: string,
];

/** Runs each case and checks that none changed the state. */
async function runCases(service: Service, cases: Case[]): Promise<JsonReply[]> {
  const before = await snapshot(service);
  const replies: JsonReply[] = [];
  for (const [what, method, path, options, status, type] of cases) {
    const reply = await call(service.url, method, path, options);
    assertError(reply, status, type, what);
    replies.push(reply);
    const now = await snapshot(service);
    assert.deepEqual(now, before, `${what} changed the state`);
  }
  return replies;
}

const completion = (body: Record<string, unknown>) => ({
  body: { model: "py", prompt: "def ", max_tokens: 8, ...body },
});
const chat = (body: Record<string, unknown>) => ({
  body: { model: "py", messages: [{ role: "user", content: "hi" }], max_tokens: 8, ...body },
});

test("adapter management needs the admin bearer token (401)", LONG, () =>
  withLimits(async (service) => {
    const load = { body: { id: "python-x2", name: "x2" } };
    const replies = await runCases(service, [
      ["list, no token", "GET", "/v1/adapters", {}, 401, "authentication_error"],
      ["list, wrong token", "GET", "/v1/adapters", { token: "wrong-token-0123456789" }, 401],
      ["list, token prefix", "GET", "/v1/adapters", { token: ADMIN.slice(0, -1) }, 401],
      ["list, token plus a character", "GET", "/v1/adapters", { token: `${ADMIN}x` }, 401],
      ["list, basic auth", "GET", "/v1/adapters", { headers: { authorization: `Basic ${ADMIN}` } }, 401],
      ["load, no token", "POST", "/v1/adapters", load, 401],
      ["load, wrong token", "POST", "/v1/adapters", { ...load, token: "nope-nope-nope" }, 401],
      ["delete, no token", "DELETE", "/v1/adapters/py", {}, 401],
      ["delete, wrong token", "DELETE", "/v1/adapters/py", { token: "x" }, 401],
    ]);
    assert.match(replies[0].headers.get("www-authenticate") ?? "", /^Bearer/);
  }));

test(
  "without an admin token, adapter management is disabled (401)",
  LONG,
  () =>
    withService(demo, { app: { adminToken: undefined } }, async ({ url }) => {
      const reply = await call(url, "GET", "/v1/adapters", { token: ADMIN });
      assertError(reply, 401, "authentication_error");
      assert.match(reply.body.error.message, /disabled/);
    }),
);

test(
  "invalid completion and chat bodies get 400 naming the field; nothing changes",
  LONG,
  () =>
    withLimits(async (service) => {
      const replies = await runCases(service, [
        ["not JSON", "POST", "/v1/completions", { body: "{" }, 400, "invalid_request_error"],
        ["JSON array", "POST", "/v1/completions", { body: "[1]" }, 400],
        ["empty body", "POST", "/v1/completions", { body: "" }, 400],
        ["no model", "POST", "/v1/completions", { body: { prompt: "x" } }, 400],
        ["no prompt", "POST", "/v1/completions", { body: { model: "py" } }, 400],
        ["empty prompt", "POST", "/v1/completions", completion({ prompt: "" }), 400],
        ["two prompts", "POST", "/v1/completions", completion({ prompt: ["a", "b"] }), 400],
        ["negative temperature", "POST", "/v1/completions", completion({ temperature: -1 }), 400],
        ["string temperature", "POST", "/v1/completions", completion({ temperature: "hot" }), 400],
        ["top_p 0", "POST", "/v1/completions", completion({ top_p: 0 }), 400],
        ["max_tokens over the cap", "POST", "/v1/completions", completion({ max_tokens: 65 }), 400],
        ["max_tokens 0", "POST", "/v1/completions", completion({ max_tokens: 0 }), 400],
        ["max_tokens 1.5", "POST", "/v1/completions", completion({ max_tokens: 1.5 }), 400],
        ["n 2", "POST", "/v1/completions", completion({ n: 2 }), 400],
        ["logprobs", "POST", "/v1/completions", completion({ logprobs: 5 }), 400],
        ["echo", "POST", "/v1/completions", completion({ echo: true }), 400],
        ["five stop strings", "POST", "/v1/completions", completion({ stop: ["a", "b", "c", "d", "e"] }), 400],
        ["negative seed", "POST", "/v1/completions", completion({ seed: -1 }), 400],
        ["stream not boolean", "POST", "/v1/completions", completion({ stream: "yes" }), 400],
        ["token id out of the vocabulary", "POST", "/v1/completions", completion({ prompt: [300] }), 400],
        ["prompt longer than the context", "POST", "/v1/completions", completion({ prompt: "x".repeat(600) }), 400],
        ["no messages", "POST", "/v1/chat/completions", chat({ messages: [] }), 400],
        ["unknown role", "POST", "/v1/chat/completions", chat({ messages: [{ role: "wizard", content: "x" }] }), 400],
        ["numeric content", "POST", "/v1/chat/completions", chat({ messages: [{ role: "user", content: 5 }] }), 400],
        ["tools", "POST", "/v1/chat/completions", chat({ tools: [{ type: "function" }] }), 400],
        [
          "max_completion_tokens over the cap",
          "POST",
          "/v1/chat/completions",
          chat({ max_completion_tokens: 65 }),
          400,
        ],
        ["no chat template", "POST", "/v1/chat/completions", chat({}), 400],
        ["stream: no chat template", "POST", "/v1/chat/completions", chat({ stream: true }), 400],
      ]);
      const byWhat = (what: string) =>
        replies[
          [
            "not JSON",
            "JSON array",
            "empty body",
            "no model",
            "no prompt",
            "empty prompt",
            "two prompts",
            "negative temperature",
            "string temperature",
            "top_p 0",
            "max_tokens over the cap",
          ].indexOf(what)
        ];
      assert.equal(byWhat("no model").body.error.param, "model");
      assert.equal(byWhat("negative temperature").body.error.param, "temperature");
      assert.equal(byWhat("max_tokens over the cap").body.error.param, "max_tokens");
      assert.match(byWhat("max_tokens over the cap").body.error.message, /more than this server allows \(64\)/);
      assert.equal(replies[25].body.error.param, "max_completion_tokens");
      assert.match(replies[26].body.error.message, /no chat template/);
    }),
);

test(
  "invalid adapter-management bodies and ids get 400, unknown names 404, taken names 409",
  LONG,
  () =>
    withLimits(async (service) => {
      const admin = (body: unknown) => ({ token: ADMIN, body });
      await runCases(service, [
        ["no id", "POST", "/v1/adapters", admin({ name: "x" }), 400, "invalid_request_error"],
        ["no name", "POST", "/v1/adapters", admin({ id: "python" }), 400],
        ["numeric id", "POST", "/v1/adapters", admin({ id: 5, name: "x" }), 400],
        ["bad name", "POST", "/v1/adapters", admin({ id: "python", name: "../x" }), 400],
        ["name with a slash", "POST", "/v1/adapters", admin({ id: "python", name: "a/b" }), 400],
        ["traversal", "POST", "/v1/adapters", admin({ id: "../python", name: "x" }), 400],
        ["absolute path", "POST", "/v1/adapters", admin({ id: DEMO_ADAPTER, name: "x" }), 400],
        ["URL", "POST", "/v1/adapters", admin({ id: "https://example.com/a", name: "x" }), 400],
        [
          "revision of a local adapter",
          "POST",
          "/v1/adapters",
          admin({ id: "python", name: "x", revision: "v1" }),
          400,
        ],
        [
          "Hub id with the Hub off",
          "POST",
          "/v1/adapters",
          admin({ id: "org/python", name: "x" }),
          404,
          "not_found_error",
        ],
        [
          "name taken by another adapter",
          "POST",
          "/v1/adapters",
          admin({ id: "python-x2", name: "py" }),
          409,
          "conflict_error",
        ],
        ["the base's name", "POST", "/v1/adapters", admin({ id: "python", name: "byte-llama" }), 409],
        ["delete unknown", "DELETE", "/v1/adapters/nope", { token: ADMIN }, 404, "not_found_error"],
      ]);
    }),
);

test("unknown models and routes get 404", LONG, () =>
  withLimits(async (service) => {
    await runCases(service, [
      ["unknown model", "POST", "/v1/completions", completion({ model: "nope" }), 404, "not_found_error"],
      ["unknown chat model", "POST", "/v1/chat/completions", chat({ model: "nope", stream: true }), 404],
      ["unknown route", "GET", "/v2/models", {}, 404],
      ["wrong method", "GET", "/v1/completions", {}, 404],
    ]);
  }));

test("bodies over the size limit get 413, with or without Content-Length", LONG, () =>
  withLimits(async (service) => {
    const big = JSON.stringify({ model: "py", prompt: "x".repeat(5000), max_tokens: 8 });
    await runCases(service, [
      ["large completion", "POST", "/v1/completions", { body: big }, 413, "request_too_large"],
      ["large load", "POST", "/v1/adapters", { token: ADMIN, body: { id: "x".repeat(5000), name: "x" } }, 413],
    ]);
    const before = await snapshot(service);
    const chunks = new TextEncoder().encode(big);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < chunks.length; i += 1000) controller.enqueue(chunks.subarray(i, i + 1000));
        controller.close();
      },
    });
    const response = await fetch(`${service.url}/v1/completions`, {
      method: "POST",
      body,
      headers: { "content-type": "application/json" },
      duplex: "half",
    } as RequestInit);
    assertError({ status: response.status, headers: response.headers, body: await response.json() }, 413);
    assert.deepEqual(await snapshot(service), before);
  }));

test("a busy server with no queue answers 503 with Retry-After", LONG, () =>
  withLimits(
    async (service) => {
      const { url, host, pool } = service;
      host.delayMs = 20;
      const controller = new AbortController();
      const running = await fetch(`${url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "py", prompt: "def ", max_tokens: 64, stream: true }),
        signal: controller.signal,
      });
      const reader = running.body!.getReader();
      await reader.read();
      const busy = await call(url, "POST", "/v1/completions", completion({}));
      assertError(busy, 503, "service_unavailable");
      assert.equal(busy.headers.get("retry-after"), "1");
      controller.abort();
      await reader.cancel().catch(() => {});
      await waitFor(() => pool.usage().active === 0);
    },
    { maxActive: 1 },
    { maxQueued: 0 },
  ));

test("a client that disconnects stops its generation, streamed or not", LONG, () =>
  withLimits(async (service) => {
    const { url, host, pool } = service;
    host.delayMs = 20; // 64 pieces would take over a second
    const started = Date.now();
    const controller = new AbortController();
    const response = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "py", prompt: "def ", max_tokens: 64, stream: true }),
      signal: controller.signal,
    });
    const reader = response.body!.getReader();
    await reader.read();
    controller.abort();
    await reader.cancel().catch(() => {});
    await waitFor(() => pool.usage().active === 0 && host.generations[0].outcome !== "running");
    assert.equal(host.generations[0].outcome, "aborted");
    assert.ok(host.generations[0].pieces < 20, `streamed: ${host.generations[0].pieces} pieces`);

    const plain = fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "byte-llama", prompt: "The ", max_tokens: 64 }),
      signal: AbortSignal.timeout(200),
    });
    await assert.rejects(plain);
    await waitFor(() => pool.usage().active === 0 && host.generations[1]?.outcome !== "running");
    assert.equal(host.generations[1].outcome, "aborted");
    assert.ok(host.generations[1].pieces < 30, `plain: ${host.generations[1].pieces} pieces`);
    assert.ok(Date.now() - started < 2500);
  }));
