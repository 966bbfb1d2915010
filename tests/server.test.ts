/**
 * The HTTP service over real HTTP on 127.0.0.1: greedy completions equal
 * the demo's reference generations (base and adapter, plain and streamed,
 * completions and chat), the `openai` npm client works against it, and 50
 * concurrent requests alternating adapters and the base each get their
 * own text.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { OpenAI } from "./support/server_openai.ts";
import { fromPretrained } from "../mod.ts";
import { generate } from "../src/generate/mod.ts";
import { createApp } from "../src/server/mod.ts";
import { createAdapterPool } from "../src/serving/mod.ts";
import {
  call,
  DEMO_ADAPTER,
  loadDemo,
  makeAdapterRoot,
  PLAIN_CHAT,
  readEvents,
  references,
  type Service,
  withService,
} from "./support/server_setup.ts";

const demo = await loadDemo();
const refs = await references();
const root = await makeAdapterRoot();
const BASE = "byte-llama";
const JSON_TYPE = { "content-type": "application/json" };
const LONG = { timeout: 120_000 };
after(() => root.remove());

/** A service with the demo adapter loaded as `python` and chat rendering plain contents. */
function withDemo(fn: (service: Service) => Promise<void>): Promise<void> {
  return withService(demo, { chatTemplate: PLAIN_CHAT }, async (service) => {
    await service.pool.load("python", { kind: "local", path: DEMO_ADAPTER });
    await fn(service);
  });
}

const modelOf = (variant: string) => (variant === "base" ? BASE : "python");

test("greedy completions equal the reference generations, base and adapter", LONG, () =>
  withDemo(async ({ url }) => {
    assert.equal(refs.length, 10);
    for (const ref of refs) {
      const reply = await call(url, "POST", "/v1/completions", {
        body: { model: modelOf(ref.variant), prompt: ref.prompt, max_tokens: 120, temperature: 0 },
      });
      assert.equal(reply.status, 200);
      assert.match(reply.headers.get("content-type") ?? "", /application\/json/);
      const { body } = reply;
      assert.equal(body.object, "text_completion");
      assert.equal(body.model, modelOf(ref.variant));
      assert.match(body.id, /^cmpl-/);
      assert.equal(body.choices.length, 1);
      assert.equal(body.choices[0].text, ref.text, `${ref.variant} ${JSON.stringify(ref.prompt)}`);
      assert.equal(body.choices[0].finish_reason, "length");
      const promptTokens = new TextEncoder().encode(ref.prompt).length;
      assert.deepEqual(body.usage, {
        prompt_tokens: promptTokens,
        completion_tokens: 120,
        total_tokens: promptTokens + 120,
      });
    }
  }));

test(
  "streamed completions equal the reference generations and end with [DONE]",
  LONG,
  () =>
    withDemo(async ({ url }) => {
      for (const ref of refs) {
        const response = await fetch(`${url}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            model: modelOf(ref.variant),
            prompt: ref.prompt,
            max_tokens: 120,
            temperature: 0,
            stream: true,
            stream_options: { include_usage: true },
          }),
        });
        assert.equal(response.status, 200);
        assert.match(response.headers.get("content-type") ?? "", /^text\/event-stream/);
        // deno-lint-ignore no-explicit-any
        const events = await readEvents(response) as any[];
        assert.equal(events.at(-1), "[DONE]");
        const usage = events.at(-2);
        assert.deepEqual(usage.choices, []);
        assert.equal(usage.usage.completion_tokens, 120);
        const finish = events.at(-3);
        assert.equal(finish.choices[0].finish_reason, "length");
        const chunks = events.slice(0, -3);
        assert.ok(chunks.length > 1, "the text arrives in several events");
        assert.ok(chunks.every((e) => e.choices[0].finish_reason === null && e.object === "text_completion"));
        assert.equal(new Set(events.slice(0, -1).map((e) => e.id)).size, 1);
        assert.equal(chunks.map((e) => e.choices[0].text).join(""), ref.text);
      }
    }),
);

test(
  "chat completions, plain and streamed, give the reference text for the same prompt",
  LONG,
  () =>
    withDemo(async ({ url }) => {
      for (const ref of refs.filter((r) => r.prompt === "def ")) {
        const request = {
          model: modelOf(ref.variant),
          messages: [{ role: "user", content: ref.prompt }],
          max_tokens: 120,
          temperature: 0,
        };
        const { status, body } = await call(url, "POST", "/v1/chat/completions", { body: request });
        assert.equal(status, 200);
        assert.equal(body.object, "chat.completion");
        assert.deepEqual(body.choices[0].message, { role: "assistant", content: ref.text });
        assert.equal(body.choices[0].finish_reason, "length");
        assert.equal(body.usage.completion_tokens, 120);

        const response = await fetch(`${url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ ...request, stream: true }),
        });
        // deno-lint-ignore no-explicit-any
        const events = await readEvents(response) as any[];
        assert.equal(events.at(-1), "[DONE]");
        assert.deepEqual(events[0].choices[0].delta, { role: "assistant", content: "" });
        assert.equal(events.at(-2).choices[0].finish_reason, "length");
        assert.ok(events.slice(0, -1).every((e) => e.object === "chat.completion.chunk"));
        assert.equal(events.slice(1, -2).map((e) => e.choices[0].delta.content).join(""), ref.text);
      }
    }),
);

test(
  "the openai npm client: models, completions and chat, plain and streamed",
  LONG,
  () =>
    withDemo(async ({ url }) => {
      const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "not-needed", maxRetries: 0 });
      const models = await client.models.list();
      assert.deepEqual(models.data.map((m) => m.id), [BASE, "python"]);

      const ref = refs.find((r) => r.variant === "adapter" && r.prompt === "def ")!;
      const completion = await client.completions.create({
        model: "python",
        prompt: "def ",
        max_tokens: 120,
        temperature: 0,
      });
      assert.equal(completion.choices[0].text, ref.text);
      assert.equal(completion.usage?.completion_tokens, 120);

      let streamed = "";
      const stream = await client.completions.create({
        model: "python",
        prompt: "def ",
        max_tokens: 120,
        temperature: 0,
        stream: true,
      });
      for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? "";
      assert.equal(streamed, ref.text);

      const baseRef = refs.find((r) => r.variant === "base" && r.prompt === "The ")!;
      const chat = await client.chat.completions.create({
        model: BASE,
        messages: [{ role: "user", content: "The " }],
        max_tokens: 120,
        temperature: 0,
      });
      assert.equal(chat.choices[0].message.content, baseRef.text);

      let chatText = "";
      const chatStream = await client.chat.completions.create({
        model: BASE,
        messages: [{ role: "user", content: "The " }],
        max_tokens: 120,
        temperature: 0,
        stream: true,
      });
      for await (const chunk of chatStream) chatText += chunk.choices[0]?.delta?.content ?? "";
      assert.equal(chatText, baseRef.text);

      await assert.rejects(
        client.completions.create({ model: "nope", prompt: "x", max_tokens: 4 }),
        (e: unknown) => e instanceof OpenAI.NotFoundError && /no model named nope/.test(e.message),
      );
    }),
);

test(
  "50 concurrent requests alternating two adapters and the base each get their own text",
  LONG,
  () =>
    withDemo(async ({ url, pool, host }) => {
      await pool.load("python-x2", { kind: "local", path: `${root.dir}/python-x2` });
      const prompts = ["The ", "def ", "import ", "    def ", "    return "];
      const models = [BASE, "python", "python-x2"];
      const options = { maxNewTokens: 12, temperature: 0 };
      // Expected texts straight from the library, one at a time.
      const lms = {
        [BASE]: demo.base,
        python: await fromPretrained(demo.base, DEMO_ADAPTER, { mode: "merged" }),
        "python-x2": await fromPretrained(demo.base, `${root.dir}/python-x2`, { mode: "merged" }),
      };
      const expected = new Map<string, string>();
      for (const model of models) {
        for (const prompt of prompts) {
          expected.set(
            `${model}|${prompt}`,
            (await generate(lms[model as keyof typeof lms], demo.tokenizer, prompt, options)).text,
          );
        }
      }
      await lms.python.release();
      await lms["python-x2"].release();
      for (const prompt of prompts) {
        assert.notEqual(expected.get(`python|${prompt}`), expected.get(`python-x2|${prompt}`));
      }

      const before = host.generations.length;
      const jobs = Array.from({ length: 50 }, (_, i) => {
        const model = models[i % 3];
        const prompt = prompts[i % 5];
        const body = { model, prompt, max_tokens: 12, temperature: 0, stream: i % 2 === 1 };
        return (async () => {
          const response = await fetch(`${url}/v1/completions`, {
            method: "POST",
            headers: JSON_TYPE,
            body: JSON.stringify(body),
          });
          assert.equal(response.status, 200);
          if (!body.stream) return { model, prompt, text: (await response.json()).choices[0].text as string };
          // deno-lint-ignore no-explicit-any
          const events = await readEvents(response) as any[];
          const text = events.slice(0, -2).map((e) => e.choices[0].text).join("");
          return { model, prompt, text };
        })();
      });
      const results = await Promise.all(jobs);
      for (const { model, prompt, text } of results) {
        assert.equal(text, expected.get(`${model}|${prompt}`), `${model} ${prompt}`);
      }
      assert.equal(host.generations.length - before, 50);
      assert.equal(pool.usage().active, 0);
    }),
);

test("createApp's fetch is an edge handler: it answers Requests with no server started", LONG, async () => {
  const pool = await createAdapterPool(demo.base, { baseName: BASE, chatTemplate: PLAIN_CHAT });
  await pool.load("python", { kind: "local", path: DEMO_ADAPTER });
  const app = createApp({ pool });
  const ask = async (model: string, path = "/v1/completions", body: Record<string, unknown> = { prompt: "def " }) => {
    const response = await app.fetch(
      new Request(`http://edge.example${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model, max_tokens: 120, temperature: 0, ...body }),
      }),
    );
    return await response.json();
  };
  const byVariant = (variant: string) => refs.find((r) => r.variant === variant && r.prompt === "def ")!.text;
  assert.equal((await ask(BASE)).choices[0].text, byVariant("base"));
  assert.equal((await ask("python")).choices[0].text, byVariant("adapter"));
  const chat = await ask("python", "/v1/chat/completions", { messages: [{ role: "user", content: "def " }] });
  assert.equal(chat.choices[0].message.content, byVariant("adapter"));
  const health = await app.fetch(new Request("http://edge.example/health"));
  assert.deepEqual(await health.json(), { status: "ok", model: BASE, adapters: 1, active: 0 });
  await pool.close();
});
