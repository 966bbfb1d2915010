/**
 * {@linkcode BatchRouter}: which requests of a pool share a decode batch.
 *
 * - Requests on the base share one batch on the base's session; once the
 *   pool has a dynamic model on that base they run in its batch as
 *   `"__base__"` rows instead (the base runs on that branched session
 *   anyway, every branch off: one copy of the weights), so base and adapter
 *   requests share one loop whichever came first, rather than two loops
 *   taking turns on one session.
 * - In dynamic mode, requests on any adapters share one batch on the shared
 *   branched session, one adapter per row (`adapterNames`; a batch whose
 *   rows all have one adapter runs with `adapter`, as that adapter alone).
 * - In merged mode each adapter has its own merged session, so requests on
 *   the same adapter share a batch there; different adapters cannot share
 *   rows. Nor can a LoRA on parameters (`target_parameters`) in dynamic mode,
 *   whose mixed batches PEFT refuses: its requests share a batch of their own.
 * - Prompt-learning adapters (their virtual tokens make rows longer), models
 *   on WebGPU (their cache stays on the GPU, which rebuilding a batch's
 *   cache does not handle yet), decoders without a KV cache or an
 *   `attention_mask`, and `maxBatch: 1` run each request alone, as before.
 *
 * A base request runs alone on the session a base with a dynamic model
 * runs on, the branched one, so as a row there its outputs stay its own.
 * @module
 */
import { type CausalLm, type DecoderLayout, describeDecoder } from "../generate/mod.ts";
import type { BaseModel } from "../model/base_model.ts";
import type { PeftModel } from "../model/peft_model.ts";
import { isPromptLearning } from "../tuners/prompt_learning/config.ts";
import { targetParametersOf } from "../lora/param_targets.ts";
import { DecodeScheduler, type SchedulerOptions, type SchedulerStats } from "./decode_scheduler.ts";
import type { Lease } from "./lease.ts";

/** A base row's adapter name (PEFT's `__base__`); base batches run without adapter options. */
const BASE_ROW = "__base__";

/**
 * A scheduler a lease's generation runs on, with the name of its row's adapter.
 *
 * @example
 * ```ts
 * import type { BatchSeat } from "./batch_router.ts";
 * declare const seat: BatchSeat;
 * console.log(seat.adapter, seat.scheduler.running);
 * ```
 */
export interface BatchSeat {
  readonly scheduler: DecodeScheduler;
  /** The row's adapter key (`"__base__"` for the base). */
  readonly adapter: string;
}

/** Whether a decoder can run rows of different lengths in one batch with a kept cache. */
function batchLayout(lm: CausalLm): DecoderLayout | undefined {
  try {
    const layout = describeDecoder(lm);
    return layout.cache.length > 0 && layout.attentionMask ? layout : undefined;
  } catch {
    return undefined; // not a decoder generation can drive: the alone path reports why
  }
}

/**
 * The schedulers of one pool, created on first use and dropped when idle.
 *
 * @example
 * ```ts
 * import { BatchRouter } from "./batch_router.ts";
 * import type { Lease } from "./lease.ts";
 * declare const lease: Lease;
 * const router = new BatchRouter(8);
 * const seat = router.seatFor(lease); // undefined: run alone
 * ```
 */
export class BatchRouter {
  /** Rows per batch at most. */
  readonly maxBatch: number;
  /** Runs of every scheduler so far, added up. */
  readonly stats: SchedulerStats = { prefillRuns: 0, decodeRuns: 0, maxRows: 0 };
  readonly #schedulers = new Map<CausalLm, Map<string, DecodeScheduler>>();
  readonly #dynamicModel: () => PeftModel | undefined;

  /**
   * A router whose batches hold at most `maxBatch` rows (1: every request runs alone); `dynamicModel` gives the
   * pool's model now, if any, where base requests join its batch.
   */
  constructor(maxBatch: number, dynamicModel: () => PeftModel | undefined = () => undefined) {
    this.maxBatch = maxBatch;
    this.#dynamicModel = dynamicModel;
  }

  /** Where a lease's generation runs batched, or undefined to run it alone. */
  seatFor(lease: Lease): BatchSeat | undefined {
    if (this.maxBatch <= 1) return undefined;
    const lm = lease.model;
    const key = lease.adapter;
    if (key === null) {
      if ((lm as BaseModel).device === "webgpu") return undefined;
      const shared = this.#dynamicBatchOn(lm as BaseModel);
      if (shared) return { scheduler: shared, adapter: BASE_ROW };
      const dynamic = this.#dynamicModel();
      if (dynamic?.mode === "dynamic" && dynamic.base === lm) return this.#mixedSeat(dynamic, BASE_ROW);
      return this.#seat(lm, BASE_ROW, BASE_ROW, () => undefined);
    }
    const model = lm as PeftModel;
    if (model.base.device === "webgpu" || isPromptLearning(model.peftConfig[key])) return undefined;
    // A LoRA on parameters cannot share rows with other adapters (PEFT refuses such mixed batches): its own batch.
    if (model.mode === "merged" || targetParametersOf(model.peftConfig[key]) !== null) {
      return this.#seat(lm, key, key, () => ({ adapter: key }));
    }
    return this.#mixedSeat(model, key);
  }

  /** A row in the dynamic model's one batch of any adapters (and base rows). */
  #mixedSeat(model: PeftModel, adapter: string): BatchSeat | undefined {
    return this.#seat(
      model,
      "*",
      adapter,
      (names) =>
        names.every((name) => name === names[0])
          ? { adapter: names[0] === BASE_ROW ? null : names[0] }
          : { adapterNames: names },
    );
  }

  /** The running batch of a dynamic model on `base`, if any. */
  #dynamicBatchOn(base: BaseModel): DecodeScheduler | undefined {
    for (const [lm, groups] of this.#schedulers) {
      const model = lm as Partial<PeftModel>;
      if (model.base === base && model.mode === "dynamic" && groups.has("*")) return groups.get("*");
    }
    return undefined;
  }

  #seat(
    lm: CausalLm,
    group: string,
    adapter: string,
    runOptions: SchedulerOptions["runOptions"],
  ): BatchSeat | undefined {
    let byKey = this.#schedulers.get(lm);
    let scheduler = byKey?.get(group);
    if (!scheduler) {
      const layout = batchLayout(lm);
      if (!layout) return undefined;
      const created: DecodeScheduler = new DecodeScheduler(lm, layout, {
        maxBatch: this.maxBatch,
        runOptions,
        stats: this.stats,
        onIdle: () => {
          const held = this.#schedulers.get(lm);
          if (held?.get(group) !== created) return;
          held.delete(group);
          if (held.size === 0) this.#schedulers.delete(lm);
        },
      });
      scheduler = created;
      if (!byKey) this.#schedulers.set(lm, byKey = new Map());
      byKey.set(group, scheduler);
    }
    return { scheduler, adapter };
  }
}
