/**
 * IA³ (PEFT's `tuners/ia3`): a learned vector `ia3_l` scales a module's
 * output (`[out, 1]`) or, for `feedforward_modules`, its input (`[1, in]`).
 * Merged as PEFT's `merge`: `W * ia3_l` (rows or columns), and for output
 * scaling the bias too; in dynamic mode the vector is fed per run
 * (`onnx/scale_branches.ts`, `feeds.ts`).
 * @module
 */
import { compilePythonRegex } from "../../config/mod.ts";
import { AdapterConfigError } from "../../errors.ts";
import { names, parseTunerConfig, type TunerConfig } from "../config.ts";
import { required } from "../dense.ts";
import type { ChannelScale, ModuleUpdate, TunerMethod } from "../method.ts";

/**
 * PEFT's `_check_target_module_feedforward`: a regex string must fully
 * match the module name; a list matches by suffix (`key.endswith(name)`).
 *
 * @example
 * ```ts
 * import { isFeedforward } from "./mod.ts";
 * isFeedforward(["down_proj"], "model.layers.0.mlp.down_proj"); // true
 * ```
 */
export function isFeedforward(feedforward: readonly string[] | string | null, module: string): boolean {
  if (feedforward === null) return false;
  if (typeof feedforward === "string") return compilePythonRegex(feedforward, "fullmatch").test(module);
  return feedforward.some((k) => module.endsWith(k));
}

function parse(values: Readonly<Record<string, unknown>>, file?: string): TunerConfig {
  const config = parseTunerConfig("IA3", values, { file });
  const ff = names(values, "feedforward_modules");
  const targets = config.targetModules;
  // IA3Config.__post_init__: both lists -> feedforward must be a subset of the targets.
  if (Array.isArray(ff) && Array.isArray(targets) && !ff.every((m) => targets.includes(m))) {
    throw new AdapterConfigError("`feedforward_modules` should be a subset of `target_modules`", {
      key: "feedforward_modules",
      file,
    });
  }
  return config;
}

function scale(m: ModuleUpdate, config: TunerConfig): ChannelScale {
  const input = isFeedforward(names(config.fields, "feedforward_modules"), m.module);
  const values = required(m, "ia3_l", input ? [1, m.inFeatures] : [m.outFeatures, 1]).values;
  return { param: "ia3_l", values, input };
}

function merge(m: ModuleUpdate, config: TunerConfig) {
  const { values: l, input: ff } = scale(m, config);
  const { outFeatures: out, inFeatures: inn } = m;
  const w = m.weight();
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inn; i++) w[o * inn + i] = Math.fround(w[o * inn + i] * (ff ? l[i] : l[o]));
  }
  const bias = ff ? undefined : m.bias();
  if (bias) { for (let o = 0; o < out; o++) bias[o] = Math.fround(bias[o] * l[o]); }
  return { weight: w, bias };
}

/**
 * The IA³ method.
 *
 * @example
 * ```ts
 * import { ia3 } from "./mod.ts";
 * ia3.params; // ["ia3_l"]
 * ```
 */
export const ia3: TunerMethod = { params: ["ia3_l"], parse, scale, merge };
