/**
 * `generate` and `stream`: text generation on a {@linkcode CausalLm} with a
 * tokenizer. Both run the same loop; `generate`'s text is exactly the
 * concatenation of `stream`'s pieces.
 * @module
 */
import type { CausalLm } from "./causal_lm.ts";
import { describeDecoder } from "./decoder_layout.ts";
import { IncrementalDecoder } from "./incremental_decoder.ts";
import { type GenerateOptions, resolveSettings } from "./options.ts";
import { type Prompt, promptIds } from "./prompt.ts";
import { StopStringFilter } from "./stop_strings.ts";
import { type FinishReason, type LoopTimings, tokenLoop } from "./token_loop.ts";
import type { TokenizerLike } from "./tokenizer_like.ts";

/** The outcome of a generation. */
export interface GenerationResult {
  /** The generated text (without the prompt, stop strings or eos). */
  text: string;
  /** Generated token ids, without eos; with a stop string, up to the token that completed it. */
  tokenIds: number[];
  /** The prompt's token ids. */
  promptTokenIds: number[];
  /** Why generation ended. */
  finishReason: FinishReason;
  /** Time in the model: prefill, and decode steps (for tokens/s). */
  timings: LoopTimings;
  /** The seed the sampler used (random if none was given). */
  seed: number;
}

/**
 * Generates text, yielding it in pieces as it is produced. Pieces never
 * split a character; their concatenation is the result's `text`, which the
 * generator returns when done (`for await` ignores it; call `next()` to get
 * it). Breaking out of the loop stops the model. Aborting via
 * `options.signal` throws the signal's reason within one step. Bad input
 * throws {@linkcode GenerationError} from the first `next()`.
 *
 * @example
 * ```ts
 * import { stream } from "./generate.ts";
 * import type { CausalLm } from "./causal_lm.ts";
 * import type { TokenizerLike } from "./tokenizer_like.ts";
 * declare const lm: CausalLm;
 * declare const tokenizer: TokenizerLike;
 * for await (const piece of stream(lm, tokenizer, "The ", { maxNewTokens: 40 })) {
 *   console.log(piece);
 * }
 * ```
 */
export async function* stream(
  lm: CausalLm,
  tokenizer: TokenizerLike,
  prompt: Prompt,
  options: GenerateOptions = {},
): AsyncGenerator<string, GenerationResult, undefined> {
  const layout = describeDecoder(lm);
  const ids = promptIds(tokenizer, prompt, { ...layout, addSpecialTokens: options.addSpecialTokens });
  const settings = resolveSettings(options, {
    promptLength: ids.length,
    configEos: lm.config.eos_token_id,
    tokenizerEos: tokenizer.eosTokenId,
  });
  const timings: LoopTimings = { prefillMs: 0, decodeMs: 0, decodeRuns: 0 };
  const tokens = tokenLoop({
    lm,
    layout,
    promptIds: ids,
    settings,
    runOptions: options.adapter === undefined ? undefined : { adapter: options.adapter },
    signal: options.signal,
    timings,
  });
  const decoder = new IncrementalDecoder(tokenizer);
  const filter = new StopStringFilter(settings.stop);
  const generated: number[] = [];
  let text = "";
  let finishReason: FinishReason;
  try {
    for (;;) {
      const next = await tokens.next();
      if (next.done) {
        finishReason = next.value;
        break;
      }
      generated.push(next.value);
      const piece = filter.push(decoder.push(next.value));
      if (piece.text) {
        text += piece.text;
        yield piece.text;
      }
      if (piece.stopped) {
        finishReason = "stop";
        break;
      }
    }
    if (finishReason !== "stop") {
      const tail = filter.push(decoder.flush());
      const rest = tail.text + filter.flush();
      if (tail.stopped) finishReason = "stop";
      if (rest) {
        text += rest;
        yield rest;
      }
    }
  } finally {
    await tokens.return("stop");
  }
  return {
    text,
    tokenIds: generated,
    promptTokenIds: ids,
    finishReason,
    timings,
    seed: settings.seed,
  };
}

/**
 * Generates text and returns it with the token ids, the finish reason and
 * timings. Greedy by default (or as `generation_config.json` says);
 * `temperature > 0` samples with a seeded RNG.
 *
 * @example
 * ```ts
 * import { generate } from "./generate.ts";
 * import type { CausalLm } from "./causal_lm.ts";
 * import type { TokenizerLike } from "./tokenizer_like.ts";
 * declare const lm: CausalLm;
 * declare const tokenizer: TokenizerLike;
 * const { text, finishReason } = await generate(lm, tokenizer, "def ", {
 *   maxNewTokens: 60, temperature: 0.8, topP: 0.95, seed: 1, stop: ["\n\n"],
 * });
 * ```
 */
export async function generate(
  lm: CausalLm,
  tokenizer: TokenizerLike,
  prompt: Prompt,
  options: GenerateOptions = {},
): Promise<GenerationResult> {
  const pieces = stream(lm, tokenizer, prompt, options);
  for (;;) {
    const next = await pieces.next();
    if (next.done) return next.value;
  }
}
