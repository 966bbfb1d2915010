/**
 * The text side of a base model: its tokenizer and generation defaults,
 * read once at load, and the `generate`/`stream` calls both model classes
 * expose on top of `src/generate`.
 * @module
 */
import { GenerationError } from "../errors.ts";
import type { CausalLm } from "../generate/causal_lm.ts";
import {
  type BatchGenerateOptions,
  generate,
  generateBatch,
  type GenerateOptions,
  type GenerationConfig,
  type GenerationResult,
  loadGenerationConfig,
  type Prompt,
  stream,
} from "../generate/mod.ts";
import type { FileSource } from "../storage/file_source.ts";
import { loadTokenizer, type TextTokenizer } from "../tokenizer/mod.ts";

/** A model's tokenizer (when it ships `tokenizer.json`) and `generation_config.json` defaults. */
export interface TextSide {
  tokenizer?: TextTokenizer;
  generationConfig: GenerationConfig;
}

/**
 * Reads the tokenizer and generation defaults of a model folder or repo.
 *
 * @example
 * ```ts
 * import { loadTextSide } from "./text.ts";
 * import { localSource } from "../storage/local.ts";
 * const text = await loadTextSide(localSource("examples/demo/byte-llama"));
 * text.tokenizer?.encode("The ");
 * ```
 */
export async function loadTextSide(source: FileSource): Promise<TextSide> {
  const tokenizer = await source.exists("tokenizer.json") ? await loadTokenizer(source) : undefined;
  return { tokenizer, generationConfig: await loadGenerationConfig(source) };
}

function requireTokenizer(text: TextSide): TextTokenizer {
  if (!text.tokenizer) {
    throw new GenerationError("this model has no tokenizer.json, so it cannot generate text", {
      file: "tokenizer.json",
    });
  }
  return text.tokenizer;
}

/**
 * Generates with a model's own tokenizer and generation defaults.
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "./base_model.ts";
 * import { generateText } from "./text.ts";
 * const base = await loadBaseModel("examples/demo/byte-llama");
 * const { text } = await generateText(base, base.text, "def ", { maxNewTokens: 20 });
 * ```
 */
export function generateText(
  lm: CausalLm,
  text: TextSide,
  prompt: Prompt,
  options: GenerateOptions = {},
): Promise<GenerationResult> {
  return generate(lm, requireTokenizer(text), prompt, { generationConfig: text.generationConfig, ...options });
}

/**
 * Streams text pieces with a model's own tokenizer and generation defaults.
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "./base_model.ts";
 * import { streamText } from "./text.ts";
 * const base = await loadBaseModel("examples/demo/byte-llama");
 * for await (const piece of streamText(base, base.text, "The ", { maxNewTokens: 20 })) console.log(piece);
 * ```
 */
export function streamText(
  lm: CausalLm,
  text: TextSide,
  prompt: Prompt,
  options: GenerateOptions = {},
): AsyncGenerator<string, GenerationResult, undefined> {
  return stream(lm, requireTokenizer(text), prompt, { generationConfig: text.generationConfig, ...options });
}

/**
 * Generates for several prompts in one batch with a model's own tokenizer and generation defaults.
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "./base_model.ts";
 * import { generateTextBatch } from "./text.ts";
 * const base = await loadBaseModel("examples/demo/byte-llama");
 * const [a, b] = await generateTextBatch(base, base.text, ["def ", "The "], { maxNewTokens: 20 });
 * ```
 */
export function generateTextBatch(
  lm: CausalLm,
  text: TextSide,
  prompts: readonly Prompt[],
  options: BatchGenerateOptions = {},
): Promise<GenerationResult[]> {
  return generateBatch(lm, requireTokenizer(text), prompts, { generationConfig: text.generationConfig, ...options });
}
