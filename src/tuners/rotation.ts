/**
 * Small square-matrix helpers for the orthogonal methods (OFT, BOFT):
 * skew-symmetric matrices from PEFT's packed upper triangles and the Cayley
 * transform, exact or by PEFT's truncated Neumann series.
 * @module
 */
import { AdapterMismatchError } from "../errors.ts";

/**
 * Block size `k` of a packed upper triangle of `n = k(k-1)/2` entries.
 *
 * @example
 * ```ts
 * import { blockSizeOf } from "./rotation.ts";
 * blockSizeOf(6, "q_proj"); // 4
 * ```
 */
export function blockSizeOf(n: number, module: string): number {
  const k = Math.round((1 + Math.sqrt(1 + 8 * n)) / 2);
  if ((k * (k - 1)) / 2 !== n) {
    throw new AdapterMismatchError(`oft_R has ${n} entries per block, not k(k-1)/2 for any block size k`, {
      key: module,
    });
  }
  return k;
}

/**
 * `Q = M - Mᵀ` where `M` holds `vec` in its strict upper triangle, row by
 * row (`torch.triu_indices(k, k, 1)` order).
 *
 * @example
 * ```ts
 * import { skew } from "./rotation.ts";
 * skew(new Float32Array([1]), 2); // [0, 1, -1, 0]
 * ```
 */
export function skew(vec: Float32Array, k: number): Float64Array {
  const q = new Float64Array(k * k);
  let n = 0;
  for (let r = 0; r < k; r++) {
    for (let c = r + 1; c < k; c++) {
      q[r * k + c] = vec[n];
      q[c * k + r] = -vec[n];
      n++;
    }
  }
  return q;
}

function mul(a: Float64Array, b: Float64Array, k: number): Float64Array {
  const out = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    for (let p = 0; p < k; p++) {
      const x = a[i * k + p];
      for (let j = 0; j < k; j++) out[i * k + j] += x * b[p * k + j];
    }
  }
  return out;
}

/** `(I - Q)(I + Q)⁻¹` by Gauss-Jordan on `(I + Q)ᵀ` (what `linalg.solve(I + Q, I - Q, left=False)` solves). */
function cayleyExact(q: Float64Array, k: number): Float64Array {
  // X (I + Q) = I - Q  <=>  (I + Q)ᵀ Xᵀ = (I - Q)ᵀ
  const a = new Float64Array(k * k);
  const b = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const id = i === j ? 1 : 0;
      a[i * k + j] = id + q[j * k + i];
      b[i * k + j] = id - q[j * k + i];
    }
  }
  for (let c = 0; c < k; c++) {
    let pivot = c;
    for (let r = c + 1; r < k; r++) if (Math.abs(a[r * k + c]) > Math.abs(a[pivot * k + c])) pivot = r;
    for (let j = 0; j < k; j++) {
      [a[c * k + j], a[pivot * k + j]] = [a[pivot * k + j], a[c * k + j]];
      [b[c * k + j], b[pivot * k + j]] = [b[pivot * k + j], b[c * k + j]];
    }
    const d = a[c * k + c];
    for (let j = 0; j < k; j++) {
      a[c * k + j] /= d;
      b[c * k + j] /= d;
    }
    for (let r = 0; r < k; r++) {
      if (r === c) continue;
      const f = a[r * k + c];
      if (f === 0) continue;
      for (let j = 0; j < k; j++) {
        a[r * k + j] -= f * a[c * k + j];
        b[r * k + j] -= f * b[c * k + j];
      }
    }
  }
  const x = new Float64Array(k * k); // b holds Xᵀ
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) x[i * k + j] = b[j * k + i];
  return x;
}

/**
 * PEFT's `_cayley_batch` for one block: with `neumannTerms` (the default,
 * `use_cayley_neumann`), `I + 2Q + 2Q² + … + 2Q^(n-2) + Q^(n-1)`;
 * otherwise the exact `(I - Q)(I + Q)⁻¹`.
 *
 * @example
 * ```ts
 * import { cayley, skew } from "./rotation.ts";
 * cayley(skew(new Float32Array([0]), 2), 2, 5); // identity
 * ```
 */
export function cayley(q: Float64Array, k: number, neumannTerms: number | undefined): Float64Array {
  if (neumannTerms === undefined) return cayleyExact(q, k);
  const r = new Float64Array(k * k);
  for (let i = 0; i < k; i++) r[i * k + i] = 1;
  const add = (m: Float64Array, s: number) => {
    for (let i = 0; i < r.length; i++) r[i] += s * m[i];
  };
  if (neumannTerms > 1) {
    add(q, 2);
    if (neumannTerms > 2) {
      let power = mul(q, q, k);
      add(power, 2);
      for (let p = 3; p < neumannTerms - 1; p++) {
        power = mul(power, q, k);
        add(power, 2);
      }
      power = mul(power, q, k);
      add(power, 1);
    }
  }
  return r;
}
