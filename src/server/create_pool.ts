/**
 * {@linkcode createAdapterPool}: the usual way to build the adapter pool a
 * service serves: a base model, its tokenizer and generation defaults, and
 * the merged-mode host.
 * @module
 */
import { type GenerationConfig, loadGenerationConfig, type TokenizerLike } from "../generate/mod.ts";
import type { BaseModel } from "../model/base_model.ts";
import { loadTokenizer } from "../tokenizer/mod.ts";
import { withChatTemplate } from "./chat_template.ts";
import { dynamicHost } from "./dynamic_host.ts";
import { mergedHost } from "./merged_host.ts";
import { AdapterPool, type AdapterPoolOptions } from "./pool.ts";

/**
 * Options of {@linkcode createAdapterPool}: the pool's limits plus where the
 * tokenizer, generation defaults and chat template come from.
 *
 * @example
 * ```ts
 * import type { CreatePoolOptions } from "./create_pool.ts";
 * const options: CreatePoolOptions = { baseName: "byte-llama", maxAdapters: 4, chatTemplate: "{{ messages[0].content }}" };
 * ```
 */
export interface CreatePoolOptions extends AdapterPoolOptions {
  /** The tokenizer; default: loaded from the base's files. */
  tokenizer?: TokenizerLike;
  /** Generation defaults; default: the base's `generation_config.json` (if any). */
  generationConfig?: GenerationConfig;
  /** A Jinja chat template used instead of the tokenizer's (for models without one). */
  chatTemplate?: string;
  /**
   * `"dynamic"` (default): every adapter unmerged in one shared session, chosen per request.
   * `"merged"`: one merged session per adapter (a full weight copy each; needed for
   * adapters with `modules_to_save`, trained biases or `lora_bias`).
   */
  mode?: "dynamic" | "merged";
}

/**
 * Builds the adapter pool for a base model, with adapters merged into
 * sessions of their own.
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
export async function createAdapterPool(base: BaseModel, options: CreatePoolOptions = {}): Promise<AdapterPool> {
  let tokenizer = options.tokenizer ?? await loadTokenizer(base.source);
  if (options.chatTemplate !== undefined) tokenizer = withChatTemplate(tokenizer, options.chatTemplate);
  const generationConfig = options.generationConfig ?? await loadGenerationConfig(base.source);
  const host = options.mode === "merged"
    ? mergedHost(base, tokenizer, { generationConfig })
    : dynamicHost(base, tokenizer, { generationConfig });
  return new AdapterPool(host, options);
}
