/**
 * The tokenizer side of generation, as a small interface so that any
 * tokenizer (normally `TextTokenizer` from src/tokenizer) can drive it.
 * @module
 */
import type { ChatMessage, ChatTemplateOptions } from "../tokenizer/chat_template.ts";

/**
 * What generation needs from a tokenizer. `TextTokenizer` implements it.
 *
 * @example
 * ```ts
 * import type { TokenizerLike } from "./tokenizer_like.ts";
 * // A byte-level tokenizer with no special tokens:
 * const bytes: TokenizerLike = {
 *   encode: (text) => [...new TextEncoder().encode(text)],
 *   decode: (ids) => new TextDecoder().decode(new Uint8Array(ids)),
 * };
 * ```
 */
export interface TokenizerLike {
  /** Token ids of a text. */
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  /** Text of token ids; incomplete UTF-8 at the end decodes to U+FFFD. */
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  /** Renders chat messages into prompt text; needed only for message prompts. */
  applyChatTemplate?(messages: readonly ChatMessage[], options?: ChatTemplateOptions): string;
  /** The tokenizer's own end-of-sequence id, the last fallback for `eosTokenId`. */
  readonly eosTokenId?: number;
}
