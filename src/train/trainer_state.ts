/**
 * The trainer's resolved options and the state a checkpoint stores (kept
 * apart from the trainer so checkpoints can read and write them).
 * @module
 */
import type { LrSchedulerType } from "./schedulers.ts";

/**
 * Trainer options with every default filled in.
 *
 * @example
 * ```ts
 * import type { ResolvedTrainerOptions } from "./trainer_state.ts";
 * const isAdam = (o: ResolvedTrainerOptions) => o.optimizer === "adamw";
 * ```
 */
export interface ResolvedTrainerOptions {
  /** `torch.optim.AdamW` or `torch.optim.SGD`. */
  optimizer: "adamw" | "sgd";
  /** Peak learning rate (before the schedule). */
  learningRate: number;
  /** AdamW's moment decay rates. */
  betas: [number, number];
  /** AdamW's denominator term. */
  eps: number;
  /** Decoupled weight decay (AdamW) or L2 decay (SGD). */
  weightDecay: number;
  /** SGD momentum. */
  momentum: number;
  /** SGD dampening. */
  dampening: number;
  /** SGD Nesterov momentum. */
  nesterov: boolean;
  /** `clip_grad_norm_`'s max norm; `null` = no clipping. */
  maxGradNorm: number | null;
  /** `step()` calls per optimizer update. */
  gradientAccumulationSteps: number;
  /** transformers' schedule name. */
  lrScheduler: LrSchedulerType;
  /** Linear warmup updates. */
  warmupSteps: number;
  /** Updates the schedule decays over (linear, cosine). */
  totalSteps?: number;
  /** Seed of the `lora_dropout` masks (and `fit`'s shuffling). */
  seed: number;
}

/**
 * Trainer state that a checkpoint stores and a resume restores.
 *
 * @example
 * ```ts
 * import type { TrainerState } from "./trainer.ts";
 * const fresh: Pick<TrainerState, "globalStep" | "calls"> = { globalStep: 0, calls: 0 };
 * ```
 */
export interface TrainerState {
  /** Optimizer updates done. */
  globalStep: number;
  /** `step()` calls done (seeds each call's dropout masks). */
  calls: number;
  /** Per trained tensor: AdamW's exp_avg/exp_avg_sq or SGD's momentum buffer (empty before the first update). */
  slots: Float32Array[][];
  /** Gradients accumulated since the last update (sums, not yet divided), and their label tokens. */
  accumulated: Float32Array[] | undefined;
  accumulatedTokens: number;
  /** Micro-batches accumulated since the last update. */
  pending: number;
}
