/**
 * What a run with a prompt-learning adapter feeds the model, from the
 * caller's feeds (real tokens only), as PEFT's `PeftModelForCausalLM` does:
 *
 * - prompt tuning / P-tuning: on a run with an empty (or no) past, the
 *   virtual token embeddings go before the real tokens' (placeholder ids
 *   stand for them in `input_ids`; the prompted graph swaps their
 *   embeddings), so logits cover `num_virtual_tokens + length` positions,
 *   as PEFT's forward returns them. With a non-empty past (a decode step)
 *   the prompt is already in the cache, as in PEFT's `generate`.
 *   `position_ids` are those the model computes when PEFT drops them:
 *   `past + 0, 1, ...` over the longer sequence.
 * - prefix tuning: on a run with an empty past, the prefix becomes the past
 *   of every layer; `position_ids` are offset by `num_virtual_tokens`, as
 *   PEFT offsets them. Logits cover the real tokens only.
 *
 * In both, `attention_mask` gets `num_virtual_tokens` ones in front. For
 * `task_type` `SEQ_CLS` (`PeftModelForSequenceClassification`) prompt and
 * P-tuning also put token type 0 before the real tokens' `token_type_ids`,
 * and the logits are the classifier's, as the base gives them (an encoder
 * pools the first position: the first virtual token; a decoder classifier
 * the last, and a row ending in the pad id, which its export would skip, is refused).
 * @module
 */
import { Tensor } from "../deps/ort.ts";
import { AdapterConfigError, UnsupportedError } from "../errors.ts";
import { PROMPT_INPUT } from "../onnx/prompt_surgery.ts";
import type { PromptLearningConfig } from "../tuners/prompt_learning/config.ts";
import type { Feeds } from "./base_model.ts";

/** A loaded prompt, ready to feed: the virtual embeddings `[tokens, hidden]`, or a prefix per layer. */
export interface PromptValues {
  readonly config: PromptLearningConfig;
  /** Prompt/P-tuning: `[tokens, hidden]` row-major. */
  readonly embeddings?: Float32Array;
  /** Prefix tuning: per layer, key and value `[heads, tokens, head_dim]`. */
  readonly prefix?: readonly (readonly [Float32Array, Float32Array])[];
  /**
   * Set (to the pad id) where the export pools the last token of `input_ids` that is not this id (a decoder
   * classifier) while PEFT pools the last position: a row ending in it is refused.
   */
  readonly lastTokenNotPad?: number;
}

const PAST = "past_key_values.";

function pastLength(feeds: Feeds): number {
  const past = Object.entries(feeds).find(([name]) => name.startsWith(PAST));
  return past ? past[1].dims[2] ?? 0 : 0;
}

/** `rows` copies of `values` as a `[rows, ...dims]` float32 tensor. */
function repeated(values: Float32Array, rows: number, dims: readonly number[]): Tensor {
  const out = new Float32Array(values.length * rows);
  for (let r = 0; r < rows; r++) out.set(values, r * values.length);
  return new Tensor("float32", out, [rows, ...dims]);
}

/** An integer `[rows, cols]` tensor of the same type as `like` (int64 or int32). */
function intMatrix(like: Tensor, rows: number, cols: number, at: (r: number, c: number) => number): Tensor {
  if (like.type === "int64") {
    const data = new BigInt64Array(rows * cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) data[r * cols + c] = BigInt(at(r, c));
    return new Tensor("int64", data, [rows, cols]);
  }
  if (like.type === "int32") {
    const data = new Int32Array(rows * cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) data[r * cols + c] = at(r, c);
    return new Tensor("int32", data, [rows, cols]);
  }
  throw new UnsupportedError(`prompt learning needs int64 or int32 ids, masks and positions, got ${like.type}`);
}

function cpuInts(t: Tensor, name: string): ArrayLike<number | bigint> {
  if (t.location !== "cpu") throw new UnsupportedError(`prompt learning reads ${name} on the CPU`, { key: name });
  return t.data as ArrayLike<number | bigint>;
}

/** `virtual` ones before each row of the mask. */
function extendedMask(mask: Tensor, virtual: number): Tensor {
  const [rows, cols] = mask.dims;
  const data = cpuInts(mask, "attention_mask");
  return intMatrix(mask, rows, cols + virtual, (r, c) => c < virtual ? 1 : Number(data[r * cols + c - virtual]));
}

/**
 * The feeds a prompt-learning adapter's session takes for the caller's feeds.
 *
 * @example
 * ```ts
 * import { promptFeeds, type PromptValues } from "./prompt_feeds.ts";
 * import type { Feeds } from "./base_model.ts";
 * declare const prompt: PromptValues, feeds: Feeds;
 * const fed = promptFeeds(feeds, prompt);
 * ```
 */
export function promptFeeds(feeds: Feeds, prompt: PromptValues): Feeds {
  const ids = feeds.input_ids;
  if (!ids || ids.dims.length !== 2) {
    throw new AdapterConfigError("a prompt-learning adapter needs input_ids [batch, length]", { key: "input_ids" });
  }
  const [rows, length] = ids.dims;
  const virtual = prompt.config.numVirtualTokens;
  const past = pastLength(feeds);
  const inject = past === 0;
  const out: Feeds = { ...feeds };
  if (feeds.attention_mask) out.attention_mask = extendedMask(feeds.attention_mask, virtual);
  if (prompt.prefix) {
    if (inject) {
      const heads = prompt.config.numAttentionHeads!;
      const dims = [heads, virtual, prompt.config.tokenDim / heads];
      prompt.prefix.forEach(([key, value], i) => {
        for (const [kind, values] of [["key", key], ["value", value]] as const) {
          const name = `${PAST}${i}.${kind}`;
          const fed = feeds[name];
          if (fed && fed.type !== "float32") {
            throw new UnsupportedError(`prefix tuning feeds a float32 past; ${name} is ${fed.type}`, { key: name });
          }
          out[name] = repeated(values, rows, dims);
        }
      });
      if (feeds.use_cache_branch) out.use_cache_branch = new Tensor("bool", new Uint8Array([1]), [1]);
    }
    const positions = feeds.position_ids;
    if (positions) {
      const data = cpuInts(positions, "position_ids");
      const [r, c] = positions.dims;
      out.position_ids = intMatrix(positions, r, c, (i, j) => Number(data[i * c + j]) + virtual);
    }
    return out;
  }
  const added = inject ? virtual : 0;
  if (prompt.lastTokenNotPad !== undefined && length > 0) {
    const data = cpuInts(ids, "input_ids");
    const row = Array.from({ length: rows }, (_, r) => r).find((r) =>
      Number(data[r * length + length - 1]) === prompt.lastTokenNotPad
    );
    if (row !== undefined) {
      // GenericForSequenceClassification pools position -1 for inputs_embeds; the export, the last non-pad id.
      throw new UnsupportedError(
        `row ${row} ends in the pad id ${prompt.lastTokenNotPad}: PEFT's SEQ_CLS prompt pools the last position ` +
          "(it feeds inputs_embeds), this classifier export the last token that is not padding; left-pad the batch",
        { key: "input_ids" },
      );
    }
  }
  if (added > 0) {
    const data = cpuInts(ids, "input_ids");
    // Placeholder id 0 at the virtual positions: the prompted graph replaces their embeddings.
    out.input_ids = intMatrix(
      ids,
      rows,
      length + added,
      (r, c) => c < added ? 0 : Number(data[r * length + c - added]),
    );
  }
  const types = feeds.token_type_ids;
  if (types && added > 0 && prompt.config.taskType === "SEQ_CLS") {
    // PeftModelForSequenceClassification puts token type 0 before the real tokens' types.
    const data = cpuInts(types, "token_type_ids");
    const [r, c] = types.dims;
    out.token_type_ids = intMatrix(types, r, c + added, (i, j) => j < added ? 0 : Number(data[i * c + j - added]));
  }
  const hidden = prompt.config.tokenDim;
  out[PROMPT_INPUT] = inject
    ? repeated(prompt.embeddings!, rows, [virtual, hidden])
    : new Tensor("float32", new Float32Array(0), [rows, 0, hidden]);
  if (feeds.position_ids) {
    out.position_ids = intMatrix(feeds.position_ids, rows, length + added, (_, c) => past + c);
  }
  return out;
}
