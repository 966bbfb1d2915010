/**
 * Serving, apart from HTTP: the adapter pool (many adapters on one base
 * model in one `PeftModel`, bounded by count and bytes, least recently used
 * idle adapters evicted), continuous batching (concurrent requests share
 * decode steps), adapter locations and id checks, chat templates.
 *
 * @example
 * ```ts
 * import { createAdapterPool } from "./mod.ts";
 * import { loadBaseModel } from "../model/base_model.ts";
 * const base = await loadBaseModel("examples/demo/byte-llama");
 * const pool = await createAdapterPool(base, { maxAdapters: 4 });
 * await pool.load("python", { kind: "local", path: "examples/demo/byte-llama-python-lora" });
 * for await (const piece of pool.stream("python", "def ", { maxNewTokens: 16 })) console.log(piece);
 * ```
 * @module
 */
export { type AdapterSources, locateAdapter } from "./adapter_id.ts";
export { withChatTemplate } from "./chat_template.ts";
export { BatchRouter, type BatchSeat } from "./batch_router.ts";
export { DecodeScheduler, type SchedulerOptions, type SchedulerStats } from "./decode_scheduler.ts";
export { createAdapterPool, type CreatePoolOptions } from "./create_pool.ts";
export type { Lease } from "./lease.ts";
export { type AdapterLocation, type HubOptions, openLocation } from "./location.ts";
export { type AdapterInfo, AdapterPool, type PoolUsage } from "./pool.ts";
export { PoolError, type PoolErrorKind } from "./pool_error.ts";
export type { AdapterPoolOptions } from "./pool_options.ts";
export type { ModelAdapter, SharedModelOptions } from "./shared_model.ts";
