/**
 * The KV-cache decoding loop over token ids: prefill once, then one model
 * run per new token, choosing each token from the last logits.
 * @module
 */
import type { CausalLm, LmRunOptions } from "./causal_lm.ts";
import type { DecoderLayout } from "./decoder_layout.ts";
import { DecoderSession } from "./decoder_session.ts";
import { lastLogits } from "./logits.ts";
import type { GenerationSettings } from "./options.ts";
import { createRng } from "./rng.ts";
import { applyRepetitionPenalty, chooseToken } from "./sampling.ts";

/** Why generation ended. */
export type FinishReason = "length" | "eos" | "stop";

/** Time spent in the model, filled in as the loop runs. */
export interface LoopTimings {
  /** Milliseconds of the prefill run. */
  prefillMs: number;
  /** Milliseconds of the decode steps (runs after the prefill, with token choice). */
  decodeMs: number;
  /** Model runs after the prefill. */
  decodeRuns: number;
}

/** Inputs of {@linkcode tokenLoop}. */
export interface TokenLoopInput {
  /** The model. */
  lm: CausalLm;
  /** Its layout (from `describeDecoder`). */
  layout: DecoderLayout;
  /** Prompt ids (non-empty, within the context). */
  promptIds: readonly number[];
  /** Validated settings. */
  settings: GenerationSettings;
  /** Passed to each run. */
  runOptions?: LmRunOptions;
  /** Checked before and after each run. */
  signal?: AbortSignal;
  /** Filled in as the loop runs. */
  timings: LoopTimings;
}

/**
 * Yields new token ids (never an eos id) until `maxNewTokens`, the context
 * length, or an eos id; returns why it ended. The model is run only when the
 * next id is asked for, so a consumer that stops asking stops the model.
 * Aborting throws the signal's reason.
 *
 * @example
 * ```ts
 * import { tokenLoop } from "./token_loop.ts";
 * import type { TokenLoopInput } from "./token_loop.ts";
 * declare const input: TokenLoopInput;
 * for await (const id of tokenLoop(input)) console.log(id);
 * ```
 */
export async function* tokenLoop(input: TokenLoopInput): AsyncGenerator<number, FinishReason, undefined> {
  const { lm, layout, promptIds, settings, signal, timings } = input;
  const limit = Math.min(
    settings.maxNewTokens,
    layout.contextLength === undefined ? Infinity : layout.contextLength - promptIds.length,
  );
  if (limit <= 0) return "length";
  const session = new DecoderSession(lm, layout, input.runOptions);
  const rng = createRng(settings.seed);
  const seen = new Set(promptIds);

  try {
    signal?.throwIfAborted();
    let started = performance.now();
    let logits = await session.prefill(promptIds);
    signal?.throwIfAborted();
    for (let produced = 0;;) {
      const scores = lastLogits(logits);
      applyRepetitionPenalty(scores, seen, settings.repetitionPenalty);
      const id = chooseToken(scores, settings, rng);
      const now = performance.now();
      if (produced === 0) timings.prefillMs += now - started;
      else timings.decodeMs += now - started;
      if (settings.eosTokenIds.has(id)) return "eos";
      seen.add(id);
      produced++;
      yield id;
      if (produced >= limit) return "length";
      signal?.throwIfAborted();
      started = performance.now();
      logits = await session.step(id);
      timings.decodeRuns++;
      signal?.throwIfAborted();
    }
  } finally {
    // Ended, aborted, failed or abandoned through return(): free the cache (GPU memory on WebGPU).
    session.dispose();
  }
}
