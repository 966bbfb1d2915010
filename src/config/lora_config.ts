/**
 * PEFT LoRA `adapter_config.json`, parsed and checked the way PEFT's
 * `LoraConfig` does (PEFT v0.19: `peft/config.py`, `peft/tuners/lora/config.py`).
 *
 * @module
 */
import { AdapterConfigError, UnsupportedError } from "../errors.ts";
import { LORA_CONFIG_FIELDS, toSnakeCase } from "./fields.ts";
import { jsonObjectKeyOrder } from "./json_key_order.ts";
import { checkLoraRules, type UnmodelledFields } from "./lora_rules.ts";
import * as read from "./read_fields.ts";

/**
 * PEFT's `TaskType` values (`peft/utils/peft_types.py`).
 *
 * @example
 * ```ts
 * import { TASK_TYPES } from "./lora_config.ts";
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
 * import type { TaskType } from "./lora_config.ts";
 * const t: TaskType = "CAUSAL_LM";
 * ```
 */
export type TaskType = typeof TASK_TYPES[number];

/**
 * Which biases were trained alongside the adapter (`LoraConfig.bias`).
 *
 * @example
 * ```ts
 * import type { LoraBias } from "./lora_config.ts";
 * const b: LoraBias = "none";
 * ```
 */
export type LoraBias = "none" | "all" | "lora_only";

/**
 * A parsed, validated PEFT LoRA config. Field names are PEFT's, in camelCase;
 * defaults are PEFT's. Features peft-edge does not implement are rejected at
 * parse time, so `layerReplication` and `trainableTokenIndices` are always
 * `null` and `targetParameters` is `null` or empty.
 *
 * @example
 * ```ts
 * import { parseLoraConfig } from "./lora_config.ts";
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
  /** `trainable_token_indices`: always `null` (unsupported otherwise). */
  readonly trainableTokenIndices: null;
  /** `target_parameters`: `null` or `[]` (unsupported otherwise). */
  readonly targetParameters: readonly string[] | null;
  /** The JSON object as read, before overrides. */
  readonly raw: Readonly<Record<string, unknown>>;
}

/**
 * Options of {@linkcode parseLoraConfig}.
 *
 * @example
 * ```ts
 * import type { ParseLoraConfigOptions } from "./lora_config.ts";
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
    }; got ${read.describeValue(v)}`,
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
      `must be one of ${allowed.join(", ")}${fallback === null ? " or null" : ""}; got ${read.describeValue(v)}`,
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
      throw new AdapterConfigError(`not valid JSON: ${(e as Error).message}`, { file, cause: e });
    }
    if (!read.isPlainObject(parsed)) throw new AdapterConfigError("must be a JSON object", { file });
    return { object: parsed, text: json };
  }
  if (!read.isPlainObject(json)) {
    throw new AdapterConfigError(`must be a JSON object, got ${read.describeValue(json)}`, { file });
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
 * import { parseLoraConfig } from "./lora_config.ts";
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
  if (peftType !== undefined && peftType !== null && peftType !== "LORA") {
    throw new UnsupportedError(
      `peft_type ${read.describeValue(peftType)} is not supported; peft-edge supports: LORA`,
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
    raw: object,
  };
  const targetParameters = checkLoraRules(config, src, readUnmodelled(src), warn);
  return Object.freeze({ ...config, targetParameters });
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
    useQalora: read.readBoolean(src, "use_qalora", false),
    qaloraGroupSize: read.readPositiveInteger(src, "qalora_group_size", 16),
    ensureWeightTying: read.readBoolean(src, "ensure_weight_tying", false),
    targetParameters: src.values["target_parameters"] ?? null,
    aloraInvocationTokens: src.values["alora_invocation_tokens"] ?? null,
    layerReplication: src.values["layer_replication"] ?? null,
    trainableTokenIndices: src.values["trainable_token_indices"] ?? null,
  };
}
