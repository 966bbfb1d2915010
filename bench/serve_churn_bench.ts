/**
 * Serving throughput and latency with and without adapter churn, in one run:
 * `deno run -A bench/serve_churn_bench.ts` (or `bun bench/serve_churn_bench.ts`).
 * (`serve_bench.ts` measures how throughput scales with concurrent clients.)
 *
 * Starts the HTTP service in-process on 127.0.0.1 (a port the OS picks) over
 * the bundled demo base, and sends two workloads of the same shape (by default
 * 200 greedy completions of `max_tokens` 8 on short prompts, 8 in flight):
 *
 * - `single`: every request names the same adapter.
 * - `churn`: requests cycle over 4 adapters (the demo adapter with its
 *   `lora_B` scaled by 1, 1.5, 2 and 2.5, written to a temp local root) while
 *   the pool holds at most 2, so adapters are evicted and loaded again during
 *   the run: a completion answered 404 loads its adapter with
 *   `POST /v1/adapters` (admin token) and retries.
 *
 * The two workloads run in alternating order for a few rounds (default 3),
 * each on a fresh service and pool after a short untimed warm-up on its first
 * adapter, and each workload's rounds are pooled. Printed per workload:
 * requests/s, generated tokens/s, p50 and p99 client latency (retries
 * included), adapter loads (outside the warm-up), 404 and 503 answers; then
 * the churn/single ratios of throughput (also per round) and p99. Bounded:
 * requests and attempts are capped and each workload has a deadline; traffic
 * goes to 127.0.0.1 only. Options: `--requests N` (max 2000),
 * `--concurrency N` (max 64), `--max-tokens N` (max 64), `--rounds N`
 * (max 10), `--max-batch N` (the pool's `maxBatch`, default 8; 1 serves
 * every request alone, as before continuous batching). The temp root is
 * deleted at the end.
 * @module
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { type BaseModel, createAdapterPool, createApp, loadBaseModel } from "../mod.ts";
import { listen } from "../tests/support/server_listen.ts";
import { makeVariantRoot } from "./support/adapter_variants.ts";
import { percentile, runWorkload, type WorkloadAdapter, type WorkloadResult } from "./support/serve_workload.ts";

const DEMO_BASE = fileURLToPath(new URL("../examples/demo/byte-llama", import.meta.url));
const DEMO_ADAPTER = fileURLToPath(new URL("../examples/demo/byte-llama-python-lora", import.meta.url));
const ADMIN_TOKEN = "serve-bench-admin-token";
const PROMPTS = ["def ", "import ", "class ", "for i in ", "return ", "if x "];
const B_SCALES = [1, 1.5, 2, 2.5];
const POOL_ADAPTERS = 2;
const DEADLINE_MS = 120_000;
const MAX_ATTEMPTS = 50;

/** A positive integer option, at most `max`. */
function bounded(name: string, value: string | undefined, fallback: number, max: number): number {
  const n = value === undefined ? fallback : Number(value);
  if (!Number.isSafeInteger(n) || n < 1 || n > max) throw new RangeError(`--${name} must be an integer in 1..${max}`);
  return n;
}

/** Serves a fresh pool over `base`, warms it up on the first adapter, then runs the measured workload. */
async function measure(
  base: BaseModel,
  root: string,
  adapters: readonly WorkloadAdapter[],
  shape: { requests: number; concurrency: number; maxTokens: number },
  maxBatch: number,
): Promise<WorkloadResult> {
  const pool = await createAdapterPool(base, { baseName: "byte-llama", maxAdapters: POOL_ADAPTERS, maxBatch });
  const app = createApp({ pool, adminToken: ADMIN_TOKEN, localRoots: [root], allowHub: false, maxTokens: 64 });
  const server = await listen(app.fetch);
  try {
    const common = {
      url: server.url,
      adminToken: ADMIN_TOKEN,
      prompts: PROMPTS,
      deadlineMs: DEADLINE_MS,
      maxAttempts: MAX_ATTEMPTS,
      ...shape,
    };
    const warm = await runWorkload({ ...common, requests: 2 * shape.concurrency, adapters: adapters.slice(0, 1) });
    if (warm.failed > 0) throw new Error(`warm-up failed: ${warm.firstError}`);
    return await runWorkload({ ...common, adapters });
  } finally {
    await server.close();
    await pool.close();
  }
}

/** One row of the table. */
function row(name: string, r: WorkloadResult): string[] {
  return [
    name,
    `${r.completed}/${r.completed + r.failed}`,
    (r.completed / r.seconds).toFixed(1),
    (r.completionTokens / r.seconds).toFixed(0),
    percentile(r.latenciesMs, 0.5).toFixed(1),
    percentile(r.latenciesMs, 0.99).toFixed(1),
    String(r.loads),
    String(r.notFound),
    String(r.busy),
  ];
}

/** Prints rows as a table with aligned columns. */
function printTable(rows: string[][]): void {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  for (const r of rows) {
    console.log(r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  "));
  }
}

/** Sums the rounds of one workload: counts and seconds added, latencies pooled. */
function pooled(results: readonly WorkloadResult[]): WorkloadResult {
  const sum = (f: (r: WorkloadResult) => number) => results.reduce((total, r) => total + f(r), 0);
  return {
    completed: sum((r) => r.completed),
    failed: sum((r) => r.failed),
    firstError: results.find((r) => r.firstError)?.firstError,
    seconds: sum((r) => r.seconds),
    latenciesMs: results.flatMap((r) => r.latenciesMs).sort((a, b) => a - b),
    completionTokens: sum((r) => r.completionTokens),
    loads: sum((r) => r.loads),
    notFound: sum((r) => r.notFound),
    busy: sum((r) => r.busy),
  };
}

const rate = (r: WorkloadResult) => r.completed / r.seconds;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      requests: { type: "string" },
      concurrency: { type: "string" },
      "max-tokens": { type: "string" },
      rounds: { type: "string" },
      "max-batch": { type: "string" },
    },
  });
  const shape = {
    requests: bounded("requests", values.requests, 200, 2000),
    concurrency: bounded("concurrency", values.concurrency, 8, 64),
    maxTokens: bounded("max-tokens", values["max-tokens"], 8, 64),
  };
  const rounds = bounded("rounds", values.rounds, 3, 10);
  const maxBatch = bounded("max-batch", values["max-batch"], 8, 64);
  const runtime = "Bun" in globalThis ? "Bun" : "Deno";
  console.log(
    `serve churn bench (${runtime}): ${shape.requests} completions per workload and round, ${shape.concurrency} in flight,` +
      ` max_tokens ${shape.maxTokens}, greedy, batches of ${maxBatch} at most; pool of ${POOL_ADAPTERS} adapters, churn over ${B_SCALES.length};` +
      ` ${rounds} round(s), workloads alternating`,
  );
  const base = await loadBaseModel(DEMO_BASE);
  const root = await makeVariantRoot(DEMO_ADAPTER, B_SCALES);
  try {
    const workloads = {
      single: [{ name: "single", id: root.ids[0] }],
      churn: root.ids.map((id) => ({ name: `churn-${id}`, id })),
    };
    const results: Record<keyof typeof workloads, WorkloadResult[]> = { single: [], churn: [] };
    for (let round = 0; round < rounds; round++) {
      // single, churn, churn, single, ...: neither workload always runs first.
      const order = round % 2 === 0 ? (["single", "churn"] as const) : (["churn", "single"] as const);
      for (const name of order) results[name].push(await measure(base, root.dir, workloads[name], shape, maxBatch));
    }
    const single = pooled(results.single);
    const churn = pooled(results.churn);
    printTable([
      ["workload", "ok", "req/s", "tok/s", "p50 ms", "p99 ms", "loads", "404s", "503s"],
      row("single", single),
      row("churn", churn),
    ]);
    const p99 = percentile(churn.latenciesMs, 0.99) / percentile(single.latenciesMs, 0.99);
    const perRound = results.churn.map((r, i) => (rate(r) / rate(results.single[i])).toFixed(2));
    console.log(
      `churn/single: throughput x${(rate(churn) / rate(single)).toFixed(2)} (rounds: ${perRound.join(", ")}),` +
        ` p99 latency x${p99.toFixed(2)}`,
    );
    for (const [name, r] of [["single", single], ["churn", churn]] as const) {
      if (r.failed > 0) console.log(`${name}: ${r.failed} request(s) failed, first: ${r.firstError}`);
    }
  } finally {
    await root.remove();
    await base.release();
  }
}

if (import.meta.main) await main();
