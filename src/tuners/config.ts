/**
 * The config of a non-LoRA PEFT method: its `peft_type`, PEFT's fields it
 * shares with LoRA (target selection, `rank_pattern`/`alpha_pattern`,
 * `fan_in_fan_out`) read with LoRA's rules, and its own fields.
 * @module
 */
import { type LoraConfig, parseLoraConfig } from "../config/mod.ts";
import { AdapterConfigError } from "../errors.ts";
import type { TUNER_TYPES } from "../config/peft_types.ts";

/**
 * The PEFT methods besides LoRA that peft-edge loads.
 *
 * @example
 * ```ts
 * import type { TunerType } from "./config.ts";
 * const t: TunerType = "IA3";
 * ```
 */
export type TunerType = typeof TUNER_TYPES[number];

/**
 * A parsed non-LoRA config. `selection` holds the fields shared with LoRA
 * (PEFT's `BaseTuner` selects modules the same way for every method).
 *
 * @example
 * ```ts
 * import type { TunerConfig } from "./config.ts";
 * const describe = (c: TunerConfig) => `${c.peftType} on ${c.targetModules}`;
 * ```
 */
export interface TunerConfig {
  /** PEFT's `peft_type`. */
  readonly peftType: TunerType;
  /** `target_modules` as saved: names, a regex string, or null. */
  readonly targetModules: readonly string[] | string | null;
  /** `fan_in_fan_out` as saved (GPT-2 `Conv1D` stores weights `[in, out]`). */
  readonly fanInFanOut: boolean;
  /** The method's own fields, snake_case as saved. */
  readonly fields: Readonly<Record<string, unknown>>;
  /** Target selection and rank/alpha patterns, read by LoRA's rules. */
  readonly selection: LoraConfig;
}

const SHARED = [
  "target_modules",
  "exclude_modules",
  "layers_to_transform",
  "layers_pattern",
  "modules_to_save",
  "fan_in_fan_out",
] as const;

/**
 * Reads the fields every method shares. `rank` and `alpha` name the method's
 * rank and alpha fields (LoHa/LoKr: `r`/`alpha`), whose patterns then apply.
 *
 * @example
 * ```ts
 * import { parseTunerConfig } from "./config.ts";
 * const c = parseTunerConfig("LOHA", { peft_type: "LOHA", r: 4, alpha: 8, target_modules: ["q_proj"] }, { rank: "r", alpha: "alpha" });
 * c.selection.r; // 4
 * ```
 */
export function parseTunerConfig(
  peftType: TunerType,
  values: Readonly<Record<string, unknown>>,
  patterns: { rank?: string; alpha?: string; file?: string } = {},
): TunerConfig {
  const shared: Record<string, unknown> = { peft_type: "LORA" };
  for (const k of SHARED) if (k in values) shared[k] = values[k];
  if (patterns.rank) {
    shared.r = values[patterns.rank];
    shared.rank_pattern = values.rank_pattern ?? {};
  }
  if (patterns.alpha) {
    shared.lora_alpha = values[patterns.alpha];
    shared.alpha_pattern = values.alpha_pattern ?? {};
  }
  const selection = parseLoraConfig(shared, { file: patterns.file, onWarning: () => {} });
  return {
    peftType,
    targetModules: selection.targetModules,
    fanInFanOut: selection.fanInFanOut,
    fields: values,
    selection,
  };
}

/**
 * A field of the method's own, with PEFT's default when absent or null.
 *
 * @example
 * ```ts
 * import { field } from "./config.ts";
 * field({ decompose_both: true }, "decompose_both", false); // true
 * ```
 */
export function field<T extends boolean | number | string>(
  values: Readonly<Record<string, unknown>>,
  key: string,
  fallback: T,
): Widened<T> {
  const v = values[key];
  if (v === undefined || v === null) return fallback as unknown as Widened<T>;
  if (typeof v !== typeof fallback) {
    throw new AdapterConfigError(`${key} must be a ${typeof fallback}, got ${JSON.stringify(v)}`, { key });
  }
  return v as Widened<T>;
}

/** `number` for a numeric literal type, and so on: defaults do not narrow what a field may hold. */
type Widened<T> = T extends number ? number : T extends boolean ? boolean : string;

/**
 * A list of module names (or a regex string) such as IA³'s `feedforward_modules`.
 *
 * @example
 * ```ts
 * import { names } from "./config.ts";
 * names({ feedforward_modules: ["down_proj"] }, "feedforward_modules"); // ["down_proj"]
 * ```
 */
export function names(values: Readonly<Record<string, unknown>>, key: string): readonly string[] | string | null {
  const v = values[key];
  if (v === undefined || v === null) return null;
  if (typeof v === "string" || (Array.isArray(v) && v.every((x) => typeof x === "string"))) return v;
  throw new AdapterConfigError(`${key} must be a string or a list of strings`, { key });
}
