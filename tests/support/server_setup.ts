/**
 * Shared setup of the server tests: the demo model, a pool that records
 * loads and how generations end, a service started on 127.0.0.1
 * with its pool, HTTP helpers (JSON and server-sent events), and a folder
 * of adapters (good, corrupt, not an adapter, a symbolic link) to load from.
 * @module
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { type BaseModel, loadBaseModel } from "../../mod.ts";
import {
  type GenerateOptions,
  type GenerationConfig,
  type GenerationResult,
  loadGenerationConfig,
  type Prompt,
} from "../../src/generate/mod.ts";
import { type AppOptions, createApp } from "../../src/server/mod.ts";
import { type AdapterLocation, AdapterPool, type AdapterPoolOptions } from "../../src/serving/mod.ts";
import type { FileSource } from "../../src/storage/file_source.ts";
import { loadTokenizer, type TextTokenizer } from "../../src/tokenizer/mod.ts";
import type { ListenOptions, RunningServer } from "../../src/server/listen.ts";
import { listen } from "./server_listen.ts";

/** The demo base and adapter folders. */
export const DEMO_BASE = fileURLToPath(new URL("../../examples/demo/byte-llama", import.meta.url));
export const DEMO_ADAPTER = fileURLToPath(new URL("../../examples/demo/byte-llama-python-lora", import.meta.url));
/** The admin token of test services. */
export const ADMIN = "test-admin-token-0123456789";
/** A chat template that renders just the messages' contents, so a chat prompt equals a completion prompt. */
export const PLAIN_CHAT = "{% for m in messages %}{{ m.content }}{% endfor %}";

/** One greedy reference generation of the demo. */
export interface Reference {
  prompt: string;
  variant: "base" | "adapter";
  generated_ids: number[];
  text: string;
}

/** The demo's reference generations (120 greedy bytes). */
export async function references(): Promise<Reference[]> {
  const path = fileURLToPath(new URL("../../examples/demo/reference_generations.json", import.meta.url));
  return JSON.parse(await readFile(path, "utf8")).generations;
}

/** The demo base, its tokenizer and generation defaults. */
export interface Demo {
  base: BaseModel;
  tokenizer: TextTokenizer;
  generationConfig: GenerationConfig;
}

/** Loads the demo base (once per test file). */
export async function loadDemo(): Promise<Demo> {
  const base = await loadBaseModel(DEMO_BASE);
  return {
    base,
    tokenizer: await loadTokenizer(base.source),
    generationConfig: await loadGenerationConfig(base.source),
  };
}

/** How one generation ended, as the recording pool saw it. */
export interface GenerationRecord {
  pieces: number;
  outcome: "done" | "aborted" | "error" | "running";
  result?: GenerationResult;
}

/** What a recording pool saw: loads that reached the model (after every check) and generations. */
export interface PoolRecord {
  readonly loads: string[];
  readonly generations: GenerationRecord[];
  /** Milliseconds to wait before each piece, to make generations slow enough to observe. */
  delayMs: number;
}

/** An adapter pool that records its loads and how each generation ends. */
export class RecordingPool extends AdapterPool {
  readonly record: PoolRecord = { loads: [], generations: [], delayMs: 0 };

  protected override openAdapter(name: string, location: AdapterLocation): Promise<FileSource> {
    this.record.loads.push(name);
    return super.openAdapter(name, location);
  }

  override async *stream(
    model: string,
    prompt: Prompt,
    options: GenerateOptions,
  ): AsyncGenerator<string, GenerationResult, undefined> {
    const record: GenerationRecord = { pieces: 0, outcome: "running" };
    this.record.generations.push(record);
    const pieces = super.stream(model, prompt, options);
    try {
      for (;;) {
        const next = await pieces.next();
        if (next.done) {
          record.outcome = "done";
          record.result = next.value;
          return next.value;
        }
        record.pieces++;
        if (this.record.delayMs > 0) await new Promise((r) => setTimeout(r, this.record.delayMs));
        yield next.value;
      }
    } catch (error) {
      record.outcome = (error as Error).name === "AbortError" ? "aborted" : "error";
      throw error;
    } finally {
      if (record.outcome === "running") {
        record.outcome = "aborted"; // ended early by the consumer
        await pieces.return(undefined as unknown as GenerationResult);
      }
    }
  }
}

/** A service on 127.0.0.1. */
export interface Service {
  url: string;
  pool: AdapterPool;
  /** What the pool saw (loads and generations). */
  host: PoolRecord;
  /** The listener (connections, shutdown). */
  server: RunningServer;
  /** Lines the service logged (`level: message`), with the error details. */
  logs: Array<{ level: "warn" | "error"; message: string; detail?: unknown }>;
  close(): Promise<void>;
}

/** Options of {@linkcode startService}. */
export interface ServiceOptions {
  pool?: AdapterPoolOptions;
  app?: Omit<AppOptions, "pool">;
  listen?: ListenOptions;
  chatTemplate?: string;
}

/** Starts a service over the demo base with a recording pool in merged mode. */
export async function startService(
  demo: Demo,
  options: ServiceOptions = {},
): Promise<Service> {
  const pool = new RecordingPool(demo.base, {
    baseName: "byte-llama",
    mode: "merged",
    tokenizer: demo.tokenizer,
    generationConfig: demo.generationConfig,
    chatTemplate: options.chatTemplate,
    ...options.pool,
  });
  const logs: Service["logs"] = [];
  const logger = {
    warn: (message: string, detail?: unknown) => logs.push({ level: "warn", message, detail }),
    error: (message: string, detail?: unknown) => logs.push({ level: "error", message, detail }),
  };
  const app = createApp({ pool, adminToken: ADMIN, logger, ...options.app });
  const server = await listen(app.fetch, options.listen);
  return {
    url: server.url,
    pool,
    host: pool.record,
    server: server.server,
    logs,
    close: async () => {
      await server.close();
      await pool.close();
    },
  };
}

/** Runs `fn` with a service, closed afterwards. */
export async function withService(
  demo: Demo,
  options: ServiceOptions,
  fn: (service: Service) => Promise<void>,
): Promise<void> {
  const service = await startService(demo, options);
  try {
    await fn(service);
  } finally {
    await service.close();
  }
}

/** A response read as JSON. */
export interface JsonReply {
  status: number;
  headers: Headers;
  // deno-lint-ignore no-explicit-any
  body: any;
}

/** Sends a request and reads the JSON reply. `body` objects are JSON-encoded; strings are sent as is. */
export async function call(
  url: string,
  method: string,
  path: string,
  options: { body?: unknown; token?: string; headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<JsonReply> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === "string" ? options.body : JSON.stringify(options.body);
    headers["content-type"] ??= "application/json";
  }
  const response = await fetch(`${url}${path}`, { method, headers, body, signal: options.signal });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text === "" ? undefined : JSON.parse(text) };
}

/** The `data:` payloads of an event stream, parsed (`[DONE]` kept as the string). */
export async function readEvents(response: Response): Promise<unknown[]> {
  const text = await response.text();
  const events: unknown[] = [];
  for (const block of text.split("\n\n")) {
    if (block.trim() === "") continue;
    const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
    events.push(data === "[DONE]" ? data : JSON.parse(data));
  }
  return events;
}

/** Waits until `check` holds, polling every 10 ms, failing after `ms`. */
export async function waitFor(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!await check()) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A temp folder of adapters to serve as a local root. */
export interface AdapterRoot {
  dir: string;
  remove(): Promise<void>;
}

/**
 * A root holding `python` (the demo adapter), `python-x2` (its alpha
 * doubled, so it generates differently), `corrupt` (truncated weights),
 * `nested/python`, `empty` (no adapter files) and `link` (a symbolic link to
 * the demo adapter, which must not be followed).
 */
export async function makeAdapterRoot(): Promise<AdapterRoot> {
  const dir = await mkdtemp(`${tmpdir()}/peft-edge-adapters-`);
  const copy = async (to: string, edit?: (config: Record<string, unknown>) => void, truncate = false) => {
    await mkdir(`${dir}/${to}`, { recursive: true });
    const config = JSON.parse(await readFile(`${DEMO_ADAPTER}/adapter_config.json`, "utf8"));
    edit?.(config);
    await writeFile(`${dir}/${to}/adapter_config.json`, JSON.stringify(config));
    if (truncate) {
      const weights = await readFile(`${DEMO_ADAPTER}/adapter_model.safetensors`);
      await writeFile(`${dir}/${to}/adapter_model.safetensors`, weights.subarray(0, 1000));
    } else {
      await copyFile(`${DEMO_ADAPTER}/adapter_model.safetensors`, `${dir}/${to}/adapter_model.safetensors`);
    }
  };
  await copy("python");
  await copy("python-x2", (c) => (c.lora_alpha = 2 * (c.lora_alpha as number)));
  await copy("corrupt", undefined, true);
  await copy("nested/python");
  await mkdir(`${dir}/empty`);
  await symlink(DEMO_ADAPTER, `${dir}/link`);
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}
