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
  optimizer: "adamw" | "sgd";
  learningRate: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  momentum: number;
  dampening: number;
  nesterov: boolean;
  maxGradNorm: number | null;
  gradientAccumulationSteps: number;
  lrScheduler: LrSchedulerType;
  warmupSteps: number;
  totalSteps?: number;
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
