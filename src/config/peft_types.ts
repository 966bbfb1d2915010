/**
 * The `peft_type`s peft-edge loads: the one list that the tuner table
 * (`TUNER_METHODS`, typed by it), the prompt-learning check and the config
 * parser's messages all read, so a method added in one place shows in all.
 * It imports nothing, so every layer can read it without an import cycle.
 * @module
 */

/**
 * The methods besides LoRA and prompt learning (merged or dynamic per method).
 *
 * @example
 * ```ts
 * import { TUNER_TYPES } from "./peft_types.ts";
 * TUNER_TYPES.includes("IA3"); // true
 * ```
 */
export const TUNER_TYPES = ["IA3", "LOHA", "LOKR", "ADALORA", "VERA", "OFT", "BOFT", "FOURIERFT", "LN_TUNING"] as const;

/**
 * The prompt-learning methods (virtual tokens or a prefix cache).
 *
 * @example
 * ```ts
 * import { PROMPT_LEARNING_TYPES } from "./peft_types.ts";
 * PROMPT_LEARNING_TYPES.length; // 3
 * ```
 */
export const PROMPT_LEARNING_TYPES = ["PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING"] as const;

/**
 * Every supported `peft_type`, LoRA first.
 *
 * @example
 * ```ts
 * import { SUPPORTED_PEFT_TYPES } from "./peft_types.ts";
 * console.log(SUPPORTED_PEFT_TYPES.join(", ")); // "LORA, IA3, ..., PREFIX_TUNING"
 * ```
 */
export const SUPPORTED_PEFT_TYPES: readonly string[] = Object.freeze([
  "LORA",
  ...TUNER_TYPES,
  ...PROMPT_LEARNING_TYPES,
]);
