/**
 * Optimizer updates in TypeScript: the reference the WASM kernels are
 * tested against, and the fallback where WASM is not available. Each
 * follows PyTorch's single-tensor update (torch.optim.AdamW with decoupled
 * weight decay, torch.optim.SGD with momentum/dampening/nesterov) and
 * `torch.nn.utils.clip_grad_norm_`, in float32 storage.
 * @module
 */

/**
 * AdamW hyperparameters for one step.
 *
 * @example
 * ```ts
 * import type { AdamWStep } from "./optimizers.ts";
 * const s: AdamWStep = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1 };
 * ```
 */
export interface AdamWStep {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count after this update (bias corrections use it). */
  step: number;
}

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
 * SGD hyperparameters for one step.
 *
 * @example
 * ```ts
 * import type { SgdStep } from "./optimizers.ts";
 * const s: SgdStep = { lr: 0.1, momentum: 0.9, dampening: 0, nesterov: false, weightDecay: 0, first: true };
 * ```
 */
export interface SgdStep {
  lr: number;
  momentum: number;
  dampening: number;
  nesterov: boolean;
  weightDecay: number;
  /** The first update: the momentum buffer starts as the gradient (PyTorch). */
  first: boolean;
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
 * Total L2 norm over all tensors (the norm of the per-tensor norms, as `clip_grad_norm_`).
 *
 * @example
 * ```ts
 * import { totalNorm } from "./optimizers.ts";
 * console.log(totalNorm([new Float32Array([3]), new Float32Array([4])])); // 5
 * ```
 */
export function totalNorm(grads: readonly Float32Array[]): number {
  let sum = 0;
  for (const g of grads) {
    let s = 0;
    for (let i = 0; i < g.length; i++) s += g[i] * g[i];
    sum += s;
  }
  return Math.sqrt(sum);
}

/**
 * `clip_grad_norm_`: scales every gradient by `min(1, maxNorm / (norm + 1e-6))`
 * in place and returns the norm before clipping.
 *
 * @example
 * ```ts
 * import { clipGradNorm } from "./optimizers.ts";
 * const g = [new Float32Array([3, 4])];
 * console.log(clipGradNorm(g, 1), g[0]); // 5 Float32Array [~0.6, ~0.8]
 * ```
 */
export function clipGradNorm(grads: readonly Float32Array[], maxNorm: number): number {
  const norm = totalNorm(grads);
  const coef = Math.min(1, maxNorm / (norm + 1e-6));
  if (coef < 1) { for (const g of grads) for (let i = 0; i < g.length; i++) g[i] *= coef; }
  return norm;
}
