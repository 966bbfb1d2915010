/**
 * P-tuning (PEFT's `tuners/p_tuning`): virtual token embeddings made by a
 * prompt encoder (an MLP or LSTM over learned embeddings). PEFT saves the
 * encoder's output (`get_prompt_embedding_to_save`) unless the model was in
 * inference mode, where it saves the raw embedding; either way
 * `from_pretrained` loads the saved tensor into the embedding and, in
 * inference mode, uses it as the prompt without running an encoder. So the
 * saved `prompt_embeddings` are the prompt, as for prompt tuning, and the
 * encoder fields (which PEFT does not check in inference mode) only need
 * their types.
 * @module
 */
import { AdapterConfigError } from "../../errors.ts";
import { field } from "../config.ts";
import { parsePromptLearningConfig, type PromptMethod } from "../prompt_learning/config.ts";

/**
 * The P-tuning method (`PromptEncoderConfig`).
 *
 * @example
 * ```ts
 * import { pTuning } from "./mod.ts";
 * const c = pTuning.parse({
 *   peft_type: "P_TUNING", task_type: "CAUSAL_LM", num_virtual_tokens: 4, token_dim: 128, encoder_hidden_size: 32,
 * }, { warn: () => {} });
 * c.numVirtualTokens; // 4
 * ```
 */
export const pTuning: PromptMethod = {
  peftType: "P_TUNING",
  className: "PromptEncoderConfig",
  fields: ["encoder_reparameterization_type", "encoder_hidden_size", "encoder_num_layers", "encoder_dropout"],
  parse(values, { file, warn }) {
    const config = parsePromptLearningConfig("P_TUNING", values, this.fields, {
      file,
      warn,
      className: this.className,
    });
    field(values, "encoder_reparameterization_type", "MLP");
    field(values, "encoder_num_layers", 2);
    field(values, "encoder_dropout", 0);
    const hidden = values.encoder_hidden_size;
    if (hidden !== undefined && hidden !== null && !Number.isInteger(hidden)) {
      throw new AdapterConfigError(`encoder_hidden_size must be an integer, got ${JSON.stringify(hidden)}`, {
        file,
        key: "encoder_hidden_size",
      });
    }
    return config;
  },
};
