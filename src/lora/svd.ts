/**
 * A singular value decomposition for the small delta matrices of
 * `addWeightedAdapter` (PEFT calls `torch.linalg.svd`): one-sided Jacobi
 * (Hestenes) in float64, which is accurate for every singular value, not
 * only the large ones, and simple enough to verify. Signs of singular vector
 * pairs are arbitrary, as in LAPACK; `U·S` and `Vᵀ` flip together, so their
 * product is unique wherever the singular values are distinct.
 * @module
 */

/** `a ≈ u · diag(s) · vt`, singular values descending; `k = min(m, n)`. */
export interface Svd {
  /** `[m, k]` row-major, orthonormal columns (zero where the singular value is zero). */
  u: Float64Array;
  /** `[k]`, descending, non-negative. */
  s: Float64Array;
  /** `[k, n]` row-major, orthonormal rows. */
  vt: Float64Array;
  k: number;
}

const MAX_SWEEPS = 80;

function transpose(a: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

/**
 * The thin SVD of a row-major `[m, n]` matrix.
 *
 * @example
 * ```ts
 * import { svd } from "./svd.ts";
 * const { s } = svd(new Float64Array([3, 0, 0, 4]), 2, 2);
 * s; // Float64Array [4, 3]
 * ```
 */
export function svd(a: Float64Array, m: number, n: number): Svd {
  if (m < n) {
    // a = (aᵀ)ᵀ = (u' s v'ᵀ)ᵀ = v' s u'ᵀ
    const t = svd(transpose(a, m, n), n, m);
    return { u: transpose(t.vt, t.k, m), s: t.s, vt: transpose(t.u, n, t.k), k: t.k };
  }
  // Columns of w are rotated until mutually orthogonal; v accumulates the rotations.
  const cols: Float64Array[] = [];
  for (let j = 0; j < n; j++) {
    const c = new Float64Array(m);
    for (let i = 0; i < m; i++) c[i] = a[i * n + j];
    cols.push(c);
  }
  const v: Float64Array[] = [];
  for (let j = 0; j < n; j++) {
    const c = new Float64Array(n);
    c[j] = 1;
    v.push(c);
  }
  const dot = (x: Float64Array, y: Float64Array) => {
    let sum = 0;
    for (let i = 0; i < x.length; i++) sum += x[i] * y[i];
    return sum;
  };
  const rotate = (x: Float64Array, y: Float64Array, c: number, s: number) => {
    for (let i = 0; i < x.length; i++) {
      const xi = x[i];
      const yi = y[i];
      x[i] = c * xi - s * yi;
      y[i] = s * xi + c * yi;
    }
  };
  for (let sweep = 0; sweep < MAX_SWEEPS; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const alpha = dot(cols[p], cols[p]);
        const beta = dot(cols[q], cols[q]);
        const gamma = dot(cols[p], cols[q]);
        if (gamma === 0 || Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        rotate(cols[p], cols[q], c, s);
        rotate(v[p], v[q], c, s);
      }
    }
    if (!rotated) break;
  }
  const norms = cols.map((c) => Math.sqrt(dot(c, c)));
  const order = [...norms.keys()].sort((x, y) => norms[y] - norms[x]);
  const k = n;
  const u = new Float64Array(m * k);
  const s = new Float64Array(k);
  const vt = new Float64Array(k * n);
  order.forEach((j, rank) => {
    s[rank] = norms[j];
    for (let i = 0; i < m; i++) u[i * k + rank] = norms[j] > 0 ? cols[j][i] / norms[j] : 0;
    for (let i = 0; i < n; i++) vt[rank * n + i] = v[j][i];
  });
  return { u, s, vt, k };
}
