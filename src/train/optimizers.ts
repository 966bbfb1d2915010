/**
 * Optimizer updates in TypeScript: the reference the WASM kernels are
 * tested against, and the fallback where WASM is not available. Each
 * follows PyTorch's single-tensor update (torch.optim.AdamW with decoupled
 * weight decay, torch.optim.SGD with momentum/dampening/nesterov) and
 * `torch.nn.utils.clip_grad_norm_`, in float32 storage.
 * @module
 */
import type { AdamWStep, OptimizerKernels, SgdStep } from "../kernels/optimizer_types.ts";
import { createWasmOptimizer } from "../kernels/optimizer_wasm.ts";
import { simdSupported } from "../kernels/simd.ts";

export type { AdamWStep, OptimizerKernels, SgdStep };

/**
 * One AdamW update in place: `p *= 1 - lr·wd`, moments updated, then
 * `p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + eps)`.
 *
 * @example
 * ```ts
 * import { adamwUpdate } from "./optimizers.ts";
 * const p = new Float32Array([1]), m = new Float32Array(1), v = new Float32Array(1);
 * adamwUpdate(p, new Float32Array([0.5]), m, v, { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 });
 * console.log(p[0]); // ~0.9
 * ```
 */
export function adamwUpdate(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, s: AdamWStep): void {
  const decay = 1 - s.lr * s.weightDecay;
  const bc1 = 1 - Math.pow(s.beta1, s.step);
  const bc2Sqrt = Math.sqrt(1 - Math.pow(s.beta2, s.step));
  const stepSize = s.lr / bc1;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i];
    m[i] = m[i] + (gi - m[i]) * (1 - s.beta1);
    v[i] = v[i] * s.beta2 + (1 - s.beta2) * gi * gi;
    p[i] = p[i] * decay - stepSize * m[i] / (Math.sqrt(v[i]) / bc2Sqrt + s.eps);
  }
}

/**
 * One SGD update in place (`buf` is the momentum buffer, unused without momentum).
 *
 * @example
 * ```ts
 * import { sgdUpdate } from "./optimizers.ts";
 * const p = new Float32Array([1]);
 * sgdUpdate(p, new Float32Array([2]), new Float32Array(1), { lr: 0.1, momentum: 0, dampening: 0, nesterov: false, weightDecay: 0, first: true });
 * console.log(p[0]); // 0.8
 * ```
 */
export function sgdUpdate(p: Float32Array, g: Float32Array, buf: Float32Array, s: SgdStep): void {
  for (let i = 0; i < p.length; i++) {
    let d = s.weightDecay !== 0 ? g[i] + s.weightDecay * p[i] : g[i];
    if (s.momentum !== 0) {
      buf[i] = s.first ? d : buf[i] * s.momentum + (1 - s.dampening) * d;
      d = s.nesterov ? d + s.momentum * buf[i] : buf[i];
    }
    p[i] = p[i] - s.lr * d;
  }
}

/**
 * The TypeScript optimizer kernels (the reference the WASM ones are tested against).
 *
 * @example
 * ```ts
 * import { referenceOptimizer } from "./optimizers.ts";
 * console.log(referenceOptimizer.sumSquares(new Float32Array([3, 4]))); // 25
 * ```
 */
export const referenceOptimizer: OptimizerKernels = {
  backend: "js",
  adamw: adamwUpdate,
  sgd: sgdUpdate,
  sumSquares(g) {
    let s = 0;
    for (let i = 0; i < g.length; i++) s += g[i] * g[i];
    return s;
  },
  scale(g, f) {
    for (let i = 0; i < g.length; i++) g[i] *= f;
  },
};

/**
 * The WASM SIMD optimizer kernels where the runtime has SIMD128, else the TypeScript ones.
 *
 * @example
 * ```ts
 * import { loadOptimizer } from "./optimizers.ts";
 * console.log((await loadOptimizer()).backend); // "wasm-simd"
 * ```
 */
export async function loadOptimizer(): Promise<OptimizerKernels> {
  return simdSupported() ? await createWasmOptimizer() : referenceOptimizer;
}

/**
 * Total L2 norm over all tensors (the norm of the per-tensor norms, as `clip_grad_norm_`).
 *
 * @example
 * ```ts
 * import { referenceOptimizer, totalNorm } from "./optimizers.ts";
 * console.log(totalNorm(referenceOptimizer, [new Float32Array([3]), new Float32Array([4])])); // 5
 * ```
 */
export function totalNorm(kernels: OptimizerKernels, grads: readonly Float32Array[]): number {
  return Math.sqrt(grads.reduce((sum, g) => sum + kernels.sumSquares(g), 0));
}

/**
 * `clip_grad_norm_`: scales every gradient by `min(1, maxNorm / (norm + 1e-6))`
 * in place and returns the norm before clipping.
 *
 * @example
 * ```ts
 * import { clipGradNorm, referenceOptimizer } from "./optimizers.ts";
 * const g = [new Float32Array([3, 4])];
 * console.log(clipGradNorm(referenceOptimizer, g, 1), g[0]); // 5 Float32Array [~0.6, ~0.8]
 * ```
 */
export function clipGradNorm(kernels: OptimizerKernels, grads: readonly Float32Array[], maxNorm: number): number {
  const norm = totalNorm(kernels, grads);
  const coef = Math.min(1, maxNorm / (norm + 1e-6));
  if (coef < 1) { for (const g of grads) kernels.scale(g, coef); }
  return norm;
}
