/**
 * Options of the adapter pool and their defaults: limits, the model's text
 * side (tokenizer, generation defaults, chat template) and how adapters are
 * loaded.
 * @module
 */
import { GenerationError } from "../errors.ts";
import type { GenerationConfig, TokenizerLike } from "../generate/mod.ts";
import type { BaseModel } from "../model/base_model.ts";
import { withChatTemplate } from "./chat_template.ts";
import type { HubOptions } from "./location.ts";
import type { SharedModelOptions } from "./shared_model.ts";

/**
 * Limits and settings of an `AdapterPool`.
 *
 * @example
 * ```ts
 * import type { AdapterPoolOptions } from "./pool_options.ts";
 * const options: AdapterPoolOptions = { baseName: "byte-llama", maxAdapters: 4, maxBytes: 64 << 20, mode: "merged" };
 * ```
 */
export interface AdapterPoolOptions extends SharedModelOptions {
  /** The name the base model is served under (default `"base"`). */
  baseName?: string;
  /** Adapters held at most, loading ones included (default 8). */
  maxAdapters?: number;
  /** Bytes held by adapters at most (default: no limit); see `AdapterInfo.bytes`. */
  maxBytes?: number;
  /** Generations running at once at most; more are refused as busy (default 64). */
  maxActive?: number;
  /**
   * Rows one decode batch holds at most (continuous batching, see
   * `BatchRouter`); further requests wait in order. Default 8; 1 runs every
   * request alone.
   */
  maxBatch?: number;
  /** Hub settings for adapters loaded from the Hub. */
  hub?: HubOptions;
  /** Receives warnings from loads and releases (default: ignored). */
  onWarning?: (message: string) => void;
  /** The tokenizer; default the base's own (`base.text`). */
  tokenizer?: TokenizerLike;
  /** Generation defaults; default the base's `generation_config.json` (`base.text`). */
  generationConfig?: GenerationConfig;
  /** A Jinja chat template used instead of the tokenizer's (for models without one). */
  chatTemplate?: string;
}

/**
 * The pool's options with defaults applied.
 *
 * @example
 * ```ts
 * import { resolvePoolOptions } from "./pool_options.ts";
 * import type { BaseModel } from "../model/base_model.ts";
 * declare const base: BaseModel;
 * resolvePoolOptions(base, {}).maxAdapters; // 8
 * ```
 */
export interface ResolvedPoolOptions {
  /** The base's public name. */
  readonly baseName: string;
  /** Adapters held at most. */
  readonly maxAdapters: number;
  /** Bytes held at most (Infinity: no limit). */
  readonly maxBytes: number;
  /** Generations at once at most. */
  readonly maxActive: number;
  /** Rows per decode batch at most. */
  readonly maxBatch: number;
  /** Hub settings. */
  readonly hub: HubOptions;
  /** Receives warnings. */
  readonly onWarning: (message: string) => void;
  /** The tokenizer, chat template applied. */
  readonly tokenizer: TokenizerLike;
  /** Generation defaults. */
  readonly generationConfig?: GenerationConfig;
}

/** Checks a limit option: a positive integer (or Infinity where allowed). */
function limit(name: string, value: number | undefined, fallback: number, infinite = false): number {
  const n = value ?? fallback;
  const ok = (infinite && n === Infinity) || (Number.isSafeInteger(n) && n > 0);
  if (!ok) throw new RangeError(`${name} must be a positive integer, got ${String(value)}`);
  return n;
}

/**
 * Applies defaults: the tokenizer and generation defaults the base already
 * read are reused, not loaded again. A `RangeError` names a limit that is
 * not a positive integer; a base without `tokenizer.json` (and no
 * `tokenizer` given) is a `GenerationError`.
 *
 * @example
 * ```ts
 * import { resolvePoolOptions } from "./pool_options.ts";
 * import { loadBaseModel } from "../model/base_model.ts";
 * const base = await loadBaseModel("examples/demo/byte-llama");
 * const options = resolvePoolOptions(base, { maxAdapters: 2, chatTemplate: "{{ messages[0].content }}" });
 * ```
 */
export function resolvePoolOptions(base: BaseModel, options: AdapterPoolOptions): ResolvedPoolOptions {
  let tokenizer = options.tokenizer ?? base.text.tokenizer;
  if (!tokenizer) {
    throw new GenerationError("the base has no tokenizer.json and no tokenizer was given, so it cannot serve text", {
      file: "tokenizer.json",
    });
  }
  if (options.chatTemplate !== undefined) tokenizer = withChatTemplate(tokenizer, options.chatTemplate);
  return {
    baseName: options.baseName ?? "base",
    maxAdapters: limit("maxAdapters", options.maxAdapters, 8),
    maxBytes: limit("maxBytes", options.maxBytes, Infinity, true),
    maxActive: limit("maxActive", options.maxActive, 64),
    maxBatch: limit("maxBatch", options.maxBatch, 8),
    hub: options.hub ?? {},
    onWarning: options.onWarning ?? (() => {}),
    tokenizer,
    generationConfig: options.generationConfig ?? base.text.generationConfig,
  };
}
