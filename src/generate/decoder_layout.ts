/**
 * Reading an Optimum-style decoder's interface: which KV-cache inputs feed
 * from which outputs, which optional inputs it has (`attention_mask`,
 * `position_ids`, the merged decoder's `use_cache_branch`), the shape of the
 * empty cache and the context length (from `config.json`).
 * @module
 */
import { GenerationError } from "../errors.ts";
import type { CausalLm } from "./causal_lm.ts";

/** One cache slot: the input it is fed to and the output it comes back from. */
export interface CacheSlot {
  /** `past_key_values.0.key` */
  readonly input: string;
  /** `present.0.key` */
  readonly output: string;
}

/** What the generation loop needs to know about a decoder's inputs and outputs. */
export interface DecoderLayout {
  /** KV-cache inputs and their outputs; empty for a model without a cache (recomputed each step). */
  readonly cache: readonly CacheSlot[];
  /** Dims of an empty cache tensor: `[1, kvHeads, 0, headDim]`. */
  readonly emptyPastDims: readonly number[];
  /** Whether the model takes `attention_mask`. */
  readonly attentionMask: boolean;
  /** Whether the model takes `position_ids`. */
  readonly positionIds: boolean;
  /** Whether the model is a merged decoder with a `use_cache_branch` input. */
  readonly useCacheBranch: boolean;
  /** Maximum sequence length (`max_position_embeddings`, `n_positions`, ...), when the config says. */
  readonly contextLength?: number;
  /** `vocab_size`, when the config says. */
  readonly vocabSize?: number;
}

const PAST_PREFIX = "past_key_values";
const PRESENT_PREFIX = "present";
const KNOWN_INPUTS = new Set(["input_ids", "attention_mask", "position_ids", "use_cache_branch"]);

/** The first of several config keys that holds a positive integer. */
function configInt(config: Readonly<Record<string, unknown>>, keys: readonly string[]): number | undefined {
  for (const key of keys) {
    const value = config[key];
    if (Number.isInteger(value) && (value as number) > 0) return value as number;
  }
  return undefined;
}

/** `[1, kvHeads, 0, headDim]` from config.json (Llama-style keys, or GPT-2's n_head/n_embd). */
function emptyPastDims(config: Readonly<Record<string, unknown>>): number[] {
  const heads = configInt(config, ["num_attention_heads", "n_head", "num_heads"]);
  const kvHeads = configInt(config, ["num_key_value_heads", "num_kv_heads"]) ?? heads;
  const hidden = configInt(config, ["hidden_size", "n_embd", "d_model"]);
  const headDim = configInt(config, ["head_dim"]) ?? (hidden && heads ? hidden / heads : undefined);
  if (!kvHeads || !headDim || !Number.isInteger(headDim)) {
    throw new GenerationError(
      "cannot tell the KV-cache shape: needs num_key_value_heads or num_attention_heads (n_head), " +
        "and head_dim or hidden_size (n_embd)",
      { file: "config.json" },
    );
  }
  return [1, kvHeads, 0, headDim];
}

/**
 * Reads a model's decoder layout; throws {@linkcode GenerationError} when it
 * is not a decoder generation can drive.
 *
 * @example
 * ```ts
 * import { describeDecoder } from "./decoder_layout.ts";
 * import type { CausalLm } from "./causal_lm.ts";
 * declare const lm: CausalLm;
 * const layout = describeDecoder(lm);
 * console.log(layout.cache.length, layout.emptyPastDims, layout.contextLength);
 * ```
 */
export function describeDecoder(lm: CausalLm): DecoderLayout {
  if (!lm.inputNames.includes("input_ids")) {
    throw new GenerationError(`the model has no input_ids input (inputs: ${lm.inputNames.join(", ")})`);
  }
  if (!lm.outputNames.includes("logits")) {
    throw new GenerationError(`the model has no logits output (outputs: ${lm.outputNames.join(", ")})`);
  }
  const cache: CacheSlot[] = [];
  for (const input of lm.inputNames) {
    if (KNOWN_INPUTS.has(input)) continue;
    if (!input.startsWith(`${PAST_PREFIX}.`)) {
      throw new GenerationError(`the model has an input generation cannot fill: ${input}`, { key: input });
    }
    const output = PRESENT_PREFIX + input.slice(PAST_PREFIX.length);
    if (!lm.outputNames.includes(output)) {
      throw new GenerationError(`the cache input ${input} has no matching output ${output}`, { key: input });
    }
    cache.push({ input, output });
  }
  const config = lm.config;
  return {
    cache,
    emptyPastDims: cache.length > 0 ? emptyPastDims(config) : [],
    attentionMask: lm.inputNames.includes("attention_mask"),
    positionIds: lm.inputNames.includes("position_ids"),
    useCacheBranch: lm.inputNames.includes("use_cache_branch"),
    contextLength: configInt(config, [
      "max_position_embeddings",
      "n_positions",
      "n_ctx",
      "max_sequence_length",
      "seq_length",
    ]),
    vocabSize: configInt(config, ["vocab_size"]),
  };
}
