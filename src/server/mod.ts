/**
 * The HTTP service: a Hono app that maps an OpenAI-compatible subset
 * (completions, chat completions, streaming) and adapter management behind
 * an admin token onto an adapter pool from src/serving.
 *
 * @example
 * ```ts
 * import { createApp } from "./mod.ts";
 * import { createAdapterPool } from "../serving/mod.ts";
 * import { loadBaseModel } from "../model/base_model.ts";
 * const base = await loadBaseModel("examples/demo/byte-llama");
 * const pool = await createAdapterPool(base, { maxAdapters: 4 });
 * const app = createApp({ pool, adminToken: Deno.env.get("PEFT_EDGE_ADMIN_TOKEN"), localRoots: ["examples/demo"] });
 * Deno.serve({ hostname: "127.0.0.1", port: 8000 }, app.fetch);
 * ```
 * @module
 */
export { ApiError, type ApiErrorOptions, type ErrorType } from "./api_error.ts";
export { createApp } from "./app.ts";
export type { AppOptions } from "./app_options.ts";
export { toApiError } from "./to_api_error.ts";
