/**
 * Prompt tuning (PEFT's `tuners/prompt_tuning`): `num_virtual_tokens`
 * learned embeddings placed before the real tokens' embeddings. Loaded for
 * inference, PEFT uses the saved `prompt_embeddings` as they are (its init
 * fields only matter when training starts), so they are checked here the way
 * `PromptTuningConfig.__post_init__` checks them, and otherwise kept.
 * @module
 */
import { AdapterConfigError } from "../../errors.ts";
import { choice, parsePromptLearningConfig, type PromptMethod } from "../prompt_learning/config.ts";

const INITS = ["TEXT", "SAMPLE_VOCAB", "RANDOM"] as const;

/**
 * The prompt-tuning method.
 *
 * @example
 * ```ts
 * import { promptTuning } from "./mod.ts";
 * const c = promptTuning.parse({
 *   peft_type: "PROMPT_TUNING", task_type: "CAUSAL_LM", num_virtual_tokens: 4, token_dim: 128,
 * }, { warn: () => {} });
 * c.fields.prompt_tuning_init; // undefined: PEFT's default, "RANDOM"
 * ```
 */
export const promptTuning: PromptMethod = {
  peftType: "PROMPT_TUNING",
  className: "PromptTuningConfig",
  fields: ["prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_name_or_path", "tokenizer_kwargs"],
  parse(values, { file, warn }) {
    const config = parsePromptLearningConfig("PROMPT_TUNING", values, this.fields, {
      file,
      warn,
      className: this.className,
    });
    const init = choice(values, "prompt_tuning_init", INITS, "RANDOM", file);
    const text = values.prompt_tuning_init_text ?? null;
    const tokenizer = values.tokenizer_name_or_path ?? null;
    const kwargs = values.tokenizer_kwargs ?? null;
    // PromptTuningConfig.__post_init__, with PEFT's words.
    if (init === "TEXT" && !tokenizer) {
      throw new AdapterConfigError(
        `When prompt_tuning_init='TEXT', tokenizer_name_or_path can't be ${tokenizer === null ? "None" : tokenizer}.`,
        { file, key: "tokenizer_name_or_path" },
      );
    }
    if (init === "TEXT" && text === null) {
      throw new AdapterConfigError("When prompt_tuning_init='TEXT', prompt_tuning_init_text can't be None.", {
        file,
        key: "prompt_tuning_init_text",
      });
    }
    const hasKwargs = kwargs !== null && (typeof kwargs !== "object" || Object.keys(kwargs).length > 0);
    if (hasKwargs && init !== "TEXT") {
      throw new AdapterConfigError("tokenizer_kwargs only valid when using prompt_tuning_init='TEXT'.", {
        file,
        key: "tokenizer_kwargs",
      });
    }
    return config;
  },
};
