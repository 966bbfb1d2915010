/**
 * LoKr (PEFT's `tuners/lokr`): `ΔW = kron(w1, w2) · alpha / r`, where each
 * factor is saved whole (`lokr_w1`, `lokr_w2`) or as a low-rank product
 * (`lokr_w1_a @ lokr_w1_b` with `decompose_both`, `lokr_w2_a @ lokr_w2_b`
 * when `r` is below half the factor's size).
 * @module
 */
import { AdapterMismatchError } from "../../errors.ts";
import { addScaled, checkShape, matmul } from "../dense.ts";
import { LYCORIS_CONV1D, lycorisScaling, parseLycorisConfig, refuseConvTensors } from "../lycoris.ts";
import type { ModuleUpdate, SavedTensor, TunerMethod } from "../method.ts";
import type { TunerConfig } from "../config.ts";

/** One Kronecker factor: whole, or `a @ b`. */
function factor(m: ModuleUpdate, name: "w1" | "w2", rank: number): SavedTensor {
  const whole = m.tensor(`lokr_${name}`);
  const a = m.tensor(`lokr_${name}_a`);
  const b = m.tensor(`lokr_${name}_b`);
  if (whole) {
    if (a || b) throw new AdapterMismatchError(`has both lokr_${name} and lokr_${name}_a/_b`, { key: m.module });
    checkShape(m.module, `lokr_${name}`, whole, [-1, -1]);
    return whole;
  }
  if (!a || !b) throw new AdapterMismatchError(`has no lokr_${name} (nor lokr_${name}_a and _b)`, { key: m.module });
  checkShape(m.module, `lokr_${name}_a`, a, [-1, rank]);
  checkShape(m.module, `lokr_${name}_b`, b, [rank, -1]);
  return { values: matmul(a.values, b.values, a.shape[0], rank, b.shape[1]), shape: [a.shape[0], b.shape[1]] };
}

/**
 * `torch.kron` of two matrices: `[a, c] ⊗ [b, d] = [a·b, c·d]`.
 *
 * @example
 * ```ts
 * import { kron } from "./mod.ts";
 * kron({ values: new Float32Array([1, 2]), shape: [1, 2] }, { values: new Float32Array([3]), shape: [1, 1] }); // [3, 6]
 * ```
 */
export function kron(x: SavedTensor, y: SavedTensor): Float32Array {
  const [a, c] = x.shape;
  const [b, d] = y.shape;
  const out = new Float32Array(a * b * c * d);
  const cols = c * d;
  for (let i = 0; i < a; i++) {
    for (let j = 0; j < c; j++) {
      const v = x.values[i * c + j];
      for (let k = 0; k < b; k++) {
        for (let l = 0; l < d; l++) out[(i * b + k) * cols + j * d + l] = Math.fround(v * y.values[k * d + l]);
      }
    }
  }
  return out;
}

function merge(m: ModuleUpdate, config: TunerConfig) {
  refuseConvTensors(m, ["lokr_t2"]);
  const { rank, scaling } = lycorisScaling(config, m.module);
  const w1 = factor(m, "w1", rank);
  const w2 = factor(m, "w2", rank);
  if (w1.shape[0] * w2.shape[0] !== m.outFeatures || w1.shape[1] * w2.shape[1] !== m.inFeatures) {
    throw new AdapterMismatchError(
      `kron(w1 [${w1.shape}], w2 [${w2.shape}]) is not the base weight's [${m.outFeatures}, ${m.inFeatures}]`,
      { key: m.module },
    );
  }
  return { weight: addScaled(m.weight(), kron(w1, w2), scaling) };
}

/**
 * The LoKr method.
 *
 * @example
 * ```ts
 * import { lokr } from "./mod.ts";
 * lokr.params.includes("lokr_w1"); // true
 * ```
 */
export const lokr: TunerMethod = {
  params: ["lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2"],
  conv1DRefusal: LYCORIS_CONV1D,
  parse: (values, file) => parseLycorisConfig("LOKR", values, file),
  merge,
};
