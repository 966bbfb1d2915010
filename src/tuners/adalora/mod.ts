/**
 * AdaLoRA (PEFT's `tuners/adalora`): an SVD-shaped LoRA,
 * `ΔW = B @ (A ⊙ E) · scaling / (ranknum + 1e-5)` with `scaling = lora_alpha`
 * (or the rank when `lora_alpha` is 0). The saved `rank_pattern` (a boolean
 * mask per module) gives each module's rank after pruning, as
 * `resize_modules_by_rank_pattern` does on load; a rank pruned to 0 leaves
 * the module as the base has it. `ranknum` is not saved: PEFT creates each
 * module with `init_r` and keeps that `ranknum` through the resize, so the
 * divisor is `init_r`, not the pruned rank.
 * @module
 */
import { AdapterConfigError } from "../../errors.ts";
import { field, parseTunerConfig, type TunerConfig } from "../config.ts";
import { mergeLowRank, required } from "../dense.ts";
import type { LowRankDelta, ModuleUpdate, TunerMethod } from "../method.ts";

function parse(values: Readonly<Record<string, unknown>>, file?: string): TunerConfig {
  const fail = (key: string, message: string) => {
    throw new AdapterConfigError(message, { key, file });
  };
  if (values.use_dora === true) fail("use_dora", "ADALORA does not support DoRA.");
  const loftq = values.loftq_config;
  if (loftq && typeof loftq === "object" && Object.keys(loftq).length > 0) {
    fail("loftq_config", "ADALORA does not support LOFTQ.");
  }
  const totalStep = values.total_step;
  if (typeof totalStep !== "number" || totalStep <= 0) {
    fail("total_step", "AdaLoRA does not work when `total_step` is None, supply a value > 0.");
  }
  if (field(values, "orth_reg_weight", 0.5) < 0) {
    fail("orth_reg_weight", "`orth_reg_weight` should be greater than or equal to 0");
  }
  if (field(values, "tinit", 0) >= (totalStep as number) - field(values, "tfinal", 0)) {
    fail(
      "tinit",
      "The supplied schedule values don't allow for a budgeting phase. Decrease `tfinal`/`tinit` or increase `total_step`.",
    );
  }
  const pattern = values.rank_pattern ?? {};
  if (typeof pattern !== "object" || Array.isArray(pattern)) fail("rank_pattern", "rank_pattern must be an object");
  for (const [k, mask] of Object.entries(pattern as Record<string, unknown>)) {
    if (!Array.isArray(mask) || !mask.every((b) => typeof b === "boolean")) {
      fail("rank_pattern", `rank_pattern[${JSON.stringify(k)}] must be a list of booleans (AdaLoRA's rank mask)`);
    }
  }
  // rank_pattern here is AdaLoRA's masks, not LoRA's ranks: no rank field is shared with LoRA's reader.
  return parseTunerConfig("ADALORA", values, { file });
}

/** The module's rank: `sum(mask)` of its saved mask, else `init_r` (PEFT's default 12). */
function rankOf(config: TunerConfig, module: string): number {
  const masks = (config.fields.rank_pattern ?? {}) as Record<string, boolean[]>;
  // Saved keys name the module's lora_E (`model.layers.0.self_attn.q_proj.lora_E`).
  const mask = masks[`${module}.lora_E`] ?? masks[module];
  return mask ? mask.filter((b) => b).length : field(config.fields, "init_r", 12);
}

/** `A' = A ⊙ E`, `B' = B`, scale `scaling / (ranknum + 1e-5)`, as `SVDLinear.forward` computes it. */
function lowRank(m: ModuleUpdate, config: TunerConfig): LowRankDelta | undefined {
  const rank = rankOf(config, m.module);
  const { outFeatures: out, inFeatures: inn } = m;
  const a = required(m, "lora_A", [rank, inn]).values;
  const e = required(m, "lora_E", [rank, 1]).values;
  const b = required(m, "lora_B", [out, rank]).values;
  if (rank === 0) return undefined;
  const alpha = field(config.fields, "lora_alpha", 8);
  const scaling = alpha > 0 ? alpha : rank;
  const ranknum = field(config.fields, "init_r", 12);
  const ae = new Float32Array(a.length);
  for (let r = 0; r < rank; r++) for (let i = 0; i < inn; i++) ae[r * inn + i] = Math.fround(a[r * inn + i] * e[r]);
  return { rank, a: ae, b, scale: scaling / Math.fround(ranknum + 1e-5) };
}

/**
 * The AdaLoRA method.
 *
 * @example
 * ```ts
 * import { adalora } from "./mod.ts";
 * adalora.params; // ["lora_A", "lora_B", "lora_E"]
 * ```
 */
export const adalora: TunerMethod = {
  params: ["lora_A", "lora_B", "lora_E"],
  unsavedPerModule: 1,
  parse,
  lowRank,
  merge: (m, config) => mergeLowRank(m, lowRank(m, config)),
};
