/**
 * Serve a base model and LoRA adapters over an OpenAI-compatible HTTP API
 * (see src/server): `Deno.serve` under Deno, `Bun.serve` under Bun.
 *
 * ```sh
 * export PEFT_EDGE_ADMIN_TOKEN=$(openssl rand -hex 24)   # enables /v1/adapters
 * deno run -A examples/serve.ts --base examples/demo/byte-llama \
 *   --adapter python=examples/demo/byte-llama-python-lora --adapter-root examples/demo --port 8000
 * bun examples/serve.ts --base examples/demo/byte-llama --adapter python=examples/demo/byte-llama-python-lora
 * curl -s localhost:8000/v1/completions -H 'content-type: application/json' \
 *   -d '{"model":"python","prompt":"def ","max_tokens":40,"temperature":0}'
 * ```
 *
 * Options: `--base <path|id>` (required), `--adapter NAME=<path|id>`
 * (repeatable; loaded before serving), `--port N` (default 8000; 0 picks a
 * free port), `--host ADDRESS` (default 127.0.0.1), `--adapter-root DIR`
 * (repeatable: folders `POST /v1/adapters` may load from by name),
 * `--no-hub` (`POST /v1/adapters` may not load Hub ids), `--max-adapters N`,
 * `--max-adapter-bytes N`, `--max-tokens N`, `--name NAME` (the base's model
 * name; default the last part of `--base`), `--chat-template FILE` (a Jinja
 * chat template for bases without one), `--cors-origin ORIGIN` (repeatable;
 * CORS is off without it), `--max-connections N`, `--max-queued N`,
 * `--max-batch N` (rows per shared decode batch; 1 serves requests alone),
 * `--grace-ms N` (how long SIGINT/SIGTERM let generations finish before
 * cancelling them), `--device auto|wasm|webgpu|native` (where sessions run;
 * `native` is onnxruntime-node, the fastest on a server), `--dtype T` (the
 * base's ONNX variant, e.g. `q4`, the fast one on `native`). `PEFT_EDGE_API_KEY` makes the inference routes require
 * that bearer key. Prints the URL it listens on; logs refused requests'
 * details and any stray error to stderr, and keeps serving.
 * @module
 */
import { readFile } from "node:fs/promises";
import process from "node:process";
import { type DeviceOption, loadBaseModel, type ModelDtype, PeftEdgeError } from "../mod.ts";
import { isValidRepoId } from "../src/hub/repo_id.ts";
import { createApp, listen } from "../src/server/mod.ts";
import { type AdapterLocation, createAdapterPool, PoolError } from "../src/serving/mod.ts";
import { isLocalFolder } from "../src/storage/local.ts";
import { looksLocal } from "../src/hub/resolve.ts";
import { commandLine, usageError } from "./cli.ts";

const USAGE = `usage: serve.ts --base <path|id> [--adapter NAME=<path|id>]... [--port N] [--host 127.0.0.1]
       [--adapter-root DIR]... [--no-hub] [--max-adapters N] [--max-adapter-bytes N] [--max-tokens N] [--name NAME]
       [--chat-template FILE] [--cors-origin ORIGIN]... [--max-connections N] [--max-queued N] [--max-batch N]
       [--grace-ms N] [--device auto|wasm|webgpu|native] [--dtype fp32|q4|q8|...]
environment: PEFT_EDGE_ADMIN_TOKEN enables the adapter-management routes (/v1/adapters);
             PEFT_EDGE_API_KEY makes the inference routes require that bearer key`;

/** Parsed command line. */
interface Args {
  base: string;
  name?: string;
  adapters: Array<[name: string, pathOrId: string]>;
  roots: string[];
  port: number;
  host: string;
  allowHub: boolean;
  maxAdapters?: number;
  maxBytes?: number;
  maxTokens?: number;
  chatTemplate?: string;
  corsOrigins: string[];
  maxConnections?: number;
  maxQueued?: number;
  maxBatch?: number;
  graceMs: number;
  device?: DeviceOption;
  dtype?: ModelDtype;
}

/** Exits with the usage text and a reason. */
function usage(reason: string): never {
  return usageError(USAGE, reason);
}

/** A non-negative integer flag value. */
function integer(flag: string, value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isSafeInteger(n) || n < 0) {
    usage(`${flag} needs a whole number, got ${JSON.stringify(value)}`);
  }
  return n;
}

/** Parses the command line (`cli.ts`); bad input exits 2 with the usage text. */
function readArgs(argv: string[]): Args {
  const values = commandLine(USAGE, {
    base: { type: "string" },
    name: { type: "string" },
    adapter: { type: "string", multiple: true },
    "adapter-root": { type: "string", multiple: true },
    port: { type: "string" },
    host: { type: "string" },
    "no-hub": { type: "boolean" },
    "max-adapters": { type: "string" },
    "max-adapter-bytes": { type: "string" },
    "max-tokens": { type: "string" },
    "chat-template": { type: "string" },
    "cors-origin": { type: "string", multiple: true },
    "max-connections": { type: "string" },
    "max-queued": { type: "string" },
    "max-batch": { type: "string" },
    "grace-ms": { type: "string" },
    device: { type: "string" },
    dtype: { type: "string" },
  }, argv);
  if (!values.base) usage("--base is required");
  const whole = (
    flag:
      | "port"
      | "max-adapters"
      | "max-adapter-bytes"
      | "max-tokens"
      | "max-connections"
      | "max-queued"
      | "max-batch"
      | "grace-ms",
  ) => {
    const value = values[flag];
    return value === undefined ? undefined : integer(`--${flag}`, value);
  };
  const adapters = (values.adapter ?? []).map((value): [string, string] => {
    const at = value.indexOf("=");
    if (at <= 0 || at === value.length - 1) usage(`--adapter needs NAME=<path|id>, got ${JSON.stringify(value)}`);
    return [value.slice(0, at), value.slice(at + 1)];
  });
  const port = whole("port") ?? 8000;
  if (port > 65535) usage("--port must be at most 65535");
  return {
    base: values.base,
    name: values.name,
    adapters,
    roots: values["adapter-root"] ?? [],
    port,
    host: values.host ?? "127.0.0.1",
    allowHub: !values["no-hub"],
    maxAdapters: whole("max-adapters"),
    maxBytes: whole("max-adapter-bytes"),
    maxTokens: whole("max-tokens"),
    chatTemplate: values["chat-template"],
    corsOrigins: values["cors-origin"] ?? [],
    maxConnections: whole("max-connections"),
    maxQueued: whole("max-queued"),
    maxBatch: whole("max-batch"),
    graceMs: whole("grace-ms") ?? 10_000,
    // Checked by loadBaseModel, whose errors name the option.
    device: values.device as DeviceOption | undefined,
    dtype: values.dtype as ModelDtype | undefined,
  };
}

/** Where a command-line adapter is: an http(s) folder URL, a local folder (the operator's, any path) or a Hub repo. */
async function locate(pathOrId: string): Promise<AdapterLocation> {
  if (/^https?:\/\//i.test(pathOrId)) return { kind: "url", url: pathOrId };
  if (looksLocal(pathOrId) || await isLocalFolder(pathOrId)) return { kind: "local", path: pathOrId };
  if (isValidRepoId(pathOrId)) return { kind: "hub", repo: pathOrId };
  throw new Error(`${pathOrId} is neither a URL, a local folder nor a Hub repo id`);
}

/** Logs what a long-running server must survive: a stray rejection or exception is a bug to report, not a crash. */
function surviveStrayErrors(): void {
  const report = (what: string) => (error: unknown) => {
    process.stderr.write(`error: ${what} (server keeps running): ${(error as Error)?.stack ?? error}\n`);
  };
  process.on("unhandledRejection", report("unhandled rejection"));
  process.on("uncaughtException", report("uncaught exception"));
  // Deno also reports through the web events; preventDefault keeps the process alive there.
  globalThis.addEventListener?.("unhandledrejection", (event) => {
    event.preventDefault();
    report("unhandled rejection")(event.reason);
  });
}

async function main(): Promise<void> {
  const args = readArgs(process.argv.slice(2));
  const adminToken = process.env.PEFT_EDGE_ADMIN_TOKEN || undefined;
  const started = performance.now();
  const base = await loadBaseModel(args.base, { device: args.device, dtype: args.dtype });
  const baseName = args.name ?? args.base.replace(/\/+$/, "").split("/").pop()!;
  const pool = await createAdapterPool(base, {
    baseName,
    maxAdapters: args.maxAdapters,
    maxBytes: args.maxBytes,
    maxBatch: args.maxBatch,
    chatTemplate: args.chatTemplate === undefined ? undefined : await readFile(args.chatTemplate, "utf8"),
    onWarning: (message) => process.stderr.write(`warning: ${message}\n`),
  });
  for (const [name, pathOrId] of args.adapters) {
    await pool.load(name, await locate(pathOrId));
    process.stderr.write(`loaded adapter ${name} from ${pathOrId}\n`);
  }
  const stop = new AbortController();
  const app = createApp({
    pool,
    adminToken,
    apiKey: process.env.PEFT_EDGE_API_KEY || undefined,
    localRoots: args.roots,
    allowHub: args.allowHub,
    maxTokens: args.maxTokens,
    maxQueued: args.maxQueued,
    cors: args.corsOrigins.length > 0 ? { origin: args.corsOrigins } : undefined,
    stopSignal: stop.signal,
    logger: {
      warn: (message) => process.stderr.write(`warning: ${message}\n`),
      error: (message, detail) => process.stderr.write(`error: ${message}: ${(detail as Error)?.stack ?? detail}\n`),
    },
  });
  surviveStrayErrors();
  const server = await listen(app.fetch, {
    hostname: args.host,
    port: args.port,
    maxConnections: args.maxConnections,
    onLog: (message) => process.stderr.write(`${message}\n`),
  });
  const url = server.url;
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) process.exit(130); // a second signal: stop now
    stopping = true;
    process.stderr.write(`${signal}: finishing requests in flight (at most ${args.graceMs} ms)\n`);
    await server.shutdown({ graceMs: args.graceMs, cancel: () => stop.abort() });
    await pool.close();
    process.stderr.write("stopped\n");
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.stderr.write(
    `ready in ${((performance.now() - started) / 1000).toFixed(1)} s; models: ${
      [
        baseName,
        ...args.adapters.map(([n]) => n),
      ].join(", ")
    }\n`,
  );
  if (!adminToken) process.stderr.write("PEFT_EDGE_ADMIN_TOKEN is not set: /v1/adapters is disabled\n");
  process.stdout.write(`listening on ${url}\n`);
}

main().catch((error) => {
  const known = error instanceof PeftEdgeError || error instanceof PoolError || error instanceof RangeError;
  process.stderr.write(`error: ${known ? error.message : error?.stack ?? error}\n`);
  process.exit(1);
});
