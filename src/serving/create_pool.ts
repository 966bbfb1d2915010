/**
 * {@linkcode createAdapterPool}: the usual way to build the adapter pool a
 * service serves.
 * @module
 */
import type { BaseModel } from "../model/base_model.ts";
import { AdapterPool } from "./pool.ts";
import type { AdapterPoolOptions } from "./pool_options.ts";

/**
 * Options of {@linkcode createAdapterPool}: the pool's limits, its mode,
 * and the tokenizer, generation defaults and chat template (by default the
 * base's own).
 *
 * @example
 * ```ts
 * import type { CreatePoolOptions } from "./create_pool.ts";
 * const options: CreatePoolOptions = { baseName: "byte-llama", maxAdapters: 4, chatTemplate: "{{ messages[0].content }}" };
 * ```
 */
export type CreatePoolOptions = AdapterPoolOptions;

/**
 * Builds the adapter pool for a base model: `new AdapterPool(base, options)`,
 * with a bad option as a rejected promise. Adapters run in dynamic mode
 * unless `mode: "merged"`.
 *
 * @example
 * ```ts
 * import { createAdapterPool } from "./create_pool.ts";
 * import { loadBaseModel } from "../model/base_model.ts";
 * const base = await loadBaseModel("examples/demo/byte-llama");
 * const pool = await createAdapterPool(base, { baseName: "byte-llama", maxAdapters: 4 });
 * await pool.load("python", { kind: "local", path: "examples/demo/byte-llama-python-lora" });
 * ```
 */
export function createAdapterPool(base: BaseModel, options: CreatePoolOptions = {}): Promise<AdapterPool> {
  try {
    return Promise.resolve(new AdapterPool(base, options));
  } catch (error) {
    return Promise.reject(error);
  }
}
