/**
 * `trainer.fit`: the common loop over examples for some epochs: seeded
 * shuffling per epoch, right-padded batches (mask 0 and label -100 on
 * padding), a progress callback with tokens/s, and an `AbortSignal`.
 * @module
 */
import { UnsupportedError } from "../errors.ts";
import { createRng } from "../generate/rng.ts";
import { IGNORE_INDEX, type TrainBatch } from "./batch.ts";

/**
 * One training example: token ids, optionally with labels (`-100` where not scored).
 *
 * @example
 * ```ts
 * import type { FitExample } from "./fit.ts";
 * const examples: FitExample[] = [[1, 72, 105, 2], { inputIds: [1, 5, 6], labels: [-100, 5, 6] }];
 * ```
 */
export type FitExample = number[] | { inputIds: number[]; labels?: number[] };

/**
 * Progress after each `step()` of the loop.
 *
 * @example
 * ```ts
 * import type { FitProgress } from "./fit.ts";
 * const log = (p: FitProgress) => console.log(p.step, p.loss.toFixed(3), p.tokensPerSecond.toFixed(0));
 * ```
 */
export interface FitProgress {
  /** Optimizer updates done. */
  step: number;
  /** The epoch the micro-batch belongs to, from 0. */
  epoch: number;
  /** This micro-batch's loss. */
  loss: number;
  /** Total gradient norm before clipping, on the calls that update. */
  gradNorm?: number;
  /** Learning rate this micro-batch's update uses. */
  learningRate: number;
  /** Tokens (ids fed, padding excluded) per second since the loop started. */
  tokensPerSecond: number;
}

/**
 * Options of `trainer.fit`.
 *
 * @example
 * ```ts
 * import type { FitOptions } from "./fit.ts";
 * const options: FitOptions = { epochs: 2, batchSize: 4, onProgress: (p) => console.log(p.loss) };
 * ```
 */
export interface FitOptions {
  /** Passes over the examples (default 1). */
  epochs?: number;
  /** Examples per micro-batch (default 1). */
  batchSize?: number;
  /** Id written on padding (default 0; masked and never scored). */
  padTokenId?: number;
  /** Shuffle the examples each epoch (default true), seeded by the trainer's seed. */
  shuffle?: boolean;
  /** Called after every micro-batch. */
  onProgress?: (progress: FitProgress) => void;
  /** Stops the loop between steps; `fit` then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * What `fit` returns.
 *
 * @example
 * ```ts
 * import type { FitResult } from "./fit.ts";
 * const mean = (r: FitResult) => r.meanLoss;
 * ```
 */
export interface FitResult {
  /** Optimizer updates done in this call. */
  steps: number;
  /** Mean of the micro-batch losses. */
  meanLoss: number;
  /** Tokens (padding excluded) per second over the call. */
  tokensPerSecond: number;
}

const idsOf = (e: FitExample) => (Array.isArray(e) ? e : e.inputIds);

/**
 * Right-pads examples into one batch of `length` tokens (default: the longest example's).
 *
 * @example
 * ```ts
 * import { padBatch } from "./fit.ts";
 * console.log(padBatch([[1, 2, 3], [4]]).labels); // [[1, 2, 3], [4, -100, -100]]
 * ```
 */
export function padBatch(examples: readonly FitExample[], padTokenId = 0, length?: number): TrainBatch {
  const rows = examples.map((e) => (Array.isArray(e) ? { inputIds: e, labels: e } : e));
  length ??= Math.max(...rows.map((r) => r.inputIds.length));
  return {
    inputIds: rows.map((r) => [...r.inputIds, ...Array(length - r.inputIds.length).fill(padTokenId)]),
    attentionMask: rows.map((r) => [...r.inputIds.map(() => 1), ...Array(length - r.inputIds.length).fill(0)]),
    labels: rows.map((r) => [...(r.labels ?? r.inputIds), ...Array(length - r.inputIds.length).fill(IGNORE_INDEX)]),
  };
}

/**
 * Runs the loop with a step function (the trainer's `step`).
 *
 * @example
 * ```ts
 * import { fitLoop } from "./fit.ts";
 * declare const trainer: import("./trainer.ts").Trainer;
 * const loop = { step: (b: import("./batch.ts").TrainBatch) => trainer.step(b), flush: () => trainer.flush(), globalStep: () => trainer.globalStep };
 * await fitLoop(loop, [[1, 2, 3]], { epochs: 1 }, 0);
 * ```
 */
export async function fitLoop(
  loop: {
    step: (batch: TrainBatch) => Promise<{ loss: number; gradNorm?: number; learningRate: number }>;
    /** Applies a partial accumulation (at each epoch's end, as HF Trainer). */
    flush: () => Promise<number | undefined>;
    globalStep: () => number;
  },
  examples: readonly FitExample[],
  options: FitOptions,
  seed: number,
): Promise<FitResult> {
  const epochs = options.epochs ?? 1;
  const batchSize = options.batchSize ?? 1;
  if (!Number.isInteger(epochs) || epochs < 1) {
    throw new UnsupportedError("epochs must be a positive integer", { key: "epochs" });
  }
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new UnsupportedError("batchSize must be a positive integer", { key: "batchSize" });
  }
  if (examples.length === 0) throw new UnsupportedError("fit needs at least one example", { key: "examples" });
  // One padded length for every batch: a training session is built per batch shape, so a shape per
  // batch would rebuild sessions; padding is masked and never scored, so the numbers are the same.
  const { step, flush, globalStep } = loop;
  const length = Math.max(...examples.map((e) => idsOf(e).length));
  const start = performance.now();
  const startStep = globalStep();
  let tokens = 0;
  let losses = 0;
  let calls = 0;
  const rng = createRng(seed);
  for (let epoch = 0; epoch < epochs; epoch++) {
    const order = [...examples.keys()];
    if (options.shuffle ?? true) {
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(rng.uniform() * (i + 1));
        [order[i], order[j]] = [order[j], order[i]];
      }
    }
    for (let i = 0; i < order.length; i += batchSize) {
      options.signal?.throwIfAborted();
      const batch = padBatch(order.slice(i, i + batchSize).map((k) => examples[k]), options.padTokenId, length);
      const r = await step(batch);
      tokens += batch.attentionMask!.flat().reduce((a, b) => a + b, 0);
      losses += r.loss;
      calls++;
      const seconds = (performance.now() - start) / 1000;
      options.onProgress?.({
        step: globalStep(),
        epoch,
        loss: r.loss,
        gradNorm: r.gradNorm,
        learningRate: r.learningRate,
        tokensPerSecond: tokens / Math.max(seconds, 1e-9),
      });
    }
    await flush();
  }
  const seconds = (performance.now() - start) / 1000;
  return {
    steps: globalStep() - startStep,
    meanLoss: losses / calls,
    tokensPerSecond: tokens / Math.max(seconds, 1e-9),
  };
}
