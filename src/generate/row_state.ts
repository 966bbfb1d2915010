/**
 * One generation's state as a batch row: its settings, seeded RNG,
 * repetition-penalty history, detokenizer and stop-string filter, and the
 * token choice from that row's logits. `generateBatch` and the service's
 * continuous batching both drive rows with it, so a row gives exactly the
 * ids and text of the same prompt generated alone with `stream`.
 * @module
 */
import type { Tensor } from "../deps/ort.ts";
import type { DecoderLayout } from "./decoder_layout.ts";
import type { GenerationResult } from "./generate.ts";
import { IncrementalDecoder } from "./incremental_decoder.ts";
import { lastLogits } from "./logits.ts";
import type { GenerationSettings } from "./options.ts";
import { createRng, type Rng } from "./rng.ts";
import { applyRepetitionPenalty, chooseToken } from "./sampling.ts";
import { StopStringFilter } from "./stop_strings.ts";
import type { FinishReason, LoopTimings } from "./token_loop.ts";
import type { TokenizerLike } from "./tokenizer_like.ts";

/**
 * One row's state while a batch runs.
 *
 * @example
 * ```ts
 * import { createRow, type RowState } from "./row_state.ts";
 * import type { DecoderLayout } from "./decoder_layout.ts";
 * import type { GenerationSettings } from "./options.ts";
 * import type { TokenizerLike } from "./tokenizer_like.ts";
 * declare const layout: DecoderLayout, settings: GenerationSettings, tokenizer: TokenizerLike;
 * const row: RowState = createRow([72, 105], settings, tokenizer, layout);
 * console.log(row.limit, row.finish);
 * ```
 */
export interface RowState {
  /** The prompt's ids. */
  readonly ids: readonly number[];
  /** Validated settings. */
  readonly settings: GenerationSettings;
  /** Its own sampling RNG (seeded by `settings.seed`). */
  readonly rng: Rng;
  /** Ids seen so far (for the repetition penalty). */
  readonly seen: Set<number>;
  /** New tokens at most (`maxNewTokens`, within the context). */
  readonly limit: number;
  readonly decoder: IncrementalDecoder;
  readonly filter: StopStringFilter;
  /** Generated ids, without eos. */
  readonly generated: number[];
  /** The text so far (what `stream` would have yielded). */
  text: string;
  /** Set when the row has ended. */
  finish?: FinishReason;
}

/**
 * A fresh row for a prompt's ids; a row with no room to generate (limit 0)
 * starts ended (`"length"`), as `stream` ends without running the model.
 *
 * @example
 * ```ts
 * import { createRow } from "./row_state.ts";
 * import type { DecoderLayout } from "./decoder_layout.ts";
 * import type { GenerationSettings } from "./options.ts";
 * import type { TokenizerLike } from "./tokenizer_like.ts";
 * declare const layout: DecoderLayout, settings: GenerationSettings, tokenizer: TokenizerLike;
 * const row = createRow([72, 105], settings, tokenizer, layout);
 * ```
 */
export function createRow(
  ids: readonly number[],
  settings: GenerationSettings,
  tokenizer: TokenizerLike,
  layout: DecoderLayout,
): RowState {
  const context = layout.contextLength === undefined ? Infinity : layout.contextLength - ids.length;
  const limit = Math.min(settings.maxNewTokens, context);
  return {
    ids,
    settings,
    rng: createRng(settings.seed),
    seen: new Set(ids),
    limit,
    decoder: new IncrementalDecoder(tokenizer),
    filter: new StopStringFilter(settings.stop),
    generated: [],
    text: "",
    finish: limit <= 0 ? "length" : undefined,
  };
}

/**
 * Chooses a row's next id from row `item` of the logits (its last position)
 * with its repetition penalty, sampler and RNG.
 *
 * @example
 * ```ts
 * import { chooseNext, type RowState } from "./row_state.ts";
 * import type { Tensor } from "../deps/ort.ts";
 * declare const row: RowState, logits: Tensor;
 * const id = chooseNext(row, logits, 0);
 * ```
 */
export function chooseNext(row: RowState, logits: Tensor, item: number): number {
  const scores = lastLogits(logits, item);
  applyRepetitionPenalty(scores, row.seen, row.settings.repetitionPenalty);
  return chooseToken(scores, row.settings, row.rng);
}

/**
 * Pushes a chosen id into a row; returns the text it adds (possibly empty,
 * never splitting a character). Sets `row.finish` when the row ends: eos
 * (not kept), a stop string, or its limit; the detokenizer is flushed then.
 *
 * @example
 * ```ts
 * import { acceptToken, type RowState } from "./row_state.ts";
 * declare const row: RowState;
 * const piece = acceptToken(row, 104);
 * if (row.finish) console.log("ended:", row.finish);
 * ```
 */
export function acceptToken(row: RowState, id: number): string {
  let added = "";
  if (row.settings.eosTokenIds.has(id)) {
    row.finish = "eos";
  } else {
    row.seen.add(id);
    row.generated.push(id);
    const piece = row.filter.push(row.decoder.push(id));
    added += piece.text;
    if (piece.stopped) row.finish = "stop";
    else if (row.generated.length >= row.limit) row.finish = "length";
  }
  if (row.finish && row.finish !== "stop") {
    const tail = row.filter.push(row.decoder.flush());
    added += tail.text + row.filter.flush();
    if (tail.stopped) row.finish = "stop";
  }
  row.text += added;
  return added;
}

/**
 * An ended row's result, as `generate` gives it for the same prompt alone.
 *
 * @example
 * ```ts
 * import { rowResult, type RowState } from "./row_state.ts";
 * declare const row: RowState;
 * const result = rowResult(row, { prefillMs: 0, decodeMs: 0, decodeRuns: 0 });
 * console.log(result.finishReason, result.text);
 * ```
 */
export function rowResult(row: RowState, timings: LoopTimings): GenerationResult {
  return {
    text: row.text,
    tokenIds: row.generated,
    promptTokenIds: [...row.ids],
    finishReason: row.finish!,
    timings,
    seed: row.settings.seed,
  };
}
