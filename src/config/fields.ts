/**
 * The field names PEFT writes to a LoRA `adapter_config.json`.
 *
 * The list is `PeftConfigMixin` + `PeftConfig` + `LoraConfig` dataclass fields
 * as of PEFT v0.19 (`peft/config.py`, `peft/tuners/lora/config.py`). PEFT's
 * `check_kwargs` warns about, and ignores, any other key; so does
 * `parseLoraConfig`.
 *
 * @module
 */

/**
 * Every snake_case key a PEFT LoRA config may contain.
 *
 * @example
 * ```ts
 * import { LORA_CONFIG_FIELDS } from "./fields.ts";
 * LORA_CONFIG_FIELDS.has("lora_alpha"); // true
 * LORA_CONFIG_FIELDS.has("loraAlpha"); // false
 * ```
 */
export const LORA_CONFIG_FIELDS: ReadonlySet<string> = new Set([
  // PeftConfigMixin / PeftConfig
  "task_type",
  "peft_type",
  "auto_mapping",
  "peft_version",
  "base_model_name_or_path",
  "revision",
  "inference_mode",
  // LoraConfig
  "r",
  "target_modules",
  "exclude_modules",
  "lora_alpha",
  "lora_dropout",
  "fan_in_fan_out",
  "bias",
  "use_rslora",
  "modules_to_save",
  "init_lora_weights",
  "layers_to_transform",
  "layers_pattern",
  "rank_pattern",
  "alpha_pattern",
  "megatron_config",
  "megatron_core",
  "trainable_token_indices",
  "loftq_config",
  "eva_config",
  "corda_config",
  "lora_ga_config",
  "use_dora",
  "alora_invocation_tokens",
  "use_qalora",
  "qalora_group_size",
  "layer_replication",
  "runtime_config",
  "lora_bias",
  "target_parameters",
  "use_bdlora",
  "arrow_config",
  "ensure_weight_tying",
]);

/**
 * The snake_case PEFT key for a camelCase field name (`loraAlpha` ->
 * `lora_alpha`); snake_case input is returned unchanged.
 *
 * @example
 * ```ts
 * import { toSnakeCase } from "./fields.ts";
 * toSnakeCase("baseModelNameOrPath"); // "base_model_name_or_path"
 * toSnakeCase("use_rslora"); // "use_rslora"
 * ```
 */
export function toSnakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
