/**
 * The HTTP service: a Hono app that maps an OpenAI-compatible subset
 * (completions, chat completions, streaming) and adapter management behind
 * an admin token onto an adapter pool from src/serving, and a listener with
 * the limits a public service needs (head deadline, connection cap,
 * graceful shutdown).
 *
 * @example
 * ```ts
 * import { createApp, listen } from "./mod.ts";
 * import { createAdapterPool } from "../serving/mod.ts";
 * import { loadBaseModel } from "../model/base_model.ts";
 * const base = await loadBaseModel("examples/demo/byte-llama");
 * const pool = await createAdapterPool(base, { maxAdapters: 4 });
 * const stop = new AbortController();
 * const app = createApp({ pool, adminToken: Deno.env.get("PEFT_EDGE_ADMIN_TOKEN"), stopSignal: stop.signal });
 * const server = await listen(app.fetch, { hostname: "127.0.0.1", port: 8000 });
 * Deno.addSignalListener("SIGTERM", () => server.shutdown({ graceMs: 10_000, cancel: () => stop.abort() }));
 * ```
 * @module
 */
export { ApiError, type ApiErrorOptions, type ErrorType } from "./api_error.ts";
export { createApp, type PeftEdgeApp } from "./app.ts";
export type { AppOptions, CorsSettings, ServerLogger } from "./app_options.ts";
export { listen, type ListenOptions, type RunningServer, type ShutdownOptions } from "./listen.ts";
export { redactPaths, toApiError } from "./to_api_error.ts";
