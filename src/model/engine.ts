/**
 * How adapters are executed. An engine is an immutable snapshot: adding or
 * removing an adapter returns a new engine, so a run that started on the old
 * one finishes on it undisturbed (no shared mutable state between runs).
 * @module
 */
import type { ModelSession } from "./model_session.ts";
import type { LoadedAdapter } from "./adapter.ts";
import type { Feeds } from "./base_model.ts";

/** What a run needs: the session, and extra feeds (adapter tensors in dynamic mode; a promise while they upload to a GPU). */
export interface Runnable {
  session: ModelSession;
  feeds: Feeds | Promise<Feeds>;
  /**
   * Rewrites the caller's feeds before the run (prompt learning: the prompt,
   * longer mask and positions; activated LoRA: its mask, from `promptIds` when given).
   */
  prepare?(feeds: Feeds, promptIds?: readonly (readonly number[])[]): Feeds;
}

/**
 * A loaded adapter and its weight in the sum of deltas (PEFT's
 * `add_weighted_adapter` weights; 1 for a plain adapter).
 *
 * @example
 * ```ts
 * import type { WeightedAdapter } from "./engine.ts";
 * import { loadBaseModel } from "./base_model.ts";
 * import { readAdapter } from "./adapter.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const adapter = await readAdapter(base.weights, "tests/fixtures/llama-tiny-lora-qv", "qv");
 * const half: WeightedAdapter = { adapter, weight: 0.5 };
 * ```
 */
export interface WeightedAdapter {
  adapter: LoadedAdapter;
  weight: number;
}

/** Executes a base model with any set of its loaded adapters. */
export interface AdapterEngine {
  /** The session and extra feeds for running with these adapters (none: the base). */
  runnable(active: readonly WeightedAdapter[]): Runnable;
  /**
   * A mixed batch: row `i` of every batched input runs with `rows[i]` (empty:
   * the base), all in one session. Absent where the engine cannot (merged mode).
   */
  rowsRunnable?(rows: readonly (readonly WeightedAdapter[])[]): Runnable;
  /** A new engine that can also run `adapter`. */
  add(adapter: LoadedAdapter): Promise<AdapterEngine>;
  /** A new engine without `name`, and the sessions that only the old one used (to release once idle). */
  remove(name: string): { engine: AdapterEngine; retired: ModelSession[] };
  /** Sessions this engine owns (not the base's). */
  sessions(): ModelSession[];
}
