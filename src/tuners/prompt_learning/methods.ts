/**
 * The prompt-learning methods by `peft_type`.
 * @module
 */
import { prefixTuning } from "../prefix_tuning/mod.ts";
import { pTuning } from "../p_tuning/mod.ts";
import { promptTuning } from "../prompt_tuning/mod.ts";
import type { PromptLearningType, PromptMethod } from "./config.ts";

/**
 * Each prompt-learning method by its `peft_type`.
 *
 * @example
 * ```ts
 * import { PROMPT_METHODS } from "./methods.ts";
 * Object.keys(PROMPT_METHODS); // ["PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING"]
 * ```
 */
export const PROMPT_METHODS: Readonly<Record<PromptLearningType, PromptMethod>> = Object.freeze({
  PROMPT_TUNING: promptTuning,
  P_TUNING: pTuning,
  PREFIX_TUNING: prefixTuning,
});
