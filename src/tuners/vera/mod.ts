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
import { checkShape, mergeLowRank, required } from "../dense.ts";
import type { LowRankDelta, ModuleUpdate, SavedTensor, TunerMethod } from "../method.ts";

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

/** `A' = λ_d ⊙ vera_A[:, :in]`, `B' = λ_b ⊙ vera_B[:out]`, scale 1, as `Linear.forward` computes it. */
function lowRank(m: ModuleUpdate, config: TunerConfig): LowRankDelta {
  const r = field(config.fields, "r", 256);
  const { outFeatures: out, inFeatures: inn } = m;
  const sharedA = m.shared("vera_A")!;
  const sharedB = m.shared("vera_B")!;
  checkShape(m.module, "vera_A", sharedA, [r, -1]);
  checkShape(m.module, "vera_B", sharedB, [-1, r]);
  if (sharedA.shape[1] < inn || sharedB.shape[0] < out) {
    throw new UnsupportedError(
      `vera_A [${sharedA.shape}] / vera_B [${sharedB.shape}] are smaller than the module's [${out}, ${inn}]`,
      { key: m.module },
    );
  }
  const ld = required(m, "vera_lambda_d", [r]).values;
  const lb = required(m, "vera_lambda_b", [out]).values;
  const maxIn = sharedA.shape[1];
  const a = new Float32Array(r * inn);
  for (let k = 0; k < r; k++) for (let i = 0; i < inn; i++) a[k * inn + i] = ld[k] * sharedA.values[k * maxIn + i];
  // vera_B's rows are [r] wide: its first `out` rows are the slice, row-major.
  const b = new Float32Array(out * r);
  for (let o = 0; o < out; o++) for (let k = 0; k < r; k++) b[o * r + k] = lb[o] * sharedB.values[o * r + k];
  return { rank: r, a, b, scale: 1 };
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
  sharedAreBuffers: true,
  parse,
  check,
  lowRank,
  merge: (m, config) => mergeLowRank(m, lowRank(m, config)),
};
