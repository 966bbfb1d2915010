/**
 * PEFT LoRA `adapter_config.json`, parsed and checked the way PEFT's
 * `LoraConfig` does (PEFT v0.19: `peft/config.py`, `peft/tuners/lora/config.py`):
 * the fields and their defaults, the cross-field rules of
 * `LoraConfig.__post_init__`, the value checks PEFT makes when it builds
 * LoRA layers, and the PEFT features peft-edge refuses rather than silently
 * ignores.
 *
 * @module
 */
import { AdapterConfigError, UnsupportedError } from "../errors.ts";
import { jsonObjectKeyOrder } from "../json/scan.ts";
import { describeValue, isPlainObject } from "../json/values.ts";
import * as read from "./fields.ts";
import { fullmatchRegex, layerIndexRegex, modulesToSaveRegex, patternKeyRegex } from "./regex.ts";
import { jsonSyntaxError } from "../json/syntax.ts";
import { SUPPORTED_PEFT_TYPES } from "./peft_types.ts";

/**
 * Every snake_case key a PEFT LoRA config may contain: `PeftConfigMixin` +
 * `PeftConfig` + `LoraConfig` dataclass fields as of PEFT v0.21 (`dataclasses.fields(LoraConfig)`). PEFT's
 * `check_kwargs` warns about, and ignores, any other key; so does
 * {@linkcode parseLoraConfig}.
 */
const LORA_CONFIG_FIELDS: ReadonlySet<string> = new Set([
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
  "velora_config",
  "monteclora_config",
  "kasa_config",
]);

/** The snake_case PEFT key for a camelCase field name (`loraAlpha` -> `lora_alpha`); snake_case is unchanged. */
function toSnakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/**
 * PEFT's `TaskType` values (`peft/utils/peft_types.py`).
 *
 * @example
 * ```ts
 * import { TASK_TYPES } from "./lora.ts";
 * TASK_TYPES.includes("CAUSAL_LM"); // true
 * ```
 */
export const TASK_TYPES = [
  "SEQ_CLS",
  "SEQ_2_SEQ_LM",
  "CAUSAL_LM",
  "TOKEN_CLS",
  "QUESTION_ANS",
  "FEATURE_EXTRACTION",
] as const;

/**
 * A PEFT task type.
 *
 * @example
 * ```ts
 * import type { TaskType } from "./lora.ts";
 * const t: TaskType = "CAUSAL_LM";
 * ```
 */
export type TaskType = typeof TASK_TYPES[number];

/**
 * Which biases were trained alongside the adapter (`LoraConfig.bias`).
 *
 * @example
 * ```ts
 * import type { LoraBias } from "./lora.ts";
 * const b: LoraBias = "none";
 * ```
 */
export type LoraBias = "none" | "all" | "lora_only";

/**
 * A parsed, validated PEFT LoRA config. Field names are PEFT's, in camelCase;
 * defaults are PEFT's. Features peft-edge does not implement are rejected at
 * parse time, so `layerReplication` is always `null`.
 *
 * @example
 * ```ts
 * import { parseLoraConfig } from "./lora.ts";
 * const c = parseLoraConfig({ peft_type: "LORA", r: 16, lora_alpha: 32, target_modules: ["q_proj", "v_proj"] });
 * console.log(c.r, c.loraAlpha, c.targetModules); // 16 32 ["q_proj", "v_proj"]
 * ```
 */
export interface LoraConfig {
  /** Always `"LORA"`. */
  readonly peftType: "LORA";
  /** `task_type`, or `null`. */
  readonly taskType: TaskType | null;
  /** `base_model_name_or_path`, or `null`. */
  readonly baseModelNameOrPath: string | null;
  /** `revision` of the base model, or `null`. */
  readonly revision: string | null;
  /** `inference_mode` (default `false`). */
  readonly inferenceMode: boolean;
  /** Default rank `r` (default 8). */
  readonly r: number;
  /** Default `lora_alpha` (default 8). */
  readonly loraAlpha: number;
  /** A Python regex (full match), a list of names/suffixes, or `null` (PEFT would infer it from the architecture). `"all-linear"` is special: see `isAllLinear`. */
  readonly targetModules: readonly string[] | string | null;
  /** Same forms as `targetModules`; matching modules are never adapted. */
  readonly excludeModules: readonly string[] | string | null;
  /** Layer indices to adapt, or `null` for all. */
  readonly layersToTransform: readonly number[] | number | null;
  /** Name(s) of the layer `ModuleList` (regex source) used to read the layer index, or `null`. */
  readonly layersPattern: readonly string[] | string | null;
  /** Per-module rank overrides, in file order (first match wins). */
  readonly rankPattern: ReadonlyMap<string, number>;
  /** Per-module alpha overrides, in file order (first match wins). */
  readonly alphaPattern: ReadonlyMap<string, number>;
  /** `use_rslora`: scaling is `alpha / sqrt(r)` instead of `alpha / r`. */
  readonly useRslora: boolean;
  /** `use_dora`: weight-decomposed LoRA (adapter has `lora_magnitude_vector`). */
  readonly useDora: boolean;
  /** `fan_in_fan_out`: the base weight is stored `[in, out]` (GPT-2 `Conv1D`). */
  readonly fanInFanOut: boolean;
  /** `bias`: which base biases were trained and saved with the adapter. */
  readonly bias: LoraBias;
  /** `lora_bias`: `lora_B` has a bias term. */
  readonly loraBias: boolean;
  /** `modules_to_save`: modules saved whole with the adapter (never LoRA-adapted), or `null`. */
  readonly modulesToSave: readonly string[] | null;
  /** `lora_dropout` (training only; default 0). */
  readonly loraDropout: number;
  /** `init_lora_weights` (default `true`); only values that leave the base weights untouched are accepted. */
  readonly initLoraWeights: boolean | string;
  /** `layer_replication`: always `null` (unsupported otherwise). */
  readonly layerReplication: null;
  /**
   * `trainable_token_indices`: token ids whose embedding rows the adapter
   * replaces (PEFT's TrainableTokens), as a list (the input embedding) or
   * per module name; `null` when unused.
   */
  readonly trainableTokenIndices: readonly number[] | Readonly<Record<string, readonly number[]>> | null;
  /**
   * `target_parameters`: names (or `.`-suffixes) of `nn.Parameter`s PEFT wraps with LoRA (`ParamWrapper`), or
   * `null`; which ones the export can take is decided when the adapter is read (`lora/param_targets.ts`).
   */
  readonly targetParameters: readonly string[] | null;
  /**
   * `alora_invocation_tokens`: activated LoRA (aLoRA) applies the adapter only
   * from the last occurrence of these ids in the input on; `null` for plain LoRA.
   */
  readonly aloraInvocationTokens: readonly number[] | null;
  /** The JSON object as read, before overrides. */
  readonly raw: Readonly<Record<string, unknown>>;
}

/**
 * Options of {@linkcode parseLoraConfig}.
 *
 * @example
 * ```ts
 * import type { ParseLoraConfigOptions } from "./lora.ts";
 * const warnings: string[] = [];
 * const options: ParseLoraConfigOptions = { file: "adapter_config.json", onWarning: (m) => warnings.push(m), overrides: { loraAlpha: 32 } };
 * ```
 */
export interface ParseLoraConfigOptions {
  /** File name for error and warning messages. */
  file?: string;
  /** Receives PEFT's warnings (unknown fields, ignored sub-configs). Default: `console.warn`. */
  onWarning?: (message: string) => void;
  /** Field values that replace the JSON's, keyed camelCase (`loraAlpha`) or snake_case. */
  overrides?: Record<string, unknown>;
  /**
   * Refuse a config without `peft_type`, as PEFT's `from_pretrained` does
   * (KeyError) for an `adapter_config.json`. Default `false`: a config
   * given in code is a LoRA config.
   */
  requirePeftType?: boolean;
}

const BASE_WEIGHT_INITS = ["olora", "pissa", "corda", "loftq", "lora_ga"];
const ADAPTER_ONLY_INITS = ["gaussian", "eva", "orthogonal"];

function readInit(src: read.FieldSource): boolean | string {
  const v = src.values["init_lora_weights"];
  if (v === undefined || v === null) return v === null ? false : true;
  if (typeof v === "boolean") return v;
  // LoraLayer.update_layer / reset_lora_parameters raise on any other string.
  if (
    typeof v === "string" && ([...ADAPTER_ONLY_INITS, ...BASE_WEIGHT_INITS].includes(v) || /^pissa_niter_\d+$/.test(v))
  ) {
    return v;
  }
  return read.failField(
    src,
    "init_lora_weights",
    `must be true, false, or one of ${
      [...ADAPTER_ONLY_INITS, ...BASE_WEIGHT_INITS, "pissa_niter_<n>"].join(", ")
    }; got ${describeValue(v)}`,
  );
}

function readOneOf<T extends string>(
  src: read.FieldSource,
  key: string,
  allowed: readonly T[],
  fallback: T | null,
): T | null {
  const v = src.values[key];
  if (v === undefined) return fallback;
  if (v === null && fallback === null) return null;
  if (typeof v !== "string" || !(allowed as readonly string[]).includes(v)) {
    read.failField(
      src,
      key,
      `must be one of ${allowed.join(", ")}${fallback === null ? " or null" : ""}; got ${describeValue(v)}`,
    );
  }
  return v as T;
}

function toObject(json: unknown, file: string | undefined): { object: Record<string, unknown>; text?: string } {
  if (typeof json === "string") {
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch (e) {
      throw new AdapterConfigError(`not valid JSON (${jsonSyntaxError(e)})`, { file, cause: e });
    }
    if (!isPlainObject(parsed)) throw new AdapterConfigError("must be a JSON object", { file });
    return { object: parsed, text: json };
  }
  if (!isPlainObject(json)) {
    throw new AdapterConfigError(`must be a JSON object, got ${describeValue(json)}`, { file });
  }
  return { object: json };
}

function applyOverrides(
  values: Record<string, unknown>,
  overrides: Record<string, unknown> | undefined,
  file: string | undefined,
): Set<string> {
  const overridden = new Set<string>();
  for (const [name, value] of Object.entries(overrides ?? {})) {
    const key = toSnakeCase(name);
    if (!LORA_CONFIG_FIELDS.has(key)) {
      throw new AdapterConfigError(`unknown override: no LoraConfig field is called ${JSON.stringify(name)}`, {
        file,
        key: name,
      });
    }
    values[key] = value;
    overridden.add(key);
  }
  return overridden;
}

/**
 * Parse a PEFT LoRA `adapter_config.json` (the parsed object, or its JSON
 * text: pass the text to keep `rank_pattern` / `alpha_pattern` in file order
 * even for integer-like keys).
 *
 * PEFT's defaults fill absent fields; unknown fields are ignored with one
 * warning naming them (as PEFT's `check_kwargs` does); every check of PEFT's
 * `LoraConfig.__post_init__` applies.
 *
 * @throws {UnsupportedError} if `peft_type` is not `"LORA"`, or the config
 *   uses a PEFT feature peft-edge does not implement.
 * @throws {AdapterConfigError} for a malformed field or a combination PEFT
 *   rejects; the error's `key` is the field at fault.
 *
 * @example
 * ```ts
 * import { parseLoraConfig } from "./lora.ts";
 * const text = '{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "rank_pattern": {"v_proj": 4}}';
 * const config = parseLoraConfig(text, { file: "adapter_config.json" });
 * console.log(config.r, config.loraAlpha, config.rankPattern.get("v_proj")); // 8 16 4
 * ```
 */
export function parseLoraConfig(json: unknown, options: ParseLoraConfigOptions = {}): LoraConfig {
  const { file } = options;
  const warn = options.onWarning ?? ((message: string) => console.warn(message));
  const { object, text } = toObject(json, file);
  const values: Record<string, unknown> = { ...object };
  const overridden = applyOverrides(values, options.overrides, file);
  const src: read.FieldSource = { values, file };

  // PEFT_TYPE_TO_CONFIG_MAPPING picks the config class from peft_type; only LORA is ours.
  const peftType = values["peft_type"];
  if (options.requirePeftType && (peftType === undefined || peftType === null)) {
    // PeftConfig.from_pretrained reads loaded_attributes["peft_type"]: PEFT raises KeyError('peft_type').
    throw new AdapterConfigError(
      "has no peft_type; PEFT cannot tell which adapter type this is (its from_pretrained raises KeyError)",
      { file, key: "peft_type" },
    );
  }
  if (peftType !== undefined && peftType !== null && peftType !== "LORA") {
    // A method peft-edge loads, handed to LoRA's parser: say where it loads rather than "not supported".
    const known = typeof peftType === "string" && SUPPORTED_PEFT_TYPES.includes(peftType);
    throw new UnsupportedError(
      known
        ? `peft_type ${describeValue(peftType)} is not a LoRA config; LoRA's parser reads peft_type LORA only ` +
          "(fromPretrained and loadAdapter load every supported type)"
        : `peft_type ${describeValue(peftType)} is not supported; peft-edge supports: ${
          SUPPORTED_PEFT_TYPES.join(", ")
        }`,
      { file, key: "peft_type" },
    );
  }

  const unknown = Object.keys(object).filter((k) => !LORA_CONFIG_FIELDS.has(k));
  if (unknown.length > 0) {
    warn(
      `${file ?? "adapter config"}: ignoring unknown LoraConfig fields ${unknown.join(", ")} ` +
        "(as PEFT does; the adapter may have been saved by a newer PEFT)",
    );
  }

  const patternOrder = (
    key: string,
  ) => (text !== undefined && !overridden.has(key) ? jsonObjectKeyOrder(text, key) : undefined);
  const rankPattern = read.readPatternMap(
    src,
    "rank_pattern",
    (v) => Number.isInteger(v) && v > 0,
    "a positive integer",
    patternOrder("rank_pattern"),
  );
  const alphaPattern = read.readPatternMap(
    src,
    "alpha_pattern",
    () => true,
    "a finite number",
    patternOrder("alpha_pattern"),
  );
  for (const [key, map] of [["rank_pattern", rankPattern], ["alpha_pattern", alphaPattern]] as const) {
    const numeric = [...map.keys()].filter((k) => /^(0|[1-9]\d*)$/.test(k));
    if (text === undefined && !overridden.has(key) && numeric.length > 0 && map.size > 1) {
      warn(
        `${file ?? "adapter config"}: ${key} has integer-like keys (${numeric.join(", ")}) that JavaScript objects ` +
          "reorder; pass the JSON text to parseLoraConfig to keep PEFT's first-match order",
      );
    }
  }

  const config: LoraConfig = {
    peftType: "LORA",
    taskType: readOneOf(src, "task_type", TASK_TYPES, null),
    baseModelNameOrPath: read.readStringOrNull(src, "base_model_name_or_path"),
    revision: read.readStringOrNull(src, "revision"),
    inferenceMode: read.readBoolean(src, "inference_mode", false),
    r: read.readPositiveInteger(src, "r", 8),
    loraAlpha: read.readNumber(src, "lora_alpha", 8),
    targetModules: read.readStringOrStringList(src, "target_modules"),
    excludeModules: read.readStringOrStringList(src, "exclude_modules"),
    layersToTransform: read.readIntegerOrIntegerList(src, "layers_to_transform"),
    layersPattern: read.readStringOrStringList(src, "layers_pattern"),
    rankPattern,
    alphaPattern,
    useRslora: read.readBoolean(src, "use_rslora", false),
    useDora: read.readBoolean(src, "use_dora", false),
    fanInFanOut: read.readBoolean(src, "fan_in_fan_out", false),
    bias: readOneOf(src, "bias", ["none", "all", "lora_only"] as const, "none")!,
    loraBias: read.readBoolean(src, "lora_bias", false),
    modulesToSave: read.readStringListOrNull(src, "modules_to_save"),
    loraDropout: read.readNumber(src, "lora_dropout", 0),
    initLoraWeights: readInit(src),
    layerReplication: null,
    trainableTokenIndices: null,
    targetParameters: null,
    aloraInvocationTokens: null,
    raw: object,
  };
  const extra = readUnmodelled(src);
  const targetParameters = checkLoraRules(config, src, extra, warn);
  // checkShapes validated it: a list of ints, or an object of such lists.
  const trainableTokenIndices = extra.trainableTokenIndices as LoraConfig["trainableTokenIndices"];
  const aloraInvocationTokens = extra.aloraInvocationTokens === null
    ? null
    : Object.freeze([...extra.aloraInvocationTokens as number[]]);
  return Object.freeze({ ...config, targetParameters, trainableTokenIndices, aloraInvocationTokens });
}

function readUnmodelled(src: read.FieldSource): UnmodelledFields {
  return {
    megatronConfig: read.readObjectOrNull(src, "megatron_config", null),
    loftqConfig: read.readObjectOrNull(src, "loftq_config", {}),
    evaConfig: read.readObjectOrNull(src, "eva_config", null),
    cordaConfig: read.readObjectOrNull(src, "corda_config", null),
    loraGaConfig: read.readObjectOrNull(src, "lora_ga_config", null),
    useBdlora: read.readObjectOrNull(src, "use_bdlora", null),
    arrowConfig: read.readObjectOrNull(src, "arrow_config", null),
    veloraConfig: read.readObjectOrNull(src, "velora_config", null),
    montecloraConfig: read.readObjectOrNull(src, "monteclora_config", null),
    kasaConfig: read.readObjectOrNull(src, "kasa_config", null),
    useQalora: read.readBoolean(src, "use_qalora", false),
    qaloraGroupSize: read.readPositiveInteger(src, "qalora_group_size", 16),
    ensureWeightTying: read.readBoolean(src, "ensure_weight_tying", false),
    targetParameters: src.values["target_parameters"] ?? null,
    aloraInvocationTokens: src.values["alora_invocation_tokens"] ?? null,
    layerReplication: src.values["layer_replication"] ?? null,
    trainableTokenIndices: src.values["trainable_token_indices"] ?? null,
  };
}

/** LoraConfig fields that are read and checked but not exposed on {@linkcode LoraConfig} (training-only, or rejected when set). */
interface UnmodelledFields {
  readonly megatronConfig: Record<string, unknown> | null;
  readonly loftqConfig: Record<string, unknown> | null;
  readonly evaConfig: Record<string, unknown> | null;
  readonly cordaConfig: Record<string, unknown> | null;
  readonly loraGaConfig: Record<string, unknown> | null;
  readonly useBdlora: Record<string, unknown> | null;
  readonly arrowConfig: Record<string, unknown> | null;
  readonly veloraConfig: Record<string, unknown> | null;
  readonly montecloraConfig: Record<string, unknown> | null;
  readonly kasaConfig: Record<string, unknown> | null;
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
function checkShapes(src: read.FieldSource, extra: UnmodelledFields): string[] | null {
  const { targetParameters: tp, aloraInvocationTokens, layerReplication, trainableTokenIndices } = extra;
  // LoraConfig.__post_init__: `target_parameters` must be a list of strings or None (TypeError).
  if (typeof tp === "string") {
    read.failField(src, "target_parameters", "must be a list of strings or null, not a string (PEFT raises TypeError)");
  }
  if (tp !== null && !(Array.isArray(tp) && tp.every((x) => typeof x === "string"))) {
    read.failField(src, "target_parameters", `must be a list of strings or null, got ${describeValue(tp)}`);
  }
  if (aloraInvocationTokens !== null && !isIntList(aloraInvocationTokens)) {
    read.failField(
      src,
      "alora_invocation_tokens",
      `must be a list of token ids or null, got ${describeValue(aloraInvocationTokens)}`,
    );
  }
  if (
    layerReplication !== null &&
    !(Array.isArray(layerReplication) && layerReplication.every((p) => isIntList(p) && (p as unknown[]).length === 2))
  ) {
    read.failField(
      src,
      "layer_replication",
      `must be a list of [start, end] pairs or null, got ${describeValue(layerReplication)}`,
    );
  }
  if (
    trainableTokenIndices !== null && !isIntList(trainableTokenIndices) &&
    !(isPlainObject(trainableTokenIndices) && Object.values(trainableTokenIndices).every(isIntList))
  ) {
    read.failField(
      src,
      "trainable_token_indices",
      `must be a list of token ids, an object of such lists, or null, got ${describeValue(trainableTokenIndices)}`,
    );
  }
  return tp as string[] | null;
}

/** PEFT's own ValueErrors: `PeftConfig.__post_init__`, `LoraConfig.__post_init__`, `LoraLayer.update_layer`. */
function checkPeftRules(config: LoraConfig, src: read.FieldSource, extra: UnmodelledFields): void {
  const regexTargets = typeof config.targetModules === "string";
  if (regexTargets && config.layersToTransform !== null) {
    read.failField(src, "layers_to_transform", "cannot be used when target_modules is a str (a regex)");
  }
  if (regexTargets && config.layersPattern !== null) {
    read.failField(src, "layers_pattern", "cannot be used when target_modules is a str (a regex)");
  }
  // Python truthiness: layers_to_transform=0 or [] counts as "not specified" here.
  if (truthy(config.layersPattern) && !truthy(config.layersToTransform)) {
    read.failField(src, "layers_pattern", "is specified, so layers_to_transform must also be specified");
  }
  if (config.useDora && truthy(extra.megatronConfig)) {
    read.failField(
      src,
      "use_dora",
      "DoRA does not support megatron_core (megatron_config is set); use_dora must be false",
    );
  }
  if (config.initLoraWeights === "loftq" && !truthy(extra.loftqConfig)) {
    read.failField(src, "loftq_config", "must be specified when init_lora_weights is 'loftq'");
  }
  if (config.loraBias && typeof config.initLoraWeights !== "boolean") {
    read.failField(
      src,
      "lora_bias",
      `true is only supported with init_lora_weights true or false, got init_lora_weights=${
        describeValue(config.initLoraWeights)
      }`,
    );
  }
  if (config.loraBias && config.useDora) {
    read.failField(src, "lora_bias", "true is not supported for DoRA; use_dora must be false");
  }
  // LoraLayer.update_layer builds nn.Dropout(p) only for p > 0, which rejects p > 1.
  if (config.loraDropout > 1) {
    read.failField(src, "lora_dropout", `must be a probability between 0 and 1, got ${config.loraDropout}`);
  }
}

/** Each regex PEFT would build from this config compiles (PEFT would fail at injection time). */
function checkRegexes(config: LoraConfig, src: read.FieldSource): void {
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
  src: read.FieldSource,
  extra: UnmodelledFields,
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
  const alora = extra.aloraInvocationTokens as readonly number[] | null;
  if (alora !== null && alora.length === 0) {
    refuse("alora_invocation_tokens", "an empty invocation sequence never occurs: aLoRA would never apply");
  }
  if (alora !== null && config.useDora) {
    // LoraLayer's variant table has no (alora_invocation_tokens, use_dora) entry.
    refuse("alora_invocation_tokens", "Invalid or unsupported variant combination: aLoRA with DoRA (as PEFT says)");
  }
  if (extra.useQalora) refuse("use_qalora", "QALoRA (quantization-aware pooled LoRA) is not supported");
  if (extra.useBdlora !== null) refuse("use_bdlora", "block-diagonal LoRA (use_bdlora) is not supported");
  if (extra.arrowConfig !== null) refuse("arrow_config", "Arrow routing between LoRA experts is not supported");
  // Each of these selects a LoRA variant (LoraLayer's variant table) with its own forward.
  if (extra.veloraConfig !== null) refuse("velora_config", "VeLoRA (velora_config) is not supported");
  if (extra.montecloraConfig !== null) {
    refuse("monteclora_config", "MonteCLoRA (monteclora_config) is not supported");
  }
  if (extra.kasaConfig !== null) refuse("kasa_config", "KaSA (kasa_config) is not supported");
  if (extra.ensureWeightTying) {
    refuse("ensure_weight_tying", "tying adapter weights across tied layers is not supported");
  }
}

/** PEFT's warnings for sub-configs that the chosen `init_lora_weights` ignores. */
function warnIgnored(
  config: LoraConfig,
  src: read.FieldSource,
  extra: UnmodelledFields,
  warn: (message: string) => void,
): void {
  const where = src.file ?? "adapter config";
  if (extra.aloraInvocationTokens !== null && config.taskType !== "CAUSAL_LM") {
    warn(`${where}: aLoRA is currently only supported for CAUSAL_LM task.`);
  }
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

/** PEFT's config checks, then peft-edge's feature checks, then warnings about ignored sub-configs; returns `target_parameters`. */
function checkLoraRules(
  config: LoraConfig,
  src: read.FieldSource,
  extra: UnmodelledFields,
  warn: (message: string) => void,
): string[] | null {
  const targetParameters = checkShapes(src, extra);
  checkPeftRules(config, src, extra);
  checkRegexes(config, src);
  checkSupported(config, src, extra);
  warnIgnored(config, src, extra, warn);
  return targetParameters;
}
