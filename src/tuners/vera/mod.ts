/**
 * VeRA (PEFT's `tuners/vera`): shared random projections `vera_A`
 * (`[r, max_in]`) and `vera_B` (`[max_out, r]`), sliced per module, scaled
 * by the module's `lambda_d` (`[r]`) and `lambda_b` (`[out]`):
 * `ΔW = (λ_b ⊙ B[:out]) @ (λ_d ⊙ A[:, :in])`.
 *
 * Without `save_projection` PEFT regenerates the projections from
 * `projection_prng_key` with torch's random generator and Kaiming init;
 * that is not reproduced here, and such adapters are refused.
 * @module
 */
import { AdapterConfigError, UnsupportedError } from "../../errors.ts";
import { field, parseTunerConfig, type TunerConfig } from "../config.ts";
import { addScaled, checkShape, required } from "../dense.ts";
import type { ModuleUpdate, SavedTensor, TunerMethod } from "../method.ts";

function parse(values: Readonly<Record<string, unknown>>, file?: string): TunerConfig {
  const r = field(values, "r", 256);
  if (!Number.isInteger(r) || r <= 0) {
    throw new AdapterConfigError(`r must be a positive integer, got ${r}`, { key: "r", file });
  }
  return parseTunerConfig("VERA", values, { file });
}

function check(config: TunerConfig, shared: (name: string) => SavedTensor | undefined) {
  if (shared("vera_A") && shared("vera_B")) return;
  const saved = field(config.fields, "save_projection", true);
  throw new UnsupportedError(
    saved
      ? "the adapter has no base_model.vera_A/vera_B although save_projection is true"
      : "save_projection is false: PEFT regenerates vera_A/vera_B from projection_prng_key with torch's random " +
        "generator, which peft-edge does not reproduce; save the adapter with save_projection=True",
    { key: "save_projection" },
  );
}

function merge(m: ModuleUpdate, config: TunerConfig) {
  const r = field(config.fields, "r", 256);
  const { outFeatures: out, inFeatures: inn } = m;
  const a = m.shared("vera_A")!;
  const b = m.shared("vera_B")!;
  checkShape(m.module, "vera_A", a, [r, -1]);
  checkShape(m.module, "vera_B", b, [-1, r]);
  if (a.shape[1] < inn || b.shape[0] < out) {
    throw new UnsupportedError(
      `vera_A [${a.shape}] / vera_B [${b.shape}] are smaller than the module's [${out}, ${inn}]`,
      { key: m.module },
    );
  }
  const ld = required(m, "vera_lambda_d", [r]).values;
  const lb = required(m, "vera_lambda_b", [out]).values;
  const maxIn = a.shape[1];
  const delta = new Float32Array(out * inn);
  const row = new Float64Array(inn);
  for (let o = 0; o < out; o++) {
    row.fill(0);
    for (let k = 0; k < r; k++) {
      const x = Math.fround(lb[o] * b.values[o * r + k]);
      for (let i = 0; i < inn; i++) row[i] += x * Math.fround(ld[k] * a.values[k * maxIn + i]);
    }
    delta.set(row, o * inn);
  }
  return { weight: addScaled(m.weight(), delta, 1) };
}

/**
 * The VeRA method.
 *
 * @example
 * ```ts
 * import { vera } from "./mod.ts";
 * vera.shared; // ["vera_A", "vera_B"]
 * ```
 */
export const vera: TunerMethod = {
  params: ["vera_lambda_b", "vera_lambda_d"],
  shared: ["vera_A", "vera_B"],
  parse,
  check,
  merge,
};
