/**
 * PEFT LoRA configuration: parsing `adapter_config.json` the way PEFT's
 * `LoraConfig` does, deciding which modules an adapter targets
 * (`check_target_module_exists`), and the per-module rank, alpha and scaling
 * (`get_pattern_key`, `update_layer`).
 *
 * @example
 * ```ts
 * import { createTargetMatcher, parseLoraConfig, scalingFor } from "./mod.ts";
 * const config = parseLoraConfig('{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}');
 * const targets = ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj"].filter(createTargetMatcher(config));
 * console.log(targets, scalingFor(config, targets[0])); // ["model.layers.0.self_attn.q_proj"] 2
 * ```
 * @module
 */
export {
  type LoraBias,
  type LoraConfig,
  parseLoraConfig,
  type ParseLoraConfigOptions,
  TASK_TYPES,
  type TaskType,
} from "./lora.ts";
export {
  createTargetMatcher,
  expandAllLinear,
  type ExpandAllLinearOptions,
  isAllLinear,
  isTargetModule,
} from "./targets.ts";
export { alphaFor, getPatternKey, rankFor, scalingFor } from "./patterns.ts";
export {
  compilePythonRegex,
  type PythonMatchMode,
  type PythonRegex,
  type TranslatedRegex,
  translatePythonRegex,
} from "./regex.ts";
