/**
 * A batch of prompts run through a decoder together: prompts of different
 * lengths are left-padded, the padding masked out through `attention_mask`,
 * and each row's `position_ids` computed from its mask as transformers does
 * (`cumsum(mask) - 1`, padding set to 1), so every row sees exactly what it
 * would see alone. Then one token per row per step, with the KV cache kept
 * between runs (models without cache inputs rerun the whole batch).
 * @module
 */
import { Tensor } from "../deps/ort.ts";
import { GenerationError } from "../errors.ts";
import type { CausalLm, LmRunOptions } from "./causal_lm.ts";
import type { DecoderLayout } from "./decoder_layout.ts";
import { disposeGpu, keepStep } from "./kv_step.ts";

/** An int64 `[rows, cols]` tensor of row-major values. */
function int64Matrix(values: readonly number[], rows: number): Tensor {
  return new Tensor("int64", BigInt64Array.from(values, (v) => BigInt(v)), [rows, values.length / rows]);
}

/**
 * transformers' position ids for a (left-padded) mask: `cumsum(mask) - 1`
 * along each row, 1 where the mask is 0; only the last `count` columns.
 *
 * @example
 * ```ts
 * import { positionsFromMask } from "./batch_session.ts";
 * positionsFromMask([[0, 0, 1, 1], [1, 1, 1, 1]], 4); // [1, 1, 0, 1, 0, 1, 2, 3]
 * ```
 */
export function positionsFromMask(mask: readonly (readonly number[])[], count: number): number[] {
  return mask.flatMap((row) => {
    let sum = 0;
    const positions = row.map((m) => {
      sum += m;
      return m === 0 ? 1 : sum - 1;
    });
    return positions.slice(row.length - count);
  });
}

/**
 * The feeds of one batched run: the last `count` ids of every row (flat,
 * row-major), the whole left-padded mask, positions from the mask, the past
 * and `use_cache_branch` where the model has them.
 *
 * @example
 * ```ts
 * import { batchFeeds } from "./batch_session.ts";
 * import { describeDecoder } from "./decoder_layout.ts";
 * import type { CausalLm } from "./causal_lm.ts";
 * declare const lm: CausalLm;
 * // Two rows, one new id each, the first row one position shorter (padded).
 * const feeds = batchFeeds(describeDecoder(lm), [32, 101], [[0, 1, 1], [1, 1, 1]], {}, false);
 * ```
 */
export function batchFeeds(
  layout: DecoderLayout,
  ids: readonly number[],
  mask: readonly (readonly number[])[],
  past: Readonly<Record<string, Tensor>>,
  useCache: boolean,
): Record<string, Tensor> {
  const rows = mask.length;
  const feeds: Record<string, Tensor> = { ...past, input_ids: int64Matrix(ids, rows) };
  if (layout.attentionMask) feeds.attention_mask = int64Matrix(mask.flat(), rows);
  if (layout.positionIds) feeds.position_ids = int64Matrix(positionsFromMask(mask, ids.length / rows), rows);
  if (layout.useCacheBranch) feeds.use_cache_branch = new Tensor("bool", new Uint8Array([useCache ? 1 : 0]), [1]);
  return feeds;
}

/**
 * Runs a decoder over a batch of rows, left-padded.
 *
 * @example
 * ```ts
 * import { BatchDecoderSession } from "./batch_session.ts";
 * import { describeDecoder } from "./decoder_layout.ts";
 * import type { CausalLm } from "./causal_lm.ts";
 * declare const lm: CausalLm;
 * const session = new BatchDecoderSession(lm, describeDecoder(lm));
 * let logits = await session.prefill([[84, 104, 101], [72]]);
 * logits = await session.step([32, 101]);
 * ```
 */
export class BatchDecoderSession {
  readonly #lm: CausalLm;
  readonly #layout: DecoderLayout;
  readonly #runOptions?: LmRunOptions;
  readonly #padId: number;
  #past: Record<string, Tensor> = {};
  /** Every row's ids so far, padding included (all rows the same length). */
  #ids: number[][] = [];
  #mask: number[][] = [];
  /** Every row's prompt (activated LoRA finds its invocation there on every step, as PEFT's generate does). */
  #prompts: readonly (readonly number[])[] = [];

  /**
   * Starts a session; nothing runs until `prefill`.
   * @param lm The model.
   * @param layout Its layout, from `describeDecoder`.
   * @param runOptions Passed to every `lm.run` (the adapter, or one adapter name per row).
   * @param padId The id fed at padded positions (masked out, so any valid id).
   */
  constructor(lm: CausalLm, layout: DecoderLayout, runOptions?: LmRunOptions, padId = 0) {
    this.#lm = lm;
    this.#layout = layout;
    this.#runOptions = runOptions;
    this.#padId = padId;
  }

  /** Rows in the batch. */
  get rows(): number {
    return this.#ids.length;
  }

  /** Runs every prompt (left-padded to the longest) with an empty cache; returns the logits `[rows, len, vocab]`. */
  prefill(prompts: readonly (readonly number[])[]): Promise<Tensor> {
    if (prompts.length === 0 || prompts.some((p) => p.length === 0)) {
      throw new GenerationError("a batch needs at least one prompt, and no empty prompt", { key: "prompts" });
    }
    if (prompts.length > 1 && !this.#layout.attentionMask) {
      throw new GenerationError("batching prompts needs a model with an attention_mask input", {
        key: "attention_mask",
      });
    }
    const length = Math.max(...prompts.map((p) => p.length));
    this.#ids = prompts.map((p) => [...new Array(length - p.length).fill(this.#padId), ...p]);
    this.#mask = prompts.map((p) => [...new Array(length - p.length).fill(0), ...p.map(() => 1)]);
    this.#prompts = prompts.map((p) => [...p]);
    disposeGpu(Object.values(this.#past));
    this.#past = {};
    const empty: Record<string, Tensor> = {};
    const dims = [prompts.length, ...this.#layout.emptyPastDims.slice(1)];
    for (const { input } of this.#layout.cache) empty[input] = new Tensor("float32", new Float32Array(0), dims);
    return this.#run(length, empty, false);
  }

  /** Feeds one more token per row; returns the logits `[rows, 1, vocab]` (the whole batch without a cache). */
  step(ids: readonly number[]): Promise<Tensor> {
    if (ids.length !== this.rows) {
      throw new GenerationError(`step needs one id per row (${this.rows}), got ${ids.length}`, { key: "ids" });
    }
    ids.forEach((id, i) => {
      this.#ids[i].push(id);
      this.#mask[i].push(1);
    });
    if (this.#layout.cache.length === 0) return this.#run(this.#ids[0].length, {}, false);
    return this.#run(1, this.#past, true);
  }

  /** Frees the KV cache held between steps (GPU buffers on WebGPU). */
  dispose(): void {
    disposeGpu(Object.values(this.#past));
    this.#past = {};
  }

  async #run(count: number, past: Record<string, Tensor>, useCache: boolean): Promise<Tensor> {
    const layout = this.#layout;
    const ids = this.#ids.flatMap((row) => row.slice(row.length - count));
    const feeds = batchFeeds(layout, ids, this.#mask, past, useCache);
    const outputs = await this.#lm.run(feeds, { ...this.#runOptions, promptIds: this.#prompts });
    const { next, logits } = await keepStep(layout, past, outputs);
    this.#past = next;
    return logits;
  }
}
