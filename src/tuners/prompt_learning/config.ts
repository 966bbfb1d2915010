/**
 * The config of PEFT's prompt-learning methods (`PromptLearningConfig`):
 * the fields every one of them saves, read with PEFT's defaults, and each
 * method's own fields, read by its module (`prompt_tuning`, `p_tuning`,
 * `prefix_tuning`). Unknown fields are ignored with one warning, as LoRA's.
 * @module
 */
import { AdapterConfigError, UnsupportedError } from "../../errors.ts";
import { PROMPT_LEARNING_TYPES } from "../../config/peft_types.ts";

/**
 * The prompt-learning `peft_type`s peft-edge loads.
 *
 * @example
 * ```ts
 * import type { PromptLearningType } from "./config.ts";
 * const t: PromptLearningType = "P_TUNING";
 * ```
 */
export type PromptLearningType = typeof PROMPT_LEARNING_TYPES[number];

/**
 * A parsed prompt-learning config. The dimensions are those PEFT filled in
 * from the base's config when the adapter was made (and saved).
 *
 * @example
 * ```ts
 * import type { PromptLearningConfig } from "./config.ts";
 * const describe = (c: PromptLearningConfig) => `${c.peftType}: ${c.numVirtualTokens} virtual tokens`;
 * ```
 */
export interface PromptLearningConfig {
  /** PEFT's `peft_type`. */
  readonly peftType: PromptLearningType;
  /**
   * `task_type`: `CAUSAL_LM` (PEFT's `PeftModelForCausalLM`) or `SEQ_CLS`
   * (`PeftModelForSequenceClassification`: the classifier is saved beside the prompt).
   */
  readonly taskType: "CAUSAL_LM" | "SEQ_CLS";
  /**
   * `modules_to_save` as PEFT completes it: for `SEQ_CLS` the saved list plus `classifier` and `score`
   * (PeftModelForSequenceClassification adds them), empty for `CAUSAL_LM`.
   */
  readonly modulesToSave: readonly string[];
  /** `num_virtual_tokens`. */
  readonly numVirtualTokens: number;
  /** `token_dim`: the width of a virtual token (prefix tuning: of one layer's key or value, GQA-adjusted). */
  readonly tokenDim: number;
  /** `num_transformer_submodules` (1 for a decoder). */
  readonly numTransformerSubmodules: number;
  /** `num_attention_heads` (prefix tuning: the key/value heads). */
  readonly numAttentionHeads: number | null;
  /** `num_layers`. */
  readonly numLayers: number | null;
  /** Prompt learning adapts no weight (so no layout applies). */
  readonly fanInFanOut: false;
  /** Every saved field, snake_case. */
  readonly fields: Readonly<Record<string, unknown>>;
}

/**
 * Whether a `peft_type` is a prompt-learning method peft-edge loads.
 *
 * @example
 * ```ts
 * import { isPromptLearningType } from "./config.ts";
 * isPromptLearningType("PROMPT_TUNING"); // true
 * ```
 */
export function isPromptLearningType(peftType: unknown): peftType is PromptLearningType {
  return typeof peftType === "string" && (PROMPT_LEARNING_TYPES as readonly string[]).includes(peftType);
}

/**
 * Whether an adapter's config is a prompt-learning one.
 *
 * @example
 * ```ts
 * import { isPromptLearning } from "./config.ts";
 * isPromptLearning({ peftType: "LORA" }); // false
 * ```
 */
export function isPromptLearning(config: { readonly peftType: string }): config is PromptLearningConfig {
  return isPromptLearningType(config.peftType);
}

/** PeftConfig's and PromptLearningConfig's fields. */
const COMMON_FIELDS = [
  "peft_type",
  "task_type",
  "base_model_name_or_path",
  "revision",
  "inference_mode",
  "auto_mapping",
  "peft_version",
  "num_virtual_tokens",
  "token_dim",
  "num_transformer_submodules",
  "num_attention_heads",
  "num_layers",
  "modules_to_save",
];

function intField(values: Readonly<Record<string, unknown>>, key: string, file?: string): number | null {
  const v = values[key];
  if (v === undefined || v === null) return null;
  if (!Number.isInteger(v) || (v as number) <= 0) {
    throw new AdapterConfigError(`${key} must be a positive integer, got ${JSON.stringify(v)}`, { file, key });
  }
  return v as number;
}

/**
 * Reads the fields every prompt-learning method shares; `own` lists the
 * method's fields, so the rest are reported as unknown through `warn`.
 *
 * @example
 * ```ts
 * import { parsePromptLearningConfig } from "./config.ts";
 * const c = parsePromptLearningConfig("PROMPT_TUNING", {
 *   peft_type: "PROMPT_TUNING", task_type: "CAUSAL_LM", num_virtual_tokens: 4, token_dim: 128,
 * }, [], { warn: () => {} });
 * c.numVirtualTokens; // 4
 * ```
 */
export function parsePromptLearningConfig(
  peftType: PromptLearningType,
  values: Readonly<Record<string, unknown>>,
  own: readonly string[],
  options: { file?: string; warn: (message: string) => void; className?: string },
): PromptLearningConfig {
  const file = options.file;
  const taskType = values.task_type ?? null;
  if (taskType !== "CAUSAL_LM" && taskType !== "SEQ_CLS") {
    // PEFT picks the model class by task_type; these two classes' prompt handling is what peft-edge follows.
    throw new UnsupportedError(
      `${peftType} adapters load for task_type "CAUSAL_LM" or "SEQ_CLS"; this one has ${JSON.stringify(taskType)}`,
      { file, key: "task_type" },
    );
  }
  const numVirtualTokens = intField(values, "num_virtual_tokens", file);
  const tokenDim = intField(values, "token_dim", file);
  if (numVirtualTokens === null || tokenDim === null) {
    // PEFT fills them in (from the base's config) before it saves; a saved adapter always has both.
    throw new AdapterConfigError(
      `${peftType} needs num_virtual_tokens and token_dim (PEFT saves both)`,
      { file, key: numVirtualTokens === null ? "num_virtual_tokens" : "token_dim" },
    );
  }
  const modules = values.modules_to_save ?? null;
  const saved = Array.isArray(modules) && modules.every((m) => typeof m === "string") ? modules as string[] : null;
  if (modules !== null && saved === null) {
    throw new AdapterConfigError("modules_to_save must be a list of module names", { file, key: "modules_to_save" });
  }
  if (taskType === "CAUSAL_LM" && (saved ?? []).length > 0) {
    throw new UnsupportedError(`${peftType}: modules_to_save is not supported for task_type "CAUSAL_LM"`, {
      file,
      key: "modules_to_save",
    });
  }
  // PeftModelForSequenceClassification extends modules_to_save by its classifier names (when saving and loading).
  const modulesToSave = taskType === "SEQ_CLS" ? [...new Set([...(saved ?? []), "classifier", "score"])] : [];
  const known = new Set([...COMMON_FIELDS, ...own]);
  const unknown = Object.keys(values).filter((k) => !known.has(k));
  if (unknown.length > 0) {
    options.warn(
      `${file ?? "adapter config"}: ignoring unknown ${options.className ?? peftType} fields ${unknown.join(", ")}`,
    );
  }
  return {
    peftType,
    taskType,
    modulesToSave,
    numVirtualTokens,
    tokenDim,
    numTransformerSubmodules: intField(values, "num_transformer_submodules", file) ?? 1,
    numAttentionHeads: intField(values, "num_attention_heads", file),
    numLayers: intField(values, "num_layers", file),
    fanInFanOut: false,
    fields: values,
  };
}

/**
 * A string field that must be one of `choices` (PEFT's enums), with its default when absent or null.
 *
 * @example
 * ```ts
 * import { choice } from "./config.ts";
 * choice({}, "encoder_reparameterization_type", ["MLP", "LSTM"], "MLP"); // "MLP"
 * ```
 */
export function choice<T extends string>(
  values: Readonly<Record<string, unknown>>,
  key: string,
  choices: readonly T[],
  fallback: T | null,
  file?: string,
): T | null {
  const v = values[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "string" || !(choices as readonly string[]).includes(v)) {
    throw new AdapterConfigError(
      `${key} must be one of ${choices.map((c) => JSON.stringify(c)).join(", ")}, got ${JSON.stringify(v)}`,
      { file, key },
    );
  }
  return v as T;
}

/**
 * A prompt-learning method's config reader (one module per method).
 *
 * @example
 * ```ts
 * import type { PromptMethod } from "./config.ts";
 * const fieldsOf = (m: PromptMethod) => m.fields.join(", ");
 * ```
 */
export interface PromptMethod {
  readonly peftType: PromptLearningType;
  /** PEFT's config class, for messages. */
  readonly className: string;
  /** The method's own config fields (beyond PromptLearningConfig's). */
  readonly fields: readonly string[];
  /** Reads a config with PEFT's defaults, refusing what PEFT refuses. */
  parse(
    values: Readonly<Record<string, unknown>>,
    options: { file?: string; warn: (m: string) => void },
  ): PromptLearningConfig;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * PEFT's `_prepare_prompt_learning_config`, which `from_pretrained` runs on
 * the saved config with the base's `config.json`: absent dimensions come
 * from the base, and for prefix tuning on a grouped-query model `token_dim`
 * and `num_attention_heads` are set to the key/value heads' (idempotent on
 * configs PEFT already adjusted). Returns new values; `values` is not changed.
 *
 * @throws {AdapterConfigError} where PEFT raises (a dimension neither saved nor in the base's config).
 * @example
 * ```ts
 * import { preparedForModel } from "./config.ts";
 * const v = preparedForModel(
 *   { peft_type: "PREFIX_TUNING", num_virtual_tokens: 3, token_dim: null },
 *   { hidden_size: 128, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2 },
 * );
 * [v.token_dim, v.num_attention_heads, v.num_layers]; // [64, 2, 4]
 * ```
 */
export function preparedForModel(
  values: Readonly<Record<string, unknown>>,
  modelConfig: Readonly<Record<string, unknown>>,
  file?: string,
): Record<string, unknown> {
  // A vision-language model's text part.
  const model = isRecord(modelConfig.text_config) ? modelConfig.text_config : modelConfig;
  const out: Record<string, unknown> = { ...values };
  const fill = (key: string, from: readonly string[]) => {
    if (out[key] !== undefined && out[key] !== null) return;
    const found = from.map((k) => model[k]).find((v) => v !== undefined && v !== null);
    if (found === undefined) {
      throw new AdapterConfigError(`Please specify \`${key}\` in \`peft_config\``, { file, key });
    }
    out[key] = found;
  };
  fill("num_layers", ["num_hidden_layers", "num_layers", "n_layer"]);
  fill("token_dim", ["hidden_size", "n_embd", "d_model"]);
  fill("num_attention_heads", ["num_attention_heads", "n_head", "num_heads", "encoder_attention_heads"]);
  const kv = model.num_key_value_heads;
  if (out.peft_type === "PREFIX_TUNING" && kv !== undefined && kv !== null) {
    for (const key of ["global_head_dim", "per_layer_config"]) {
      if (model[key] !== undefined && model[key] !== null) {
        throw new UnsupportedError(`PREFIX_TUNING on a model with ${key} (per-layer key/value shapes)`, { key });
      }
    }
    const headDim = model.head_dim ?? Math.floor(Number(out.token_dim) / Number(out.num_attention_heads));
    out.token_dim = Number(headDim) * Number(kv);
    out.num_attention_heads = kv;
  }
  return out;
}
