/**
 * Prefix tuning (PEFT's `tuners/prefix_tuning`): learned key/value vectors
 * of `num_virtual_tokens` positions in every layer, given to the model as
 * its past. PEFT saves the prefix encoder's output (`[num_virtual_tokens,
 * num_layers * 2 * token_dim]`, after the projection MLP when
 * `prefix_projection`), and in inference mode `get_prompt` uses that tensor
 * as it is. `token_dim` and `num_attention_heads` are those of the key/value
 * heads (PEFT's `_prepare_prompt_learning_config` scales them, when saving
 * and again when loading: `preparedForModel`).
 * @module
 */
import { AdapterConfigError } from "../../errors.ts";
import { field } from "../config.ts";
import {
  choice,
  parsePromptLearningConfig,
  type PromptLearningConfig,
  type PromptMethod,
} from "../prompt_learning/config.ts";

/**
 * The prefix-tuning method.
 *
 * @example
 * ```ts
 * import { prefixTuning } from "./mod.ts";
 * const c = prefixTuning.parse({
 *   peft_type: "PREFIX_TUNING", task_type: "CAUSAL_LM", num_virtual_tokens: 3, token_dim: 64,
 *   num_layers: 4, num_attention_heads: 2,
 * }, { warn: () => {} });
 * c.numLayers; // 4
 * ```
 */
export const prefixTuning: PromptMethod = {
  peftType: "PREFIX_TUNING",
  className: "PrefixTuningConfig",
  fields: ["init_weights", "encoder_hidden_size", "prefix_projection"],
  parse(values, { file, warn }) {
    const config = parsePromptLearningConfig("PREFIX_TUNING", values, this.fields, {
      file,
      warn,
      className: this.className,
    });
    choice(values, "init_weights", ["zero"], null, file);
    field(values, "prefix_projection", false);
    for (const key of ["num_layers", "num_attention_heads"] as const) {
      if (config[key === "num_layers" ? "numLayers" : "numAttentionHeads"] === null) {
        throw new AdapterConfigError(`PREFIX_TUNING needs ${key} (PEFT saves it)`, { file, key });
      }
    }
    if (config.tokenDim % config.numAttentionHeads! !== 0) {
      throw new AdapterConfigError(
        `token_dim ${config.tokenDim} is not a multiple of num_attention_heads ${config.numAttentionHeads}`,
        { file, key: "token_dim" },
      );
    }
    return config;
  },
};

/**
 * PEFT's `get_prompt` for prefix tuning, batch 1: the saved
 * `[num_virtual_tokens, num_layers * 2 * token_dim]` tensor viewed as
 * `[tokens, layers * 2, heads, head_dim]` and permuted to per-layer key and
 * value tensors `[heads, tokens, head_dim]` (layer `i`: key `2i`, value `2i + 1`).
 *
 * @example
 * ```ts
 * import { prefixPast } from "./mod.ts";
 * import type { PromptLearningConfig } from "../prompt_learning/config.ts";
 * declare const config: PromptLearningConfig, saved: Float32Array;
 * const [key0, value0] = prefixPast(config, saved)[0];
 * ```
 */
export function prefixPast(config: PromptLearningConfig, saved: Float32Array): [Float32Array, Float32Array][] {
  const tokens = config.numVirtualTokens;
  const layers = config.numLayers!;
  const heads = config.numAttentionHeads!;
  const headDim = config.tokenDim / heads;
  const row = layers * 2 * config.tokenDim;
  const slice = (s: number) => {
    const out = new Float32Array(heads * tokens * headDim);
    for (let h = 0; h < heads; h++) {
      for (let t = 0; t < tokens; t++) {
        const from = t * row + (s * heads + h) * headDim;
        out.set(saved.subarray(from, from + headDim), (h * tokens + t) * headDim);
      }
    }
    return out;
  };
  return Array.from({ length: layers }, (_, i) => [slice(2 * i), slice(2 * i + 1)]);
}
