/**
 * How serving throughput scales with concurrent clients (continuous
 * batching): `deno run -A bench/serve_bench.ts [--smollm DIR]` (or
 * `bun bench/serve_bench.ts ...`).
 *
 * Serves each model over HTTP in-process on 127.0.0.1 (dynamic mode, 8
 * adapters loaded), then for 1 adapter and for requests spread over all 8,
 * and for each number of clients (default 1, 4, 8, 16), sends
 * `clients x --requests-per-client` greedy completions of `--max-tokens`
 * tokens from that many concurrent clients. Models:
 *
 * - `demo`: the bundled byte-llama demo, with 8 variants of its Python LoRA
 *   (`lora_B` scaled, `support/adapter_variants.ts`);
 * - `smollm` (with `--smollm DIR`): a base of SmolLM2-135M's shape and a PEFT
 *   LoRA r=16 on its seven projections, made by
 *   `python bench/support/make_smollm_shape.py DIR`, with 8 variants of that
 *   LoRA; it has no tokenizer, so prompts are bytes and ids decode to one
 *   character each (`support/id_tokenizer.ts`).
 *
 * The cells run `--rounds` times (default 2; forward, then backward), and
 * each cell's rounds are pooled. Printed per cell: completed requests, aggregate generated tokens/s and its
 * ratio to one client's, tokens per CPU-second of the process (server and
 * clients together; steadier than wall time on a shared machine) and its
 * ratio, p50/p99 client latency, the mean rows per decode step, the prefill runs (requests that
 * arrive together are prefilled in one run), and the
 * process's RSS. Bounded: requests, tokens and time are capped and traffic
 * goes to 127.0.0.1 only; the sweep stops when RSS passes `--max-rss-gb`
 * (default 8; checked during cells too, the process exits past it). Options: `--clients 1,4,8,16`, `--adapters 1,8`,
 * `--max-tokens N` (default 16, max 64), `--requests-per-client N` (default
 * 2, max 20), `--rounds N` (max 10), `--max-batch N` (the pool's `maxBatch`, default 16; 1 serves
 * every request alone), `--models demo,smollm`, `--device wasm|native` (onnxruntime-node), `--threads N` (the runtime's default unless given). The temp adapter roots are
 * deleted at the end.
 * @module
 */
import process from "node:process";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { type BaseModel, createAdapterPool, createApp, loadBaseModel } from "../mod.ts";
import type { TokenizerLike } from "../src/generate/mod.ts";
import { unrefTimer } from "../src/runtime/timers.ts";
import { listen } from "../tests/support/server_listen.ts";
import { makeVariantRoot } from "./support/adapter_variants.ts";
import { idTokenizer } from "./support/id_tokenizer.ts";
import { percentile, runWorkload, type WorkloadAdapter, type WorkloadResult } from "./support/serve_workload.ts";

const DEMO_BASE = fileURLToPath(new URL("../examples/demo/byte-llama", import.meta.url));
const DEMO_ADAPTER = fileURLToPath(new URL("../examples/demo/byte-llama-python-lora", import.meta.url));
const ADMIN_TOKEN = "serve-bench-admin-token";
const PROMPTS = ["def ", "import ", "class ", "for i in ", "return ", "if x ", "while ", "print("];
/** `lora_B` factors of the 8 adapter variants. */
const B_SCALES = [1, 1.25, 1.5, 1.75, 2, 2.25, 2.5, 2.75];
const DEADLINE_MS = 300_000;

/** A comma-separated list of positive integers, each at most `max`. */
function list(name: string, value: string | undefined, fallback: number[], max: number): number[] {
  const values = value === undefined ? fallback : value.split(",").map(Number);
  if (values.length === 0 || values.some((n) => !Number.isSafeInteger(n) || n < 1 || n > max)) {
    throw new RangeError(`--${name} must list integers in 1..${max}`);
  }
  return values;
}

/** One model of the sweep. */
interface BenchModel {
  readonly name: string;
  readonly base: string;
  readonly adapter: string;
  readonly tokenizer?: TokenizerLike;
}

/** One measured cell. */
interface Cell {
  readonly model: string;
  readonly adapters: number;
  readonly clients: number;
  readonly result: WorkloadResult;
  readonly cpuSeconds: number;
  /** Decode steps run. */
  readonly steps: number;
  /** Prefill runs (each for the requests that arrived together). */
  readonly prefills: number;
  readonly rssMb: number;
}

/** The rounds of one cell as one: counts, seconds and steps added, latencies pooled, the last RSS. */
function pooled(rounds: readonly Cell[]): Cell {
  const sum = (f: (c: Cell) => number) => rounds.reduce((total, c) => total + f(c), 0);
  const results = rounds.map((c) => c.result);
  const result: WorkloadResult = {
    completed: sum((c) => c.result.completed),
    failed: sum((c) => c.result.failed),
    firstError: results.find((r) => r.firstError)?.firstError,
    seconds: sum((c) => c.result.seconds),
    latenciesMs: results.flatMap((r) => r.latenciesMs).sort((a, b) => a - b),
    completionTokens: sum((c) => c.result.completionTokens),
    loads: sum((c) => c.result.loads),
    notFound: sum((c) => c.result.notFound),
    busy: sum((c) => c.result.busy),
  };
  const last = rounds[rounds.length - 1];
  return {
    ...last,
    result,
    cpuSeconds: sum((c) => c.cpuSeconds),
    steps: sum((c) => c.steps),
    prefills: sum((c) => c.prefills),
  };
}

/** Mean rows per decode step: every completion's first token comes from its prefill, the others from steps. */
const rowsPerStep = (c: Cell) => c.steps > 0 ? (c.result.completionTokens - c.result.completed) / c.steps : 0;

const tokPerSecond = (c: Cell) => c.result.completionTokens / c.result.seconds;
const tokPerCpuSecond = (c: Cell) => c.result.completionTokens / c.cpuSeconds;

/** Serves one model with 8 adapter variants and measures every (adapters, clients) cell on it. */
async function sweep(
  model: BenchModel,
  options: {
    clients: number[];
    adapters: number[];
    maxTokens: number;
    perClient: number;
    maxBatch: number;
    rounds: number;
    device: "wasm" | "native";
    numThreads?: number;
  },
  maxRss: number,
): Promise<Cell[]> {
  const { device, numThreads } = options;
  const base: BaseModel = await loadBaseModel(model.base, { device, numThreads });
  const root = await makeVariantRoot(model.adapter, B_SCALES);
  const pool = await createAdapterPool(base, {
    baseName: model.name,
    maxAdapters: B_SCALES.length,
    maxBatch: options.maxBatch,
    tokenizer: model.tokenizer,
    // Branches for what the adapters touch (all 8 touch the same modules, so the graph is built once). Not
    // every linear module up front: the smollm export's wrapper names its modules `model.model.*`, which
    // the adapter's `model.*` also resolves to, and one node cannot take a branch under both names.
    prepareModules: [],
  });
  const app = createApp({ pool, adminToken: ADMIN_TOKEN, localRoots: [root.dir], allowHub: false, maxTokens: 64 });
  const server = await listen(app.fetch);
  try {
    const all: WorkloadAdapter[] = root.ids.map((id) => ({ name: `${model.name}-${id}`, id }));
    for (const { name, id } of all) await pool.load(name, { kind: "local", path: join(root.dir, id) });
    const common = {
      url: server.url,
      adminToken: ADMIN_TOKEN,
      prompts: PROMPTS,
      maxTokens: options.maxTokens,
      deadlineMs: DEADLINE_MS,
      maxAttempts: 5,
    };
    // Untimed: every adapter once, and one full batch, so no cell pays first-run costs.
    const most = Math.max(...options.clients);
    const warm = await runWorkload({
      ...common,
      requests: Math.max(most, all.length),
      concurrency: most,
      adapters: all,
    });
    if (warm.failed > 0) throw new Error(`warm-up failed: ${warm.firstError}`);
    const plan = options.adapters.flatMap((adapters) => options.clients.map((clients) => ({ adapters, clients })));
    const runs = new Map<string, Cell[]>();
    for (let round = 0; round < options.rounds; round++) {
      // Forward, then backward: load from other processes falls on early and late cells alike.
      for (const { adapters, clients } of round % 2 === 0 ? plan : [...plan].reverse()) {
        const before = { ...pool.batchStats };
        const cpu = process.cpuUsage();
        const result = await runWorkload({
          ...common,
          requests: clients * options.perClient,
          concurrency: clients,
          adapters: all.slice(0, adapters),
        });
        const used = process.cpuUsage(cpu);
        const steps = pool.batchStats.decodeRuns - before.decodeRuns;
        const prefills = pool.batchStats.prefillRuns - before.prefillRuns;
        const rssMb = process.memoryUsage.rss() / 2 ** 20;
        const key = `${adapters}/${clients}`;
        runs.set(key, [...runs.get(key) ?? [], {
          model: model.name,
          adapters,
          clients,
          result,
          cpuSeconds: (used.user + used.system) / 1e6,
          steps,
          prefills,
          rssMb,
        }]);
        const rate = (result.completionTokens / result.seconds).toFixed(1);
        console.log(`  ${model.name} round ${round + 1}, adapters ${adapters}, clients ${clients}: ${rate} tok/s`);
        if (result.failed > 0) console.log(`  ${result.failed} request(s) failed, first: ${result.firstError}`);
        if (rssMb > maxRss * 1024) {
          console.log(`  RSS ${rssMb.toFixed(0)} MB passed --max-rss-gb ${maxRss}: sweep of ${model.name} stopped`);
          return [...runs.values()].map(pooled);
        }
      }
    }
    return [...runs.values()].map(pooled);
  } finally {
    await server.close();
    await pool.close();
    await root.remove();
    await base.release();
  }
}

/** Prints rows as a table with aligned columns. */
function printTable(rows: string[][]): void {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  for (const r of rows) {
    console.log(r.map((cell, c) => (c < 1 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  "));
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      smollm: { type: "string" },
      models: { type: "string" },
      clients: { type: "string" },
      adapters: { type: "string" },
      "max-tokens": { type: "string" },
      "requests-per-client": { type: "string" },
      "max-batch": { type: "string" },
      "max-rss-gb": { type: "string" },
      rounds: { type: "string" },
      device: { type: "string" },
      threads: { type: "string" },
    },
  });
  const [maxTokens] = list("max-tokens", values["max-tokens"], [16], 64);
  const [perClient] = list("requests-per-client", values["requests-per-client"], [2], 20);
  const [maxBatch] = list("max-batch", values["max-batch"], [16], 64);
  const [maxRss] = list("max-rss-gb", values["max-rss-gb"], [8], 64);
  const [rounds] = list("rounds", values.rounds, [2], 10);
  const options = {
    clients: list("clients", values.clients, [1, 4, 8, 16], 64),
    adapters: list("adapters", values.adapters, [1, 8], B_SCALES.length),
    maxTokens,
    perClient,
    maxBatch,
    rounds,
    // wasm (default) or native (onnxruntime-node): `--device native`.
    device: (values.device ?? "wasm") as "wasm" | "native",
    // The runtime's default (every core) unless given.
    numThreads: values.threads === undefined ? undefined : list("threads", values.threads, [1], 64)[0],
  };
  const models: BenchModel[] = [{ name: "demo", base: DEMO_BASE, adapter: DEMO_ADAPTER }];
  if (values.smollm) {
    models.push({
      name: "smollm",
      base: join(values.smollm, "base"),
      adapter: join(values.smollm, "lora"),
      tokenizer: idTokenizer(),
    });
  }
  const wanted = values.models?.split(",") ?? models.map((m) => m.name);
  const unknown = wanted.find((name) => !models.some((m) => m.name === name));
  if (unknown) throw new Error(`unknown model ${unknown} (smollm needs --smollm DIR)`);
  const runtime = "Bun" in globalThis ? "Bun" : "Deno";
  console.log(
    `serve bench (${runtime}): dynamic mode, 8 adapters loaded; clients x ${perClient} greedy completions of ` +
      `max_tokens ${maxTokens} per cell and round; ${rounds} round(s); batches of ${maxBatch} rows at most; ` +
      `device ${options.device}`,
  );
  const cells: Cell[] = [];
  // Checked during cells too: mixed batches' feed copies can grow fast on a big model, and the machine is shared.
  const watchdog = setInterval(() => {
    const rss = process.memoryUsage.rss() / 2 ** 30;
    if (rss <= maxRss) return;
    console.log(`RSS ${rss.toFixed(1)} GB passed --max-rss-gb ${maxRss} during a cell: stopped; cells done so far:`);
    printTable(table(cells));
    process.exit(2);
  }, 200);
  unrefTimer(watchdog);
  for (const model of models.filter((m) => wanted.includes(m.name))) {
    cells.push(...await sweep(model, options, maxRss));
  }
  clearInterval(watchdog);
  printTable(table(cells));
}

/** The printed table of these cells, a header first. */
function table(cells: readonly Cell[]): string[][] {
  const header = ["model", "adapters", "clients", "ok", "tok/s", "x1", "tok/cpu-s", "x1 cpu", "p50 ms", "p99 ms"];
  const rows = [[...header, "rows/step", "prefills", "rss MB"]];
  for (const c of cells) {
    const one = cells.find((o) => o.model === c.model && o.adapters === c.adapters && o.clients === 1);
    const { result: r } = c;
    rows.push([
      c.model,
      String(c.adapters),
      String(c.clients),
      `${r.completed}/${r.completed + r.failed}`,
      tokPerSecond(c).toFixed(1),
      one ? (tokPerSecond(c) / tokPerSecond(one)).toFixed(2) : "-",
      tokPerCpuSecond(c).toFixed(1),
      one ? (tokPerCpuSecond(c) / tokPerCpuSecond(one)).toFixed(2) : "-",
      percentile(r.latenciesMs, 0.5).toFixed(0),
      percentile(r.latenciesMs, 0.99).toFixed(0),
      rowsPerStep(c).toFixed(1),
      String(c.prefills),
      c.rssMb.toFixed(0),
    ]);
  }
  return rows;
}

if (import.meta.main) await main();
