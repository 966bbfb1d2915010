/**
 * LN tuning (PEFT's `tuners/ln_tuning`): the targeted norm layers are
 * replaced by trained copies (`<module>.ln_tuning_layers.weight` / `.bias`),
 * so merging is replacing those parameters.
 * @module
 */
import { AdapterConfigError } from "../../errors.ts";
import { parseTunerConfig, type TunerConfig } from "../config.ts";
import type { TunerMethod } from "../method.ts";

function parse(values: Readonly<Record<string, unknown>>, file?: string): TunerConfig {
  if (values.target_modules === undefined || values.target_modules === null) {
    // PEFT would take them from its per-architecture table; the saved config names them.
    throw new AdapterConfigError("target_modules is null: list the norm modules explicitly", {
      key: "target_modules",
      file,
    });
  }
  return parseTunerConfig("LN_TUNING", values, { file });
}

/**
 * The LN tuning method: its tensors replace norm parameters (`replaces`),
 * with no merge math.
 *
 * @example
 * ```ts
 * import { lnTuning } from "./mod.ts";
 * lnTuning.replaces; // { "ln_tuning_layers.weight": "weight", "ln_tuning_layers.bias": "bias" }
 * ```
 */
export const lnTuning: TunerMethod = {
  params: ["ln_tuning_layers.weight", "ln_tuning_layers.bias"],
  replaces: { "ln_tuning_layers.weight": "weight", "ln_tuning_layers.bias": "bias" },
  parse,
  merge: () => ({}),
};
