/**
 * Small float32 dense helpers for the merge math (row-major matrices).
 * @module
 */
import { AdapterMismatchError } from "../errors.ts";
import type { LowRankDelta, ModuleResult, ModuleUpdate, SavedTensor } from "./method.ts";

/**
 * `a [n, k] @ b [k, m]`, row-major, accumulated in float64 then rounded.
 *
 * @example
 * ```ts
 * import { matmul } from "./dense.ts";
 * matmul(new Float32Array([1, 2]), new Float32Array([3, 4]), 1, 2, 1); // [11]
 * ```
 */
export function matmul(a: Float32Array, b: Float32Array, n: number, k: number, m: number): Float32Array {
  const out = new Float32Array(n * m);
  const row = new Float64Array(m);
  for (let i = 0; i < n; i++) {
    row.fill(0);
    for (let p = 0; p < k; p++) {
      const x = a[i * k + p];
      if (x === 0) continue;
      for (let j = 0; j < m; j++) row[j] += x * b[p * m + j];
    }
    out.set(row, i * m);
  }
  return out;
}

/**
 * The tensor `param` of a module, which must be saved with `shape`
 * (`-1` for a free dimension).
 *
 * @example
 * ```ts
 * import { required } from "./dense.ts";
 * // const a = required(m, "hada_w1_a", [m.outFeatures, -1]);
 * ```
 */
export function required(m: ModuleUpdate, param: string, shape: readonly number[]): SavedTensor {
  const t = m.tensor(param);
  if (!t) throw new AdapterMismatchError(`has no ${param}`, { key: m.module });
  checkShape(m.module, param, t, shape);
  return t;
}

/**
 * Checks a tensor's shape (`-1` matches any size), naming module and tensor.
 *
 * @example
 * ```ts
 * import { checkShape } from "./dense.ts";
 * checkShape("q_proj", "ia3_l", { values: new Float32Array(4), shape: [4, 1] }, [4, 1]);
 * ```
 */
export function checkShape(module: string, param: string, t: SavedTensor, shape: readonly number[]): void {
  const ok = t.shape.length === shape.length && shape.every((d, i) => d < 0 || d === t.shape[i]);
  if (!ok) {
    throw new AdapterMismatchError(
      `${param} has shape [${t.shape.join(", ")}] but the base module needs [${
        shape.map((d) => (d < 0 ? "*" : d)).join(", ")
      }]`,
      { key: module },
    );
  }
}

/**
 * `w += scale · delta`, in place; returns `w`.
 *
 * @example
 * ```ts
 * import { addScaled } from "./dense.ts";
 * addScaled(new Float32Array([1]), new Float32Array([2]), 0.5); // [2]
 * ```
 */
export function addScaled(w: Float32Array, delta: Float32Array, scale: number): Float32Array {
  for (let i = 0; i < w.length; i++) w[i] += Math.fround(delta[i] * scale);
  return w;
}

/**
 * A module's merge from its low-rank delta: `W + scale · B @ A`, nothing for a rank-0 module.
 *
 * @example
 * ```ts
 * import { mergeLowRank } from "./dense.ts";
 * // adalora.merge = (m, config) => mergeLowRank(m, lowRank(m, config));
 * ```
 */
export function mergeLowRank(m: ModuleUpdate, delta: LowRankDelta | undefined): ModuleResult {
  if (!delta) return {};
  const product = matmul(delta.b, delta.a, m.outFeatures, delta.rank, m.inFeatures);
  return { weight: addScaled(m.weight(), product, delta.scale) };
}
