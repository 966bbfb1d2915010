/**
 * `generateBatch`: several prompts generated together, one model run per
 * step for the whole batch, each row with its own adapter (`adapterNames`),
 * sampler, repetition penalty, detokenizer and stop strings. A row that ends
 * (eos, stop string, length) keeps being fed until the last row ends, but
 * its result is fixed at the step it ended, so each result equals what the
 * prompt gives alone (greedy; sampled rows draw from their own seeded RNG).
 * @module
 */
import { GenerationError } from "../errors.ts";
import { BatchDecoderSession } from "./batch_session.ts";
import type { CausalLm, LmRunOptions } from "./causal_lm.ts";
import { describeDecoder } from "./decoder_layout.ts";
import type { GenerationResult } from "./generate.ts";
import { type GenerateOptions, resolveSettings } from "./options.ts";
import { type Prompt, promptIds } from "./prompt.ts";
import { acceptToken, chooseNext, createRow, rowResult, type RowState } from "./row_state.ts";
import type { LoopTimings } from "./token_loop.ts";
import type { TokenizerLike } from "./tokenizer_like.ts";

/** Options of {@linkcode generateBatch}: those of `generate`, plus one adapter name per prompt. */
export interface BatchGenerateOptions extends GenerateOptions {
  /** One adapter name per prompt (`"__base__"`: none), passed to the model's `run`. Not with `adapter`. */
  adapterNames?: readonly string[];
}

/**
 * Generates for every prompt in one batch and returns one result per prompt,
 * in order. Options apply to every row; `adapterNames` gives each row its
 * adapter. Aborting via `options.signal` throws its reason within one step.
 *
 * @throws {GenerationError} for an empty list, a bad prompt, or `adapterNames` of the wrong length.
 * @example
 * ```ts
 * import { generateBatch } from "./batch_generate.ts";
 * import type { CausalLm } from "./causal_lm.ts";
 * import type { TokenizerLike } from "./tokenizer_like.ts";
 * declare const lm: CausalLm;
 * declare const tokenizer: TokenizerLike;
 * const [a, b] = await generateBatch(lm, tokenizer, ["def ", "The quick "], {
 *   maxNewTokens: 20,
 *   adapterNames: ["python", "__base__"],
 * });
 * ```
 */
export async function generateBatch(
  lm: CausalLm,
  tokenizer: TokenizerLike,
  prompts: readonly Prompt[],
  options: BatchGenerateOptions = {},
): Promise<GenerationResult[]> {
  if (!Array.isArray(prompts) || prompts.length === 0) {
    throw new GenerationError("generateBatch needs a non-empty list of prompts", { key: "prompts" });
  }
  const { adapterNames } = options;
  if (adapterNames !== undefined) {
    if (options.adapter !== undefined) {
      throw new GenerationError("give either adapter or adapterNames, not both", { key: "adapterNames" });
    }
    if (!Array.isArray(adapterNames) || adapterNames.length !== prompts.length) {
      throw new GenerationError(`adapterNames needs one name per prompt (${prompts.length})`, {
        key: "adapterNames",
      });
    }
  }
  const layout = describeDecoder(lm);
  const rows: RowState[] = prompts.map((prompt) => {
    const ids = promptIds(tokenizer, prompt, { ...layout, addSpecialTokens: options.addSpecialTokens });
    const settings = resolveSettings(options, {
      promptLength: ids.length,
      configEos: lm.config.eos_token_id,
      tokenizerEos: tokenizer.eosTokenId,
    });
    return createRow(ids, settings, tokenizer, layout);
  });
  const timings: LoopTimings = { prefillMs: 0, decodeMs: 0, decodeRuns: 0 };
  const runOptions: LmRunOptions | undefined = adapterNames !== undefined
    ? { adapterNames }
    : options.adapter !== undefined
    ? { adapter: options.adapter }
    : undefined;
  const signal = options.signal;
  if (rows.some((r) => !r.finish)) {
    const session = new BatchDecoderSession(lm, layout, runOptions);
    try {
      signal?.throwIfAborted();
      let started = performance.now();
      let logits = await session.prefill(rows.map((r) => r.ids));
      for (let step = 0;; step++) {
        signal?.throwIfAborted();
        // Rows that have ended are fed their last id again; their outputs are not read.
        const next = rows.map((row, i) => {
          if (row.finish) return row.generated.at(-1) ?? row.ids.at(-1)!;
          const id = chooseNext(row, logits, i);
          acceptToken(row, id);
          return id;
        });
        const now = performance.now();
        if (step === 0) timings.prefillMs += now - started;
        else timings.decodeMs += now - started;
        if (rows.every((r) => r.finish)) break;
        started = performance.now();
        logits = await session.step(next);
        timings.decodeRuns++;
      }
    } finally {
      session.dispose();
    }
  }
  return rows.map((row) => rowResult(row, timings));
}
