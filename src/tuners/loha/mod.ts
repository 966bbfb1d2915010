/**
 * LoHa (PEFT's `tuners/loha`): `ΔW = (w1_a @ w1_b) ⊙ (w2_a @ w2_b) · alpha / r`
 * (`make_weight`), added to the base weight.
 * @module
 */
import { addScaled, matmul, required } from "../dense.ts";
import { LYCORIS_CONV1D, lycorisScaling, parseLycorisConfig, refuseConvTensors } from "../lycoris.ts";
import type { ModuleUpdate, TunerMethod } from "../method.ts";
import type { TunerConfig } from "../config.ts";

function merge(m: ModuleUpdate, config: TunerConfig) {
  refuseConvTensors(m, ["hada_t1", "hada_t2"]);
  const { rank, scaling } = lycorisScaling(config, m.module);
  const { outFeatures: out, inFeatures: inn } = m;
  const w1a = required(m, "hada_w1_a", [out, rank]).values;
  const w1b = required(m, "hada_w1_b", [rank, inn]).values;
  const w2a = required(m, "hada_w2_a", [out, rank]).values;
  const w2b = required(m, "hada_w2_b", [rank, inn]).values;
  const d1 = matmul(w1a, w1b, out, rank, inn);
  const d2 = matmul(w2a, w2b, out, rank, inn);
  for (let i = 0; i < d1.length; i++) d1[i] = Math.fround(d1[i] * d2[i]);
  return { weight: addScaled(m.weight(), d1, scaling) };
}

/**
 * The LoHa method.
 *
 * @example
 * ```ts
 * import { loha } from "./mod.ts";
 * loha.conv1DRefusal !== undefined; // true
 * ```
 */
export const loha: TunerMethod = {
  params: ["hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2"],
  conv1DRefusal: LYCORIS_CONV1D,
  parse: (values, file) => parseLycorisConfig("LOHA", values, file),
  merge,
};
