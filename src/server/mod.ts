/**
 * The HTTP service: a Hono app serving one base model and many LoRA
 * adapters over an OpenAI-compatible subset (completions, chat completions,
 * streaming), with adapter management behind an admin token and an adapter
 * pool bounded by count and bytes.
 *
 * @example
 * ```ts
 * import { createAdapterPool, createApp } from "./mod.ts";
 * import { loadBaseModel } from "../model/base_model.ts";
 * const base = await loadBaseModel("examples/demo/byte-llama");
 * const pool = await createAdapterPool(base, { maxAdapters: 4 });
 * const app = createApp({ pool, adminToken: Deno.env.get("PEFT_EDGE_ADMIN_TOKEN"), localRoots: ["examples/demo"] });
 * Deno.serve({ hostname: "127.0.0.1", port: 8000 }, app.fetch);
 * ```
 * @module
 */
export { createApp } from "./app.ts";
export type { AppOptions } from "./app_options.ts";
export { createAdapterPool, type CreatePoolOptions } from "./create_pool.ts";
export { type AdapterInfo, AdapterPool, type AdapterPoolOptions, type Lease, type PoolUsage } from "./pool.ts";
export { PoolError, type PoolErrorKind } from "./pool_error.ts";
export type { AdapterHost, AdapterLocation, HostedAdapter, HostLoadOptions, HubOptions } from "./host.ts";
export { mergedHost, type MergedHostOptions } from "./merged_host.ts";
export { dynamicHost, type DynamicHostOptions } from "./dynamic_host.ts";
export { type AdapterSources, locateAdapter } from "./adapter_id.ts";
export { withChatTemplate } from "./chat_template.ts";
export { type ErrorType, HttpError } from "./http_error.ts";
