/**
 * Continuous batching in the service: concurrent requests share decode
 * steps (counted), join after their prefill and leave when done or
 * cancelled, a batch size cap queues the rest, and every response equals
 * the same request served alone: different adapters (dynamic mode), prompt
 * lengths, max_tokens, stop strings, streamed or not, a client that aborts;
 * what cannot share rows (a prompt-tuning adapter, `maxBatch: 1`) runs alone.
 */
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { Tensor } from "../src/deps/ort.ts";
import { describeDecoder, generate } from "../src/generate/mod.ts";
import { commonPadding, gatherPast } from "../src/serving/batch_past.ts";
import { DecodeScheduler } from "../src/serving/decode_scheduler.ts";
import { TurnPacer } from "../src/serving/turn_pacer.ts";
import { AdapterPool } from "../src/serving/mod.ts";
import {
  ADMIN,
  call,
  DEMO_ADAPTER,
  loadDemo,
  makeAdapterRoot,
  readEvents,
  type Service,
  waitFor,
  withService,
} from "./support/server_setup.ts";

const demo = await loadDemo();
const root = await makeAdapterRoot();
const LONG = { timeout: 300_000 };
after(() => root.remove());

test("gatherPast right-aligns rows: pads on the left, drops leading columns, picks rows", () => {
  // [2 rows, 1 head, 2 positions, 2 dims] and [1 row, 1 head, 3 positions, 2 dims]
  const a = new Tensor("float32", new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]), [2, 1, 2, 2]);
  const b = new Tensor("float32", new Float32Array([9, 10, 11, 12, 13, 14]), [1, 1, 3, 2]);
  const joined = gatherPast([{ tensor: a, row: 1 }, { tensor: b, row: 0 }], 3);
  assert.deepEqual(joined.dims, [2, 1, 3, 2]);
  assert.deepEqual([...joined.data as Float32Array], [0, 0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
  const trimmed = gatherPast([{ tensor: joined, row: 0 }], 2);
  assert.deepEqual([...trimmed.data as Float32Array], [5, 6, 7, 8]);
  assert.equal(commonPadding([[0, 0, 1], [0, 1, 1]]), 1);
  assert.equal(commonPadding([[1, 1], [0, 1]]), 0);
});

test("the turn pacer spaces quiet turns by their cost, and turns every step while work comes and goes", async () => {
  let now = 0;
  let cost = 1; // ms an event-loop pass takes (a timer turn)
  let passes = 0;
  let events = 0;
  const pacer = new TurnPacer({
    now: () => now,
    turn: () => {
      passes++;
      now += cost;
      return Promise.resolve();
    },
  });
  const step = async (ms = 5) => {
    await pacer.pace(() => events);
    now += ms; // one model run
  };
  await step();
  assert.equal(passes, 2, "the first step turns (arrivals together join one prefill), two passes in a row");
  assert.equal(pacer.interval, 100, "a quiet 2 ms turn: 2% would be every 100 ms");
  for (let i = 0; i < 10; i++) await step();
  assert.equal(passes, 2, "no turn within the interval");
  for (let i = 0; i < 10; i++) await step();
  assert.equal(passes, 4, "one turn once 100 ms have passed");
  events++; // a request arrived, left or ended
  await step();
  assert.equal(passes, 6, "activity: a turn at the next step");
  assert.equal(pacer.interval, 0, "after a busy turn the next step turns too");
  await step();
  assert.equal(passes, 8);
  assert.equal(pacer.interval, 100, "quiet again: backs off");
  // A turn in which work arrives (the arrival happens during it) is busy too.
  now += 200;
  const busy = new TurnPacer({
    now: () => now,
    turn: () => {
      events++;
      now += 0.01;
      return Promise.resolve();
    },
  });
  await busy.pace(() => events);
  assert.equal(busy.interval, 0);
  // Cheap turns (setImmediate on Bun and Node) come every step or two.
  cost = 0.005;
  const cheap = new TurnPacer({ now: () => now, turn: () => ((now += cost), Promise.resolve()) });
  await cheap.pace(() => events);
  assert.ok(cheap.interval < 1, `interval ${cheap.interval}`);
  // One pass per turn where asked.
  passes = 0;
  const single = new TurnPacer({ now: () => now, turn: () => (passes++, Promise.resolve()), passes: 1 });
  await single.pace(() => events);
  assert.equal(passes, 1);
});

const PROMPTS = ["def ", "import numpy as np\n", "class Point:\n    ", "for i in range(10):\n"];

test(
  "the scheduler batches: 4 concurrent requests of 20 tokens take ~20 steps, with the texts each gives alone",
  LONG,
  async () => {
    const { base, tokenizer } = demo;
    const options = { maxNewTokens: 20, temperature: 0, eosTokenId: [] };
    const alone = [];
    for (const prompt of PROMPTS) alone.push((await generate(base, tokenizer, prompt, options)).text);
    for (const maxBatch of [8, 2]) {
      const scheduler = new DecodeScheduler(base, describeDecoder(base), { maxBatch, runOptions: () => undefined });
      const texts = await Promise.all(PROMPTS.map(async (prompt) => {
        let text = "";
        for await (const piece of scheduler.stream(tokenizer, prompt, options, "__base__")) text += piece;
        return text;
      }));
      assert.deepEqual(texts, alone, `maxBatch ${maxBatch}`);
      const { prefillRuns, decodeRuns, maxRows } = scheduler.stats;
      if (maxBatch === 8) {
        assert.equal(prefillRuns, 1, "arriving together, they prefill together");
        assert.equal(decodeRuns, 19, "one step per token after the first, for all rows at once (not 4 x 19)");
        assert.equal(maxRows, 4);
      } else {
        // Two at a time: two waves of 19 steps, not 4 x 19.
        assert.equal(maxRows, 2);
        assert.equal(decodeRuns, 38);
      }
      assert.equal(scheduler.running + scheduler.waiting, 0);
    }
  },
);

/** One completion request of the tests. */
interface Ask {
  model: string;
  prompt: string;
  max_tokens: number;
  stream?: boolean;
  stop?: string[];
  temperature?: number;
  seed?: number;
}

/** Sends a completion and returns its text (streamed: the chunks concatenated) and finish reason. */
async function complete(url: string, ask: Ask, signal?: AbortSignal): Promise<{ text: string; finish: string }> {
  const response = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ temperature: 0, ...ask }),
    signal,
  });
  assert.equal(response.status, 200, await response.clone().text());
  if (!ask.stream) {
    const body = await response.json();
    return { text: body.choices[0].text, finish: body.choices[0].finish_reason };
  }
  const events = await readEvents(response);
  assert.equal(events.at(-1), "[DONE]");
  // deno-lint-ignore no-explicit-any
  const chunks = events.slice(0, -1) as any[];
  return {
    text: chunks.map((c) => c.choices[0].text).join(""),
    finish: chunks.findLast((c) => c.choices[0].finish_reason)?.choices[0].finish_reason,
  };
}

/** Loads the two test adapters (python, and python with alpha doubled). */
async function loadAdapters(service: Service): Promise<void> {
  for (const [id, name] of [["python", "py"], ["python-x2", "py2"]]) {
    const loaded = await call(service.url, "POST", "/v1/adapters", { token: ADMIN, body: { id, name } });
    assert.equal(loaded.status, 201, JSON.stringify(loaded.body));
  }
}

const ASKS: Ask[] = [
  { model: "py", prompt: "def ", max_tokens: 40 },
  { model: "py2", prompt: "import numpy as np\n", max_tokens: 25, stream: true },
  { model: "byte-llama", prompt: "The ", max_tokens: 30 },
  { model: "py", prompt: "class Point:\n    def __init__(self", max_tokens: 50, stream: true },
  { model: "py2", prompt: "for ", max_tokens: 12, stop: ["\n"] },
  { model: "py", prompt: "x = ", max_tokens: 35, stop: ["(", ":"], stream: true },
  { model: "byte-llama", prompt: "Once upon a time, ", max_tokens: 20, stream: true },
  { model: "py", prompt: "return ", max_tokens: 30, temperature: 0.8, seed: 7 },
];

for (const maxBatch of [8, 3]) {
  test(
    `dynamic, maxBatch ${maxBatch}: concurrent requests give exactly what each gives alone`,
    LONG,
    () =>
      withService(demo, { pool: { mode: "dynamic", maxBatch }, app: { localRoots: [root.dir] } }, async (service) => {
        await loadAdapters(service);
        const alone = [];
        for (const ask of ASKS) alone.push(await complete(service.url, ask));
        const before = { ...service.pool.batchStats };
        assert.ok(alone.some((r) => r.finish === "stop"), "a stop string ended some request");
        const together = await Promise.all(ASKS.map((ask) => complete(service.url, ask)));
        assert.deepEqual(together, alone);
        const stats = service.pool.batchStats;
        assert.ok(stats.maxRows >= 2 && stats.maxRows <= maxBatch, `rows per step: ${stats.maxRows}`);
        const tokens = alone.length * 30;
        assert.ok(
          stats.decodeRuns - before.decodeRuns < tokens / 2,
          `decode steps: ${stats.decodeRuns - before.decodeRuns}`,
        );
      }),
  );
}

test(
  "a client that aborts mid-stream leaves the batch; the others' outputs are unchanged",
  LONG,
  () =>
    withService(demo, { pool: { mode: "dynamic", maxBatch: 4 }, app: { localRoots: [root.dir] } }, async (service) => {
      await loadAdapters(service);
      const others = ASKS.slice(0, 4);
      const alone = [];
      for (const ask of others) alone.push(await complete(service.url, ask));
      // The abort must reach the server while the leaving request still decodes: it travels through the client, the
      // listener and the server in event-loop turns that the decode loop gives every ~100 ms on Deno, so on a fast
      // machine the leaving request's 480 tokens can all be made first. Only such a round (the batch made all 479
      // of its steps) is run again; three in a row fail.
      for (let round = 1;; round++) {
        const decoded = service.pool.batchStats.decodeRuns;
        const controller = new AbortController();
        const leaving = await fetch(`${service.url}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: "py2", prompt: "def f(", max_tokens: 480, temperature: 0, stream: true }),
          signal: controller.signal,
        });
        const reader = leaving.body!.getReader();
        await reader.read();
        const together = Promise.all(others.map((ask) => complete(service.url, ask)));
        await waitFor(() => service.pool.batchStats.maxRows >= 2, 60_000);
        controller.abort();
        await reader.cancel().catch(() => {});
        assert.deepEqual(await together, alone);
        await waitFor(() => service.pool.usage().active === 0);
        const record = service.host.generations.at(-others.length - 1)!;
        assert.equal(record.outcome, "aborted", "the aborted generation ended as aborted");
        const steps = service.pool.batchStats.decodeRuns - decoded;
        if (steps >= 479 && round < 3) continue;
        assert.ok(steps < 479, `the leaving row stayed in the batch to its end (${steps} steps), in 3 rounds`);
        break;
      }
    }),
);

test(
  "a request sent while a long one streams joins its batch and ends first (the loop gives the event loop turns)",
  LONG,
  () =>
    withService(demo, { pool: { mode: "dynamic" }, app: { localRoots: [root.dir] } }, async (service) => {
      await loadAdapters(service);
      const long = await fetch(`${service.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "py",
          prompt: "def ",
          max_tokens: 500,
          temperature: 0,
          stream: true,
          stream_options: { include_usage: true },
        }),
      });
      assert.equal(long.status, 200);
      const reader = long.body!.getReader();
      await reader.read(); // the long one is running
      const short = await complete(service.url, { model: "py2", prompt: "for ", max_tokens: 8 });
      assert.ok(short.text.length > 0);
      let rest = "";
      const decoder = new TextDecoder();
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
        rest += decoder.decode(chunk.value);
      }
      const tokens = Number(/"completion_tokens":(\d+)/.exec(rest)?.[1]);
      const { decodeRuns, maxRows } = service.pool.batchStats;
      // What the server did, not when the client read it: the long one's pieces reach its reader well after they
      // are made (they are written in the loop's turns), so the short one is always read first.
      assert.equal(maxRows, 2, "the short request shared the long one's steps");
      assert.equal(
        decodeRuns,
        tokens - 1,
        "the short request ended first: every step was one of the long one's (its first token came from its prefill)",
      );
    }),
);

test(
  "merged mode batches requests on the same adapter, identically",
  LONG,
  () =>
    withService(demo, { pool: { mode: "merged", maxBatch: 4 }, app: { localRoots: [root.dir] } }, async (service) => {
      await loadAdapters(service);
      const asks = ASKS.slice(0, 5);
      const alone = [];
      for (const ask of asks) alone.push(await complete(service.url, ask));
      assert.deepEqual(await Promise.all(asks.map((ask) => complete(service.url, ask))), alone);
      assert.ok(service.pool.batchStats.maxRows >= 2);
    }),
);

test(
  "dynamic: a base request joins the adapters' running batch as a __base__ row, with the text it gives alone",
  LONG,
  async () => {
    const pool = new AdapterPool(demo.base, { mode: "dynamic", maxBatch: 8 });
    // The adapter's request is long, so the base's arrives while it decodes.
    const run = async (model: string, prompt: string) => {
      let text = "";
      const greedy = { maxNewTokens: model === "py" ? 160 : 24, temperature: 0 };
      for await (const piece of pool.stream(model, prompt, greedy)) text += piece;
      return text;
    };
    try {
      await pool.load("py", { kind: "local", path: DEMO_ADAPTER });
      const alone = [await run("py", "def "), await run("base", "The ")];
      assert.equal(pool.batchStats.maxRows, 1);
      const decoded = pool.batchStats.decodeRuns;
      const py = run("py", "def ");
      await waitFor(() => pool.batchStats.decodeRuns > decoded, 60_000);
      const base = run("base", "The ");
      assert.deepEqual(await Promise.all([py, base]), alone);
      assert.equal(pool.batchStats.maxRows, 2, "the base row decoded in the adapter's batch");
    } finally {
      await pool.close();
    }
  },
);

test(
  "dynamic: a base request that starts first runs on the adapters' batch, so an adapter request joins it",
  LONG,
  async () => {
    const pool = new AdapterPool(demo.base, { mode: "dynamic", maxBatch: 8 });
    // The base's request is long, so the adapter's arrives while it decodes; both run on the one branched session.
    const run = async (model: string, prompt: string) => {
      let text = "";
      const greedy = { maxNewTokens: model === "base" ? 160 : 24, temperature: 0 };
      for await (const piece of pool.stream(model, prompt, greedy)) text += piece;
      return text;
    };
    try {
      await pool.load("py", { kind: "local", path: DEMO_ADAPTER });
      const alone = [await run("base", "The "), await run("py", "def ")];
      const decoded = pool.batchStats.decodeRuns;
      const base = run("base", "The ");
      await waitFor(() => pool.batchStats.decodeRuns > decoded, 60_000);
      const py = run("py", "def ");
      assert.deepEqual(await Promise.all([base, py]), alone);
      assert.equal(pool.batchStats.maxRows, 2, "the adapter's row decoded in the base's batch, not in a second loop");
    } finally {
      await pool.close();
    }
  },
);

test(
  "what cannot share rows runs alone: a prompt-tuning adapter beside batched LoRA rows, and maxBatch 1",
  LONG,
  async () => {
    const tuning = fileURLToPath(new URL("./fixtures/prompt/byte-llama-prompt-tuning", import.meta.url));
    const greedy = { maxNewTokens: 16, temperature: 0 };
    const run = async (pool: AdapterPool, model: string, prompt: string) => {
      let text = "";
      for await (const piece of pool.stream(model, prompt, greedy)) text += piece;
      return text;
    };
    const asks = [["py", "def "], ["prompt", "The "], ["py", "class A:\n"], ["prompt", "x = "]] as const;
    for (const maxBatch of [8, 1]) {
      const pool = new AdapterPool(demo.base, { mode: "dynamic", maxBatch });
      try {
        await pool.load("py", { kind: "local", path: DEMO_ADAPTER });
        await pool.load("prompt", { kind: "local", path: tuning });
        const alone = [];
        for (const [model, prompt] of asks) alone.push(await run(pool, model, prompt));
        const before = pool.batchStats.prefillRuns;
        assert.deepEqual(await Promise.all(asks.map(([model, prompt]) => run(pool, model, prompt))), alone);
        if (maxBatch === 1) {
          assert.deepEqual(pool.batchStats, { prefillRuns: 0, decodeRuns: 0, maxRows: 0 }, "nothing batched");
        } else {
          // Alone: each LoRA request prefilled once (2); together: both in one prefill. The prompt rows never join.
          assert.equal(before, 2);
          assert.equal(pool.batchStats.prefillRuns - before, 1);
          assert.equal(pool.batchStats.maxRows, 2);
        }
      } finally {
        await pool.close();
      }
    }
  },
);

test("an abort stops a stream even when its generation has run ahead of the reader", LONG, async () => {
  const pool = new AdapterPool(demo.base, { mode: "dynamic" });
  try {
    const controller = new AbortController();
    const options = { maxNewTokens: 24, temperature: 0, eosTokenId: [], signal: controller.signal };
    const pieces = pool.stream("base", "def ", options);
    assert.equal((await pieces.next()).done, false);
    await waitFor(() => pool.batchStats.decodeRuns >= 23, 60_000); // every token made, none read but the first
    controller.abort();
    await assert.rejects(pieces.next(), (e: Error) => e.name === "AbortError");
    assert.equal(pool.usage().active, 0, "the lease was given back");
  } finally {
    await pool.close();
  }
});
