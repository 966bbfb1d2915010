/**
 * The service's limits over real HTTP on 127.0.0.1, in the runtime running
 * the test (Deno or Bun): slow clients (head and body) are cut off while
 * normal requests keep their latency, connections and queued requests are
 * capped with 503 + `Retry-After`, shutdown finishes or cancels
 * generations, POST bodies must be JSON, the inference routes can need a
 * key of their own, CORS is off unless configured, and error bodies carry
 * neither file contents nor server paths (the log gets them).
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import {
  ADMIN,
  call,
  DEMO_ADAPTER,
  loadDemo,
  makeAdapterRoot,
  readEvents,
  waitFor,
  withService,
} from "./support/server_setup.ts";
import { redactPaths, toApiError } from "../src/server/to_api_error.ts";
import { HubError, type HubErrorReason } from "../src/errors.ts";
import { ResponseEnd } from "../src/server/response_end.ts";
import { listen } from "../src/server/listen.ts";

const demo = await loadDemo();
const root = await makeAdapterRoot();
after(() => root.remove());
const LONG = { timeout: 120_000 };
const JSON_TYPE = { "content-type": "application/json" };
const completion = (model = "byte-llama", extra: Record<string, unknown> = {}) => ({
  body: { model, prompt: "def ", max_tokens: 8, temperature: 0, ...extra },
});

/** A raw connection that sends `head` and then one byte every `everyMs`; resolves how it ended. */
function trickle(port: number, head: string, everyMs: number) {
  const socket = net.connect(port, "127.0.0.1");
  let received = "";
  const started = Date.now();
  socket.on("data", (chunk) => (received += chunk));
  socket.on("error", () => {});
  const ended = new Promise<{ ms: number; received: string }>((resolve) => {
    socket.on("close", () => {
      clearInterval(timer);
      resolve({ ms: Date.now() - started, received });
    });
  });
  socket.on("connect", () => socket.write(head));
  const timer = setInterval(() => socket.write("a"), everyMs);
  return { socket, ended };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function latencies(url: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    const reply = await call(url, "POST", "/v1/completions", completion());
    assert.equal(reply.status, 200);
    out.push(performance.now() - started);
  }
  return out;
}

test(
  "40 clients sending one byte a second are cut off; normal requests keep their latency",
  LONG,
  () =>
    withService(demo, { listen: { headerTimeoutMs: 1500 } }, async ({ url, server }) => {
      const port = Number(new URL(url).port);
      const alone = median(await latencies(url, 8));
      const slow = Array.from(
        { length: 40 },
        () => trickle(port, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ", 1000),
      );
      await waitFor(() => server.connections() >= 40);
      const loaded = median(await latencies(url, 8));
      const ends = await Promise.all(slow.map((s) => s.ended));
      for (const end of ends) {
        assert.ok(end.ms < 4000, `cut off after ${end.ms} ms`);
        assert.match(end.received, /^HTTP\/1\.1 408 /);
      }
      // Generous bound (a shared machine): the slow clients must not queue or stall the others.
      assert.ok(
        loaded < alone * 3 + 100,
        `median ${loaded.toFixed(0)} ms with slow clients, ${alone.toFixed(0)} ms alone`,
      );
      await waitFor(() => server.connections() === 0);
    }),
);

test(
  "a body sent one byte at a time is answered 408 once the body deadline passes",
  LONG,
  () =>
    withService(demo, { app: { bodyTimeoutMs: 1000 } }, async ({ url }) => {
      const port = Number(new URL(url).port);
      const head =
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{";
      const slow = trickle(port, head, 200);
      const end = await slow.ended;
      assert.match(end.received, /^HTTP\/1\.1 408 /);
      assert.match(end.received, /took longer than 1000 ms/);
      assert.ok(end.ms < 5000, `${end.ms} ms`);
      assert.equal((await call(url, "POST", "/v1/completions", completion())).status, 200);
    }),
);

test(
  "connections beyond maxConnections get 503 with Retry-After, and room comes back",
  LONG,
  () =>
    withService(demo, { listen: { maxConnections: 4, headerTimeoutMs: 30_000 } }, async ({ url, server }) => {
      const port = Number(new URL(url).port);
      const idle = Array.from({ length: 4 }, () => trickle(port, "GET /health HTTP/1.1\r\n", 60_000));
      await waitFor(() => server.connections() === 4);
      const refused = await fetch(`${url}/health`);
      assert.equal(refused.status, 503);
      assert.equal(refused.headers.get("retry-after"), "1");
      assert.equal((await refused.json()).error.type, "service_unavailable");
      for (const s of idle) s.socket.destroy();
      await waitFor(() => server.connections() === 0);
      assert.equal((await fetch(`${url}/health`)).status, 200);
    }),
);

test(
  "generations beyond maxInFlight wait in a bounded queue; beyond it 503 with Retry-After",
  LONG,
  () =>
    withService(demo, { app: { maxInFlight: 1, maxQueued: 1, queueTimeoutMs: 60_000 } }, async ({ url, host }) => {
      host.delayMs = 20;
      const running = await fetch(`${url}/v1/completions`, {
        method: "POST",
        headers: JSON_TYPE,
        body: JSON.stringify({ model: "byte-llama", prompt: "def ", max_tokens: 30, temperature: 0, stream: true }),
      });
      const reader = running.body!.getReader();
      await reader.read(); // the one turn is taken
      const queued = call(url, "POST", "/v1/completions", completion());
      await waitFor(() => host.generations.length === 1); // still only the first generation
      await new Promise((r) => setTimeout(r, 100));
      const refused = await call(url, "POST", "/v1/completions", completion());
      assert.equal(refused.status, 503);
      assert.equal(refused.headers.get("retry-after"), "1");
      assert.match(refused.body.error.message, /busy/);
      assert.equal(host.generations.length, 1, "the queued request has not started");
      while (!(await reader.read()).done);
      const reply = await queued;
      assert.equal(reply.status, 200, "the queued request ran after the first ended");
      assert.equal(host.generations.length, 2);
    }),
);

test(
  "a request that waits longer than queueTimeoutMs gets 503",
  LONG,
  () =>
    withService(demo, { app: { maxInFlight: 1, queueTimeoutMs: 200 } }, async ({ url, host }) => {
      host.delayMs = 50;
      const running = call(url, "POST", "/v1/completions", completion("byte-llama", { max_tokens: 20 }));
      await waitFor(() => host.generations.length === 1);
      const late = await call(url, "POST", "/v1/completions", completion());
      assert.equal(late.status, 503);
      assert.match(late.body.error.message, /no turn within 200 ms/);
      assert.equal((await running).status, 200);
    }),
);

test("shutdown lets a running generation finish within the grace, and refuses new connections", LONG, () => {
  const stop = new AbortController();
  return withService(demo, { app: { stopSignal: stop.signal } }, async ({ url, host, server }) => {
    host.delayMs = 10;
    const response = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: JSON_TYPE,
      body: JSON.stringify({ model: "byte-llama", prompt: "def ", max_tokens: 40, temperature: 0, stream: true }),
    });
    const events = readEvents(response);
    await waitFor(() => (host.generations[0]?.pieces ?? 0) > 0);
    const down = server.shutdown({ graceMs: 30_000, cancel: () => stop.abort() });
    await assert.rejects(fetch(`${url}/health`));
    const all = await events;
    assert.equal(all.at(-1), "[DONE]");
    assert.equal(host.generations[0].outcome, "done");
    await down;
    assert.equal(stop.signal.aborted, false, "nothing needed cancelling");
  });
});

test("shutdown cancels generations still running after the grace", LONG, () => {
  const stop = new AbortController();
  return withService(demo, { app: { stopSignal: stop.signal } }, async ({ url, host, server, pool }) => {
    host.delayMs = 50; // 100 pieces: 5 s
    const response = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: JSON_TYPE,
      body: JSON.stringify({ model: "byte-llama", prompt: "def ", max_tokens: 100, temperature: 0, stream: true }),
    });
    const events = readEvents(response).catch(() => ["(connection closed)"]);
    await waitFor(() => (host.generations[0]?.pieces ?? 0) > 0);
    const started = Date.now();
    await server.shutdown({ graceMs: 200, cancel: () => stop.abort() });
    assert.ok(Date.now() - started < 4000, `shutdown took ${Date.now() - started} ms`);
    assert.ok(stop.signal.aborted);
    // deno-lint-ignore no-explicit-any
    const last = (await events).at(-1) as any;
    assert.ok(last === "(connection closed)" || /shutting down/.test(last?.error?.message), JSON.stringify(last));
    await waitFor(() => pool.usage().active === 0);
    // Cancelled with the shutdown's reason (a 503 ApiError), which the recording pool counts as an error.
    assert.ok(["aborted", "error"].includes(host.generations[0].outcome), host.generations[0].outcome);
    assert.ok(host.generations[0].pieces < 100);
  });
});

test(
  "every POST needs a JSON body: text/plain, forms and a missing type get 415",
  LONG,
  () =>
    withService(demo, {}, async ({ url, host }) => {
      const body = JSON.stringify(completion().body);
      for (
        const type of [
          "text/plain",
          "text/plain;charset=UTF-8",
          "application/x-www-form-urlencoded",
          "multipart/form-data; boundary=x",
          "",
        ]
      ) {
        const headers: Record<string, string> = type ? { "content-type": type } : {};
        const response = await fetch(`${url}/v1/completions`, {
          method: "POST",
          headers,
          body: new TextEncoder().encode(body),
        });
        assert.equal(response.status, 415, type);
        assert.equal((await response.json()).error.type, "invalid_request_error");
      }
      const admin = await call(url, "POST", "/v1/adapters", {
        token: ADMIN,
        body: "{}",
        headers: { "content-type": "text/plain" },
      });
      assert.equal(admin.status, 415);
      assert.equal(host.generations.length, 0);
      const ok = await call(url, "POST", "/v1/completions", {
        ...completion(),
        headers: { "content-type": "application/json; charset=utf-8" },
      });
      assert.equal(ok.status, 200);
    }),
);

test(
  "an API key guards the inference routes, apart from the admin token",
  LONG,
  () =>
    withService(demo, { app: { apiKey: "sk-test-key-0123456789" } }, async ({ url }) => {
      const key = "sk-test-key-0123456789";
      assert.equal((await call(url, "POST", "/v1/completions", completion())).status, 401);
      const wrong = await call(url, "POST", "/v1/completions", { ...completion(), token: ADMIN });
      assert.equal(wrong.status, 401, "the admin token is not an API key");
      assert.match(wrong.headers.get("www-authenticate") ?? "", /^Bearer/);
      assert.equal(
        (await call(url, "POST", "/v1/chat/completions", { body: { model: "byte-llama", messages: [] } })).status,
        401,
      );
      assert.equal((await call(url, "GET", "/v1/models")).status, 401);
      assert.equal((await call(url, "POST", "/v1/completions", { ...completion(), token: key })).status, 200);
      assert.equal((await call(url, "GET", "/v1/models", { token: key })).status, 200);
      assert.equal(
        (await call(url, "GET", "/v1/adapters", { token: key })).status,
        401,
        "the API key is not the admin token",
      );
      assert.equal((await call(url, "GET", "/health")).status, 200);
    }),
);

test("CORS is off by default and answers only the configured origins", LONG, async () => {
  const preflight = (url: string, origin: string) =>
    fetch(`${url}/v1/completions`, {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type" },
    });
  await withService(demo, {}, async ({ url }) => {
    const response = await preflight(url, "https://app.example");
    await response.body?.cancel();
    assert.equal(response.headers.get("access-control-allow-origin"), null);
    const plain = await fetch(`${url}/health`, { headers: { origin: "https://app.example" } });
    await plain.body?.cancel();
    assert.equal(plain.headers.get("access-control-allow-origin"), null);
  });
  await withService(demo, { app: { cors: { origin: ["https://app.example"] } } }, async ({ url }) => {
    const allowed = await preflight(url, "https://app.example");
    await allowed.body?.cancel();
    assert.equal(allowed.status, 204);
    assert.equal(allowed.headers.get("access-control-allow-origin"), "https://app.example");
    assert.match(allowed.headers.get("access-control-allow-headers") ?? "", /content-type/i);
    const other = await preflight(url, "https://evil.example");
    await other.body?.cancel();
    assert.equal(other.headers.get("access-control-allow-origin"), null);
    const reply = await call(url, "POST", "/v1/completions", {
      ...completion(),
      headers: { origin: "https://app.example" },
    });
    assert.equal(reply.headers.get("access-control-allow-origin"), "https://app.example");
  });
});

test("error bodies never carry file contents or server paths; the log gets the details", LONG, async () => {
  const secret = `${root.dir}/secret.txt`;
  await writeFile(secret, "root:x:0:0:SECRET-CONTENT\n");
  await mkdir(`${root.dir}/leaky`);
  await symlink(secret, `${root.dir}/leaky/adapter_config.json`);
  await symlink(`${DEMO_ADAPTER}/adapter_model.safetensors`, `${root.dir}/leaky/adapter_model.safetensors`);
  await withService(demo, { app: { localRoots: [root.dir], allowHub: false } }, async ({ url, logs }) => {
    await call(url, "POST", "/v1/adapters", { token: ADMIN, body: { id: "python", name: "py" } });
    for (const [id, status] of [["leaky", 400], ["corrupt", 400], ["empty", 404]] as const) {
      const reply = await call(url, "POST", "/v1/adapters", { token: ADMIN, body: { id, name: `x-${id}` } });
      assert.ok(reply.status === status || (id === "leaky" && reply.status === 404), `${id}: ${reply.status}`);
      const text = JSON.stringify(reply.body);
      assert.doesNotMatch(text, /SECRET|root:x/, id);
      assert.ok(!text.includes(root.dir) && !text.includes("/tmp"), `${id}: ${text}`);
      assert.match(reply.body.error.message, /server log/, id);
    }
    const conflict = await call(url, "POST", "/v1/adapters", { token: ADMIN, body: { id: "python-x2", name: "py" } });
    assert.equal(conflict.status, 409);
    assert.ok(!JSON.stringify(conflict.body).includes(root.dir), JSON.stringify(conflict.body));
    assert.ok(logs.length >= 3, "the details were logged");
    assert.ok(logs.some((l) => l.message.includes(root.dir)), "the log keeps the paths");
  });
});

test("redactPaths blanks absolute paths and file URLs but keeps repo ids, URLs and '/' in prose", () => {
  assert.equal(
    redactPaths("adapter x is already loaded from /srv/a/x; delete it"),
    "adapter x is already loaded from <path>; delete it",
  );
  assert.equal(redactPaths("no such file: file:///etc/passwd"), "no such file: <path>");
  assert.equal(redactPaths('id "/etc" must not be absolute'), 'id "<path>" must not be absolute');
  assert.equal(redactPaths("C:\\Users\\me\\x.json is bad"), "<path> is bad");
  for (
    const kept of ["org/name not found", "see https://huggingface.co/api/models/a/b", "at most 4 '/'-separated parts"]
  ) {
    assert.equal(redactPaths(kept), kept);
  }
});

test(
  "the listener's requests carry a signal that aborts only when the client leaves before the answer ends",
  LONG,
  async () => {
    const seen: Request[] = [];
    const gone = Promise.withResolvers<unknown>();
    const server = await listen(async (request) => {
      seen.push(request);
      if (new URL(request.url).pathname === "/slow") {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 10_000);
          request.signal.addEventListener("abort", () => {
            clearTimeout(timer);
            gone.resolve(request.signal.reason);
            resolve();
          }, { once: true });
        });
        return new Response("late");
      }
      return new Response(`${request.method} ${await request.text()}`);
    }, { port: 0 });
    try {
      // A finished answer leaves the signal alone (Deno's own request.signal aborts then, and warns when read).
      const reply = await fetch(`${server.url}/echo`, {
        method: "POST",
        headers: { "x-peft-edge-connection": "forged" },
        body: "hello",
      });
      assert.equal(await reply.text(), "POST hello");
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(seen[0].signal.aborted, false);
      assert.equal(seen[0].headers.get("x-peft-edge-connection"), null, "the guard's header is not passed on");
      // A client that leaves mid-request aborts it.
      const controller = new AbortController();
      const slow = fetch(`${server.url}/slow`, { signal: controller.signal });
      await waitFor(() => seen.length === 2);
      controller.abort();
      await assert.rejects(slow);
      const reason = await gone.promise;
      assert.equal((reason as Error).name, "AbortError");
    } finally {
      await server.shutdown({ graceMs: 1 });
    }
  },
);

test("ResponseEnd finds the end of length-framed, chunked, bodiless and interim-headed answers", () => {
  const bytes = (text: string) => new TextEncoder().encode(text);
  const length = new ResponseEnd("POST");
  assert.equal(length.feed(bytes("HTTP/1.1 408 Request Timeout\r\ncontent-length: 5\r\n\r\nab")), false);
  assert.equal(length.feed(bytes("cde")), true);
  const chunked = new ResponseEnd("POST");
  assert.equal(chunked.feed(bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")), false);
  assert.equal(chunked.feed(bytes("a;x=1\r\n0123456789\r\n0\r\n")), false);
  assert.equal(chunked.feed(bytes("\r\n")), true);
  assert.equal(new ResponseEnd("HEAD").feed(bytes("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n")), true);
  const interim = new ResponseEnd("POST");
  assert.equal(interim.feed(bytes("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")), true);
  assert.equal(new ResponseEnd("GET").feed(bytes("HTTP/1.1 200 OK\r\n\r\nstreamed until close")), false);
});

test("a Hub failure maps to the HTTP status of whose fault it is (the server's own cache full is a 500)", () => {
  const hub = (reason: HubErrorReason) =>
    toApiError(new HubError("x", { repo: "o/r", revision: "main", reason, file: "/srv/cache/blob" }));
  assert.equal(hub("cache").status, 500);
  assert.equal(hub("cache").type, "server_error");
  assert.doesNotMatch(hub("cache").message, /\/srv\//);
  assert.equal(hub("not_found").status, 404);
  assert.equal(hub("gated").status, 403);
  assert.equal(hub("network").status, 503);
});
