/**
 * An edge function: `export default { fetch }`, the convention of
 * `deno serve` (and Deno Deploy, and Cloudflare Workers), serving the routes
 * of `examples/serve.ts` (`/health`, `/v1/models`, `/v1/completions`,
 * `/v1/chat/completions`, and `/v1/adapters` with an admin token).
 *
 * ```sh
 * PEFT_EDGE_BASE=examples/demo/byte-llama \
 * PEFT_EDGE_ADAPTERS=python=examples/demo/byte-llama-python-lora \
 *   deno serve --parallel -A --port 8000 examples/edge.ts
 * ```
 *
 * Settings (environment variables, or the bindings a platform passes as
 * `fetch`'s second argument):
 * - `PEFT_EDGE_BASE` (required): the base model's folder, URL or Hub repo id;
 *   its model name is the folder's last path segment.
 * - `PEFT_EDGE_ADAPTERS`: comma-separated `name=location` (folder, http(s)
 *   URL of a folder, or Hub id),
 *   loaded before the first request is answered.
 * - `PEFT_EDGE_ADMIN_TOKEN`: enables `/v1/adapters`.
 * - `PEFT_EDGE_THREADS`: onnxruntime threads per worker (default every core;
 *   with `--parallel`, which runs one worker per core, 1 is usually best).
 *
 * The model loads on the first request (edge platforms forbid I/O while a
 * module is evaluated) and every later request shares it.
 * @module
 */
import { loadBaseModel } from "../mod.ts";
import { isValidRepoId } from "../src/hub/repo_id.ts";
import { readEnv } from "../src/runtime/env.ts";
import { createApp } from "../src/server/mod.ts";
import { type AdapterLocation, createAdapterPool } from "../src/serving/mod.ts";

/** Settings by name: a platform's bindings, else the process environment. */
type Bindings = Record<string, unknown> | undefined;

function setting(env: Bindings, name: string): string | undefined {
  const bound = env?.[name];
  return typeof bound === "string" ? bound : readEnv(name);
}

/** The model name of a base: the last path segment of its folder or URL. */
export function baseModelName(location: string): string {
  const path = /^https?:\/\//.test(location) ? new URL(location).pathname : location;
  return path.replace(/\/+$/, "").split("/").pop() || location;
}

/**
 * `name=location,name=location` as pairs.
 *
 * @throws {Error} naming the entry without a name or location.
 */
export function parseAdapters(value: string | undefined): Array<[name: string, location: string]> {
  if (!value?.trim()) return [];
  return value.split(",").map((entry) => entry.trim()).filter(Boolean).map((entry) => {
    const at = entry.indexOf("=");
    if (at <= 0 || at === entry.length - 1) {
      throw new Error(`PEFT_EDGE_ADAPTERS: expected name=location, got ${JSON.stringify(entry)}`);
    }
    return [entry.slice(0, at), entry.slice(at + 1)];
  });
}

function adapterLocation(location: string): AdapterLocation {
  if (/^https?:\/\//i.test(location)) return { kind: "url", url: location };
  if (!/^(\.|\/|file:)/.test(location) && isValidRepoId(location)) return { kind: "hub", repo: location };
  return { kind: "local", path: location };
}

async function start(env: Bindings): Promise<(request: Request) => Response | Promise<Response>> {
  const location = setting(env, "PEFT_EDGE_BASE");
  if (!location) throw new Error("PEFT_EDGE_BASE is not set (the base model's folder, URL or Hub repo id)");
  const threads = setting(env, "PEFT_EDGE_THREADS");
  const base = await loadBaseModel(location, threads ? { numThreads: Number(threads) } : {});
  const pool = await createAdapterPool(base, {
    baseName: baseModelName(location),
    onWarning: (message) => console.warn(`warning: ${message}`),
  });
  for (const [name, adapter] of parseAdapters(setting(env, "PEFT_EDGE_ADAPTERS"))) {
    await pool.load(name, adapterLocation(adapter));
  }
  return createApp({ pool, adminToken: setting(env, "PEFT_EDGE_ADMIN_TOKEN") || undefined }).fetch;
}

let app: ReturnType<typeof start> | undefined;

export default {
  /** Answers a request, loading the model on the first one. */
  async fetch(request: Request, env?: Bindings): Promise<Response> {
    app ??= start(env);
    let handler;
    try {
      handler = await app;
    } catch (error) {
      app = undefined; // a failed start is retried by the next request
      const message = `the model could not be loaded: ${(error as Error).message}`;
      return Response.json({ error: { message, type: "server_error", param: null } }, { status: 503 });
    }
    return handler(request);
  },
};
