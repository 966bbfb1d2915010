/**
 * The cross-field rules of PEFT's `LoraConfig.__post_init__` (v0.19), the
 * value checks PEFT makes when it builds LoRA layers, and the list of PEFT
 * features peft-edge refuses rather than silently ignores.
 *
 * @module
 */
import { UnsupportedError } from "../errors.ts";
import type { LoraConfig } from "./lora_config.ts";
import { fullmatchRegex, layerIndexRegex, modulesToSaveRegex, patternKeyRegex } from "./peft_regex.ts";
import { describeValue, failField, type FieldSource, isPlainObject } from "./read_fields.ts";

/**
 * LoraConfig fields that are read and checked but not exposed on
 * {@linkcode LoraConfig} (training-only, or rejected when set).
 *
 * @example
 * ```ts
 * import type { UnmodelledFields } from "./lora_rules.ts";
 * const none: Partial<UnmodelledFields> = { megatronConfig: null, useQalora: false };
 * ```
 */
export interface UnmodelledFields {
  readonly megatronConfig: Record<string, unknown> | null;
  readonly loftqConfig: Record<string, unknown> | null;
  readonly evaConfig: Record<string, unknown> | null;
  readonly cordaConfig: Record<string, unknown> | null;
  readonly loraGaConfig: Record<string, unknown> | null;
  readonly useBdlora: Record<string, unknown> | null;
  readonly arrowConfig: Record<string, unknown> | null;
  readonly useQalora: boolean;
  readonly qaloraGroupSize: number;
  readonly ensureWeightTying: boolean;
  readonly targetParameters: unknown;
  readonly aloraInvocationTokens: unknown;
  readonly layerReplication: unknown;
  readonly trainableTokenIndices: unknown;
}

/** Python truthiness of a JSON value (`None`, `False`, `0`, `""`, `[]`, `{}` are false). */
function truthy(value: unknown): boolean {
  if (value === null || value === undefined || value === false || value === 0 || value === "") return false;
  if (Array.isArray(value)) return value.length > 0;
  if (isPlainObject(value)) return Object.keys(value).length > 0;
  return true;
}

const isInt = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v);
const isIntList = (v: unknown): boolean => Array.isArray(v) && v.every(isInt);

/** Shape checks for fields that are rejected when set, so a typo is not reported as "unsupported". */
function checkShapes(src: FieldSource, extra: UnmodelledFields): string[] | null {
  const { targetParameters: tp, aloraInvocationTokens, layerReplication, trainableTokenIndices } = extra;
  // LoraConfig.__post_init__: `target_parameters` must be a list of strings or None (TypeError).
  if (typeof tp === "string") {
    failField(src, "target_parameters", "must be a list of strings or null, not a string (PEFT raises TypeError)");
  }
  if (tp !== null && !(Array.isArray(tp) && tp.every((x) => typeof x === "string"))) {
    failField(src, "target_parameters", `must be a list of strings or null, got ${describeValue(tp)}`);
  }
  if (aloraInvocationTokens !== null && !isIntList(aloraInvocationTokens)) {
    failField(
      src,
      "alora_invocation_tokens",
      `must be a list of token ids or null, got ${describeValue(aloraInvocationTokens)}`,
    );
  }
  if (
    layerReplication !== null &&
    !(Array.isArray(layerReplication) && layerReplication.every((p) => isIntList(p) && (p as unknown[]).length === 2))
  ) {
    failField(
      src,
      "layer_replication",
      `must be a list of [start, end] pairs or null, got ${describeValue(layerReplication)}`,
    );
  }
  if (
    trainableTokenIndices !== null && !isIntList(trainableTokenIndices) &&
    !(isPlainObject(trainableTokenIndices) && Object.values(trainableTokenIndices).every(isIntList))
  ) {
    failField(
      src,
      "trainable_token_indices",
      `must be a list of token ids, an object of such lists, or null, got ${describeValue(trainableTokenIndices)}`,
    );
  }
  return tp as string[] | null;
}

/** PEFT's own ValueErrors: `PeftConfig.__post_init__`, `LoraConfig.__post_init__`, `LoraLayer.update_layer`. */
function checkPeftRules(config: LoraConfig, src: FieldSource, extra: UnmodelledFields): void {
  const regexTargets = typeof config.targetModules === "string";
  if (regexTargets && config.layersToTransform !== null) {
    failField(src, "layers_to_transform", "cannot be used when target_modules is a str (a regex)");
  }
  if (regexTargets && config.layersPattern !== null) {
    failField(src, "layers_pattern", "cannot be used when target_modules is a str (a regex)");
  }
  // Python truthiness: layers_to_transform=0 or [] counts as "not specified" here.
  if (truthy(config.layersPattern) && !truthy(config.layersToTransform)) {
    failField(src, "layers_pattern", "is specified, so layers_to_transform must also be specified");
  }
  if (config.useDora && truthy(extra.megatronConfig)) {
    failField(src, "use_dora", "DoRA does not support megatron_core (megatron_config is set); use_dora must be false");
  }
  if (config.initLoraWeights === "loftq" && !truthy(extra.loftqConfig)) {
    failField(src, "loftq_config", "must be specified when init_lora_weights is 'loftq'");
  }
  if (config.loraBias && typeof config.initLoraWeights !== "boolean") {
    failField(
      src,
      "lora_bias",
      `true is only supported with init_lora_weights true or false, got init_lora_weights=${
        describeValue(config.initLoraWeights)
      }`,
    );
  }
  if (config.loraBias && config.useDora) {
    failField(src, "lora_bias", "true is not supported for DoRA; use_dora must be false");
  }
  // LoraLayer.update_layer builds nn.Dropout(p) only for p > 0, which rejects p > 1.
  if (config.loraDropout > 1) {
    failField(src, "lora_dropout", `must be a probability between 0 and 1, got ${config.loraDropout}`);
  }
}

/** Each regex PEFT would build from this config compiles (PEFT would fail at injection time). */
function checkRegexes(config: LoraConfig, src: FieldSource): void {
  const at = (key: string) => ({ file: src.file, key });
  if (typeof config.targetModules === "string") fullmatchRegex(config.targetModules, at("target_modules"));
  if (typeof config.excludeModules === "string") fullmatchRegex(config.excludeModules, at("exclude_modules"));
  const layersPatterns = typeof config.layersPattern === "string" ? [config.layersPattern] : config.layersPattern ?? [];
  for (const p of layersPatterns) layerIndexRegex(p, at("layers_pattern"));
  for (const m of config.modulesToSave ?? []) modulesToSaveRegex(m, at("modules_to_save"));
  for (const k of config.rankPattern.keys()) patternKeyRegex(k, at("rank_pattern"));
  for (const k of config.alphaPattern.keys()) patternKeyRegex(k, at("alpha_pattern"));
}

/** Features PEFT has that change what the adapter computes and that peft-edge does not implement. */
function checkSupported(
  config: LoraConfig,
  src: FieldSource,
  extra: UnmodelledFields,
  targetParameters: string[] | null,
): void {
  const refuse = (key: string, message: string): never => {
    throw new UnsupportedError(message, { file: src.file, key });
  };
  const init = config.initLoraWeights;
  if (typeof init === "string" && /^(olora|pissa|corda|loftq|lora_ga)/.test(init)) {
    refuse(
      "init_lora_weights",
      `"${init}" initialization rewrites the base model's weights, which peft-edge does not reproduce; ` +
        "convert the adapter to plain LoRA first (PEFT save_pretrained(..., path_initial_model_for_weight_conversion=...))",
    );
  }
  if (truthy(extra.megatronConfig)) refuse("megatron_config", "Megatron parallel LoRA layers are not supported");
  if (extra.layerReplication !== null) {
    refuse("layer_replication", "layer replication (LoRA-expanded models) is not supported");
  }
  if (extra.trainableTokenIndices !== null) {
    refuse("trainable_token_indices", "trainable tokens (per-token embedding deltas) are not supported");
  }
  if (targetParameters !== null && targetParameters.length > 0) {
    refuse("target_parameters", "LoRA on nn.Parameter targets (target_parameters, e.g. MoE experts) is not supported");
  }
  if (extra.aloraInvocationTokens !== null) {
    refuse(
      "alora_invocation_tokens",
      "activated LoRA (aLoRA), which applies the adapter only after an invocation sequence, is not supported",
    );
  }
  if (extra.useQalora) refuse("use_qalora", "QALoRA (quantization-aware pooled LoRA) is not supported");
  if (extra.useBdlora !== null) refuse("use_bdlora", "block-diagonal LoRA (use_bdlora) is not supported");
  if (extra.arrowConfig !== null) refuse("arrow_config", "Arrow routing between LoRA experts is not supported");
  if (extra.ensureWeightTying) {
    refuse("ensure_weight_tying", "tying adapter weights across tied layers is not supported");
  }
}

/** PEFT's warnings for sub-configs that the chosen `init_lora_weights` ignores. */
function warnIgnored(
  config: LoraConfig,
  src: FieldSource,
  extra: UnmodelledFields,
  warn: (message: string) => void,
): void {
  const where = src.file ?? "adapter config";
  const init = config.initLoraWeights;
  if (init !== "loftq" && truthy(extra.loftqConfig)) {
    warn(`${where}: loftq_config specified but will be ignored when init_lora_weights is not 'loftq'`);
  }
  if (init !== "eva" && extra.evaConfig !== null) {
    warn(`${where}: eva_config specified but will be ignored when init_lora_weights is not 'eva'`);
  }
  if (init !== "corda" && extra.cordaConfig !== null) {
    warn(`${where}: corda_config specified but will be ignored when init_lora_weights is not 'corda'`);
  }
}

/**
 * Apply PEFT's config checks, then peft-edge's feature checks, then warn
 * about ignored sub-configs. Returns the validated `target_parameters`.
 *
 * @throws {AdapterConfigError} for anything PEFT rejects (keyed by field).
 * @throws {UnsupportedError} for PEFT features peft-edge does not implement.
 *
 * @example
 * ```ts
 * import { parseLoraConfig } from "./lora_config.ts";
 * // parseLoraConfig calls checkLoraRules; this raises AdapterConfigError (key "layers_to_transform"):
 * try { parseLoraConfig({ target_modules: ".*q_proj", layers_to_transform: [0] }); } catch (e) { console.log((e as Error).message); }
 * ```
 */
export function checkLoraRules(
  config: LoraConfig,
  src: FieldSource,
  extra: UnmodelledFields,
  warn: (message: string) => void,
): string[] | null {
  const targetParameters = checkShapes(src, extra);
  checkPeftRules(config, src, extra);
  checkRegexes(config, src);
  checkSupported(config, src, extra, targetParameters);
  warnIgnored(config, src, extra, warn);
  return targetParameters;
}
