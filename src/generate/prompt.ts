/**
 * Turning what the caller passes (text, token ids, or chat messages) into
 * prompt token ids, with clear errors for empty or oversized prompts.
 * @module
 */
import { GenerationError } from "../errors.ts";
import type { ChatMessage } from "../tokenizer/chat_template.ts";
import type { TokenizerLike } from "./tokenizer_like.ts";

/** A prompt: text, token ids, or chat messages (rendered with the chat template). */
export type Prompt = string | readonly number[] | readonly ChatMessage[];

/** Whether a non-empty array holds token ids (rather than messages). */
function isIdList(prompt: readonly unknown[]): prompt is readonly number[] {
  return prompt.every((x) => typeof x === "number");
}

/**
 * The prompt's token ids. Text is encoded (with special tokens unless
 * `addSpecialTokens` is false); messages go through the chat template with
 * a generation prompt and are encoded without adding special tokens.
 *
 * @example
 * ```ts
 * import { promptIds } from "./prompt.ts";
 * import type { TokenizerLike } from "./tokenizer_like.ts";
 * declare const tok: TokenizerLike;
 * promptIds(tok, [1, 2, 3], { vocabSize: 256, contextLength: 512 }); // [1, 2, 3]
 * ```
 */
export function promptIds(
  tokenizer: TokenizerLike,
  prompt: Prompt,
  limits: { vocabSize?: number; contextLength?: number; addSpecialTokens?: boolean },
): number[] {
  let ids: number[];
  if (typeof prompt === "string") {
    if (prompt.length === 0) throw new GenerationError("the prompt is empty", { key: "prompt" });
    ids = tokenizer.encode(prompt, { addSpecialTokens: limits.addSpecialTokens ?? true });
  } else if (!Array.isArray(prompt) || prompt.length === 0) {
    throw new GenerationError("the prompt is empty (give text, token ids or messages)", { key: "prompt" });
  } else if (isIdList(prompt)) {
    ids = [...prompt];
    const bad = ids.find((id) =>
      !Number.isInteger(id) || id < 0 || (limits.vocabSize !== undefined && id >= limits.vocabSize)
    );
    if (bad !== undefined) {
      throw new GenerationError(
        `token id ${bad} is not an integer in [0, ${limits.vocabSize ?? "vocab_size"})`,
        { key: "prompt" },
      );
    }
  } else {
    if (!tokenizer.applyChatTemplate) {
      throw new GenerationError("chat messages need a tokenizer with a chat template", { key: "prompt" });
    }
    const text = tokenizer.applyChatTemplate(prompt as readonly ChatMessage[], { addGenerationPrompt: true });
    ids = tokenizer.encode(text, { addSpecialTokens: false });
  }
  if (ids.length === 0) throw new GenerationError("the prompt encodes to no tokens", { key: "prompt" });
  const context = limits.contextLength;
  if (context !== undefined && ids.length >= context) {
    throw new GenerationError(
      `the prompt is ${ids.length} tokens, which leaves no room in the model's context of ${context} ` +
        "tokens (max_position_embeddings); shorten it",
      { key: "prompt" },
    );
  }
  return ids;
}
