/**
 * Text generation: a KV-cache decoding loop for Optimum-style decoder
 * exports, greedy or seeded sampling, streaming that never splits a
 * character, stop strings, eos, abort.
 *
 * @example
 * ```ts
 * import { generate, loadGenerationConfig } from "./mod.ts";
 * import { loadTokenizer } from "../tokenizer/mod.ts";
 * import type { CausalLm } from "./mod.ts";
 * import type { FileSource } from "../storage/file_source.ts";
 * declare const lm: CausalLm;
 * declare const files: FileSource;
 * const tokenizer = await loadTokenizer(files);
 * const generationConfig = await loadGenerationConfig(files);
 * const { text } = await generate(lm, tokenizer, "The ", { generationConfig });
 * ```
 * @module
 */
export type { CausalLm, LmRunOptions } from "./causal_lm.ts";
export type { TokenizerLike } from "./tokenizer_like.ts";
export { generate, type GenerationResult, stream } from "./generate.ts";
export { type BatchGenerateOptions, generateBatch } from "./batch_generate.ts";
export { BatchDecoderSession, positionsFromMask } from "./batch_session.ts";
export { type GenerateOptions, type GenerationSettings, resolveSettings, type SettingsContext } from "./options.ts";
export type { FileSource } from "../storage/file_source.ts";
export type { ChatMessage, ChatTemplateOptions } from "../tokenizer/chat_template.ts";
export { type GenerationConfig, loadGenerationConfig, parseGenerationConfig } from "./generation_config.ts";
export type { Prompt } from "./prompt.ts";
export type { FinishReason, LoopTimings } from "./token_loop.ts";
export { type CacheSlot, type DecoderLayout, describeDecoder } from "./decoder_layout.ts";
export { DecoderSession } from "./decoder_session.ts";
export { createRng, randomSeed, type Rng } from "./rng.ts";
export { applyRepetitionPenalty, argmax, chooseToken, type SamplingParams } from "./sampling.ts";
export { IncrementalDecoder } from "./incremental_decoder.ts";
export { type FilterResult, StopStringFilter } from "./stop_strings.ts";
