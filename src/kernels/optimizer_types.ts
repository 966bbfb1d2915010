/**
 * The optimizer kernels' interface: in-place AdamW and SGD updates over
 * flat float32 tensors and the sums/scaling of `clip_grad_norm_`, with a
 * WASM SIMD backend (`optimizer_wasm.ts`) and a TypeScript reference
 * (`src/train/optimizers.ts`).
 * @module
 */

/**
 * AdamW hyperparameters for one step.
 *
 * @example
 * ```ts
 * import type { AdamWStep } from "./optimizer_types.ts";
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
 * SGD hyperparameters for one step.
 *
 * @example
 * ```ts
 * import type { SgdStep } from "./optimizer_types.ts";
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
 * Optimizer math on flat float32 tensors, in place.
 *
 * @example
 * ```ts
 * import type { OptimizerKernels } from "./optimizer_types.ts";
 * const norm = (k: OptimizerKernels, gs: Float32Array[]) => Math.sqrt(gs.reduce((s, g) => s + k.sumSquares(g), 0));
 * ```
 */
export interface OptimizerKernels {
  readonly backend: "wasm-simd" | "js";
  /** One AdamW update of `p` with gradient `g`; `m`, `v` are its moments. */
  adamw(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, s: AdamWStep): void;
  /** One SGD update of `p`; `buf` is its momentum buffer (unused without momentum). */
  sgd(p: Float32Array, g: Float32Array, buf: Float32Array, s: SgdStep): void;
  /** `sum g[i]^2` (accumulated in float64). */
  sumSquares(g: Float32Array): number;
  /** `g[i] *= f`. */
  scale(g: Float32Array, f: number): void;
}
