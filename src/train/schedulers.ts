/**
 * Learning-rate schedules as transformers' `get_constant_schedule(_with_warmup)`,
 * `get_linear_schedule_with_warmup` and `get_cosine_schedule_with_warmup`
 * (half a cosine): the factor applied to the base rate after `step` updates.
 * @module
 */
import { UnsupportedError } from "../errors.ts";

/**
 * A schedule name.
 *
 * @example
 * ```ts
 * import type { LrSchedulerType } from "./schedulers.ts";
 * const kind: LrSchedulerType = "cosine";
 * ```
 */
export type LrSchedulerType = "constant" | "linear" | "cosine";

/** Schedules by name. */
export const LR_SCHEDULERS: readonly LrSchedulerType[] = ["constant", "linear", "cosine"];

/**
 * The learning-rate factor after `step` updates.
 *
 * @throws {UnsupportedError} for an unknown schedule or linear/cosine without `totalSteps`.
 * @example
 * ```ts
 * import { lrFactor } from "./schedulers.ts";
 * console.log(lrFactor("linear", 0, 2, 10), lrFactor("linear", 6, 2, 10)); // 0 0.5
 * ```
 */
export function lrFactor(kind: LrSchedulerType, step: number, warmupSteps = 0, totalSteps?: number): number {
  if (!LR_SCHEDULERS.includes(kind)) {
    throw new UnsupportedError(`lrScheduler ${JSON.stringify(kind)} is not one of ${LR_SCHEDULERS.join(", ")}`, {
      key: "lrScheduler",
    });
  }
  if (step < warmupSteps) return step / Math.max(1, warmupSteps);
  if (kind === "constant") return 1;
  if (totalSteps === undefined || !Number.isInteger(totalSteps) || totalSteps <= 0) {
    throw new UnsupportedError(`lrScheduler "${kind}" needs totalSteps, a positive integer`, { key: "totalSteps" });
  }
  if (kind === "linear") return Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmupSteps));
  const progress = (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 2 * 0.5 * progress)));
}
