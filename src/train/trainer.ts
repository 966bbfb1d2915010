/**
 * The training loop's step: HF Trainer's semantics on one adapter. Each
 * `step()` is one micro-batch; every `gradientAccumulationSteps` calls the
 * gradients (of the loss summed over kept label tokens, divided by the
 * label tokens of all micro-batches of the update, as the Trainer does for
 * Llama-style models) are clipped (`clip_grad_norm_`), the optimizer steps
 * and the schedule advances.
 * @module
 */
import { UnsupportedError } from "../errors.ts";
import type { TrainBatch } from "./batch.ts";
import { readCheckpoint, writeCheckpoint } from "./checkpoint.ts";
import { type FitExample, fitLoop, type FitOptions, type FitResult } from "./fit.ts";
import { clipGradNorm, loadOptimizer, type OptimizerKernels, totalNorm } from "./optimizers.ts";
import { LR_SCHEDULERS, lrFactor, type LrSchedulerType } from "./schedulers.ts";
import type { ResolvedTrainerOptions, TrainerState } from "./trainer_state.ts";

export type { ResolvedTrainerOptions, TrainerState };
import type { TrainableAdapter } from "./trainable.ts";

/**
 * Options of a trainer (HF `TrainingArguments` / torch.optim names in camelCase).
 *
 * @example
 * ```ts
 * import type { TrainerOptions } from "./trainer.ts";
 * const o: TrainerOptions = { optimizer: "adamw", learningRate: 1e-3, lrScheduler: "linear", warmupSteps: 2, totalSteps: 20 };
 * ```
 */
export interface TrainerOptions {
  /** `"adamw"` (default; torch.optim.AdamW, decoupled decay) or `"sgd"` (torch.optim.SGD). */
  optimizer?: "adamw" | "sgd";
  /** Base learning rate (default 5e-5, HF's). */
  learningRate?: number;
  /** AdamW betas (default [0.9, 0.999]). */
  betas?: [number, number];
  /** AdamW eps (default 1e-8). */
  eps?: number;
  /** Weight decay (default 0): decoupled for AdamW, added to the gradient for SGD, as torch. */
  weightDecay?: number;
  /** SGD momentum (default 0, as torch). */
  momentum?: number;
  /** SGD dampening (default 0). */
  dampening?: number;
  /** SGD Nesterov momentum (default false). */
  nesterov?: boolean;
  /** `clip_grad_norm_` over all trained tensors; `null` turns clipping off. Default 1.0. */
  maxGradNorm?: number | null;
  /** An update every N `step()` calls (default 1). */
  gradientAccumulationSteps?: number;
  /** `"constant"` (default), `"linear"` or `"cosine"` (transformers' schedules). */
  lrScheduler?: LrSchedulerType;
  /** Warmup updates (default 0). */
  warmupSteps?: number;
  /** Updates in the whole run (linear and cosine need it). */
  totalSteps?: number;
  /** Seed of the lora_dropout masks (default 0). */
  seed?: number;
  /** A folder written by `saveCheckpoint`: training continues exactly from it. */
  resumeFrom?: string;
}

/**
 * What `step()` reports.
 *
 * @example
 * ```ts
 * import type { StepResult } from "./trainer.ts";
 * const show = (r: StepResult) => `${r.loss.toFixed(4)} ${r.gradNorm ?? "-"}`;
 * ```
 */
export interface StepResult {
  /** This micro-batch's loss before the update (mean over its kept label tokens). */
  loss: number;
  /** Total gradient L2 norm before clipping, on the calls that update; undefined otherwise. */
  gradNorm?: number;
  /** Whether this call updated the weights. */
  updated: boolean;
  /** The learning rate this update used (the current one when it did not update). */
  learningRate: number;
  /** Label tokens this micro-batch scored. */
  tokens: number;
}

function bad(key: string, why: string): never {
  throw new UnsupportedError(`trainer option ${key} ${why}`, { key });
}

/**
 * Checks trainer options and fills in the defaults.
 *
 * @throws {UnsupportedError} naming the option.
 * @example
 * ```ts
 * import { resolveTrainerOptions } from "./trainer.ts";
 * console.log(resolveTrainerOptions({}).learningRate); // 0.00005
 * ```
 */
export function resolveTrainerOptions(o: TrainerOptions): ResolvedTrainerOptions {
  const num = (key: keyof TrainerOptions, v: unknown, fallback: number, min = 0): number => {
    if (v === undefined) return fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || v < min) bad(key, `must be a finite number >= ${min}`);
    return v;
  };
  const optimizer = o.optimizer ?? "adamw";
  if (optimizer !== "adamw" && optimizer !== "sgd") bad("optimizer", `must be "adamw" or "sgd"`);
  const betas = o.betas ?? [0.9, 0.999];
  if (!Array.isArray(betas) || betas.length !== 2 || betas.some((b) => !(b >= 0 && b < 1))) {
    bad("betas", "must be two numbers in [0, 1)");
  }
  const accum = o.gradientAccumulationSteps ?? 1;
  if (!Number.isInteger(accum) || accum < 1) bad("gradientAccumulationSteps", "must be a positive integer");
  const lrScheduler = o.lrScheduler ?? "constant";
  if (!LR_SCHEDULERS.includes(lrScheduler)) bad("lrScheduler", `must be one of ${LR_SCHEDULERS.join(", ")}`);
  const warmupSteps = num("warmupSteps", o.warmupSteps, 0);
  if (!Number.isInteger(warmupSteps)) bad("warmupSteps", "must be an integer");
  if (lrScheduler !== "constant") lrFactor(lrScheduler, 0, 0, o.totalSteps);
  const maxGradNorm = o.maxGradNorm === null ? null : num("maxGradNorm", o.maxGradNorm, 1.0);
  const momentum = num("momentum", o.momentum, 0);
  const dampening = num("dampening", o.dampening, 0);
  const nesterov = o.nesterov ?? false;
  if (nesterov && (momentum <= 0 || dampening !== 0)) bad("nesterov", "needs momentum > 0 and zero dampening");
  return {
    optimizer,
    learningRate: num("learningRate", o.learningRate, 5e-5),
    betas: [betas[0], betas[1]],
    eps: num("eps", o.eps, 1e-8),
    weightDecay: num("weightDecay", o.weightDecay, 0),
    momentum,
    dampening,
    nesterov,
    maxGradNorm,
    gradientAccumulationSteps: accum,
    lrScheduler,
    warmupSteps,
    totalSteps: o.totalSteps,
    seed: num("seed", o.seed, 0) >>> 0,
  };
}

/**
 * Trains one adapter. Made by `PeftModel.trainer()`.
 *
 * @example
 * ```ts
 * import type { Trainer } from "./trainer.ts";
 * declare const trainer: Trainer;
 * const { loss, gradNorm } = await trainer.step({ inputIds: [[1, 72, 105, 2]] });
 * ```
 */
export class Trainer {
  /** The options in force, with every default filled in. */
  readonly options: ResolvedTrainerOptions;
  readonly #adapter: TrainableAdapter;
  readonly #afterUpdate: () => Promise<void>;
  readonly #config: Readonly<Record<string, unknown>>;
  #state: TrainerState;
  /** Settles once the optimizer kernels are loaded and a `resumeFrom` checkpoint is read. */
  readonly #ready: Promise<void>;
  #kernels?: OptimizerKernels;

  /** @internal Use `PeftModel.trainer()`. */
  constructor(
    adapter: TrainableAdapter,
    options: ResolvedTrainerOptions & { resumeFrom?: string; kernels?: OptimizerKernels },
    /** The adapter's raw config, written with checkpoints. */
    config: Readonly<Record<string, unknown>>,
    afterUpdate: () => Promise<void>,
  ) {
    this.#adapter = adapter;
    const { resumeFrom, kernels: _kernels, ...resolved } = options;
    this.options = resolved;
    this.#config = config;
    this.#afterUpdate = afterUpdate;
    this.#state = { globalStep: 0, calls: 0, slots: [], accumulated: undefined, accumulatedTokens: 0, pending: 0 };
    const kernels = (options.kernels ? Promise.resolve(options.kernels) : loadOptimizer()).then((k) => {
      this.#kernels = k;
    });
    this.#ready = Promise.all([kernels, resumeFrom === undefined ? undefined : this.#resume(resumeFrom)]).then(
      () => {},
    );
    this.#ready.catch(() => {}); // reported by the first step() or saveCheckpoint()
  }

  async #resume(dir: string): Promise<void> {
    this.#state = await readCheckpoint(dir, this.#adapter.params.tensors, this.options);
    this.#adapter.version++;
    await this.#afterUpdate();
  }

  /**
   * Writes the adapter (as PEFT saves it), the optimizer state, the
   * accumulated gradients and the step counters to a folder; pass it as
   * `resumeFrom` to continue exactly.
   */
  async saveCheckpoint(dir: string): Promise<void> {
    await this.#ready;
    await writeCheckpoint(
      dir,
      this.#adapter.params.tensors,
      this.#adapter.savedExtras,
      this.#config,
      this.#state,
      this.options,
    );
  }

  /** Optimizer updates done so far (HF's `global_step`). */
  get globalStep(): number {
    return this.#state.globalStep;
  }

  /** The learning rate the next update uses. */
  get learningRate(): number {
    const o = this.options;
    return o.learningRate * lrFactor(o.lrScheduler, this.#state.globalStep, o.warmupSteps, o.totalSteps);
  }

  /** Which optimizer kernels run the updates (`"wasm-simd"` or `"js"`; known after the first step). */
  get optimizerBackend(): string | undefined {
    return this.#kernels?.backend;
  }

  /**
   * The trained adapter.
   * @ignore internal: read by `PeftModel.savePretrained` and checkpoints.
   */
  get adapter(): TrainableAdapter {
    return this.#adapter;
  }

  /**
   * The common loop: `epochs` passes over `examples` in right-padded
   * batches of `batchSize`, one `step()` each (so accumulation and the
   * schedule apply), reporting progress; stops between steps when `signal` aborts.
   */
  fit(examples: readonly FitExample[], options: FitOptions = {}): Promise<FitResult> {
    return fitLoop(
      { step: (b) => this.step(b), flush: () => this.flush(), globalStep: () => this.globalStep },
      examples,
      options,
      this.options.seed,
    );
  }

  /**
   * Applies the gradients accumulated so far as one update, when fewer than
   * `gradientAccumulationSteps` micro-batches are pending (HF Trainer does
   * this at the end of each epoch; `fit` calls it there). Returns the grad
   * norm, or undefined when nothing was pending.
   */
  async flush(): Promise<number | undefined> {
    await this.#ready;
    if (this.#state.pending === 0) return undefined;
    const gradNorm = this.#update(this.learningRate);
    await this.#afterUpdate();
    return gradNorm;
  }

  /**
   * One micro-batch: forward, backward, and on every
   * `gradientAccumulationSteps`-th call the optimizer update.
   */
  async step(batch: TrainBatch): Promise<StepResult> {
    await this.#ready;
    const s = this.#state;
    const seed = (this.options.seed + Math.imul(s.calls + 1, 0x9e3779b1)) >>> 0;
    const run = await this.#adapter.forwardBackward(batch, seed);
    if (run.labelTokens === 0) {
      throw new UnsupportedError("the batch has no label token to learn from (all labels -100 after the shift)", {
        key: "labels",
      });
    }
    s.calls++;
    if (!s.accumulated) s.accumulated = run.grads;
    else {s.accumulated.forEach((acc, i) => {
        const g = run.grads[i];
        for (let j = 0; j < acc.length; j++) acc[j] += g[j];
      });}
    s.accumulatedTokens += run.labelTokens;
    s.pending++;
    const loss = run.lossSum / run.labelTokens;
    const learningRate = this.learningRate;
    if (s.pending < this.options.gradientAccumulationSteps) {
      return { loss, updated: false, learningRate, tokens: run.labelTokens };
    }
    const gradNorm = this.#update(learningRate);
    await this.#afterUpdate();
    return { loss, gradNorm, updated: true, learningRate, tokens: run.labelTokens };
  }

  #update(lr: number): number {
    const s = this.#state;
    const o = this.options;
    const grads = s.accumulated!;
    const scale = 1 / s.accumulatedTokens;
    const k = this.#kernels!;
    for (const g of grads) k.scale(g, scale);
    const gradNorm = o.maxGradNorm === null ? totalNorm(k, grads) : clipGradNorm(k, grads, o.maxGradNorm);
    const tensors = this.#adapter.params.tensors;
    const first = s.slots.length === 0;
    if (first) {
      s.slots = tensors.map((t) =>
        o.optimizer === "adamw" ? [new Float32Array(t.data.length), new Float32Array(t.data.length)] : [
          new Float32Array(t.data.length),
        ]
      );
    }
    const step = s.globalStep + 1;
    tensors.forEach((t, i) => {
      if (o.optimizer === "adamw") {
        const [m, v] = s.slots[i];
        k.adamw(t.data, grads[i], m, v, {
          lr,
          beta1: o.betas[0],
          beta2: o.betas[1],
          eps: o.eps,
          weightDecay: o.weightDecay,
          step,
        });
      } else {
        k.sgd(t.data, grads[i], s.slots[i][0], {
          lr,
          momentum: o.momentum,
          dampening: o.dampening,
          nesterov: o.nesterov,
          weightDecay: o.weightDecay,
          first,
        });
      }
    });
    s.globalStep = step;
    s.accumulated = undefined;
    s.accumulatedTokens = 0;
    s.pending = 0;
    this.#adapter.version++;
    return gradNorm;
  }
}
