/**
 * What LoHa and LoKr share (PEFT's `lycoris_utils`): rank and alpha per
 * module from `r`/`alpha` and their patterns, `scaling = alpha / r`, and
 * the Conv2d-only tensors that cannot apply to a linear module.
 * @module
 */
import { alphaFor, rankFor } from "../config/mod.ts";
import { AdapterConfigError, UnsupportedError } from "../errors.ts";
import { field, parseTunerConfig, type TunerConfig, type TunerType } from "./config.ts";
import type { ModuleUpdate } from "./method.ts";

/**
 * Parses a LoHa/LoKr config: PEFT's defaults `r = 8`, `alpha = 8`.
 *
 * @example
 * ```ts
 * import { parseLycorisConfig } from "./lycoris.ts";
 * parseLycorisConfig("LOKR", { peft_type: "LOKR", target_modules: ["q_proj"] }).selection.loraAlpha; // 8
 * ```
 */
export function parseLycorisConfig(
  peftType: TunerType,
  values: Readonly<Record<string, unknown>>,
  file?: string,
): TunerConfig {
  const withDefaults = { ...values, r: values.r ?? 8, alpha: values.alpha ?? 8 };
  const config = parseTunerConfig(peftType, withDefaults, { rank: "r", alpha: "alpha", file });
  for (const key of ["rank_dropout", "module_dropout"]) {
    const p = field(values, key, 0);
    if (p < 0 || p > 1) throw new AdapterConfigError(`${key} must be in [0, 1], got ${p}`, { key, file });
  }
  return config;
}

/**
 * `alpha / r` for a module, as `update_layer` sets it (an `r` of 0 or
 * less raises in PEFT).
 *
 * @example
 * ```ts
 * import { lycorisScaling, parseLycorisConfig } from "./lycoris.ts";
 * lycorisScaling(parseLycorisConfig("LOHA", { r: 4, alpha: 8, target_modules: ["q_proj"] }), "q_proj"); // 2
 * ```
 */
export function lycorisScaling(config: TunerConfig, module: string): { rank: number; scaling: number } {
  const rank = rankFor(config.selection, module);
  if (rank <= 0) {
    throw new AdapterConfigError(`\`r\` should be a positive integer value but the value passed is ${rank}`, {
      key: module,
    });
  }
  return { rank, scaling: alphaFor(config.selection, module) / rank };
}

/**
 * Refuses tensors that exist only for Conv2d layers (`use_effective_conv2d`)
 * on a linear module: PEFT never saves them there.
 *
 * @example
 * ```ts
 * import { refuseConvTensors } from "./lycoris.ts";
 * // refuseConvTensors(m, ["hada_t1", "hada_t2"]);
 * ```
 */
export function refuseConvTensors(m: ModuleUpdate, params: readonly string[]): void {
  for (const p of params) {
    if (m.tensor(p)) {
      throw new UnsupportedError(
        `${p} is a Conv2d tensor (use_effective_conv2d), but ${m.module} is a linear module`,
        { key: m.module },
      );
    }
  }
}

/** PEFT's refusal of transformers' `Conv1D` for LoHa and LoKr. */
export const LYCORIS_CONV1D = "Target module of type <class 'transformers.pytorch_utils.Conv1D'> not supported, " +
  "currently only adapters for Conv2d, Conv1d, Linear are supported";
