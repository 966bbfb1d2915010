/**
 * Turning a growing list of token ids into text pieces without ever
 * splitting a character: byte-level tokens can end inside a UTF-8 sequence,
 * which decodes to U+FFFD until the rest arrives.
 *
 * The decoder keeps a small window of ids. Each new id, it decodes the
 * window (plus one token of context before it, so that decoders which treat
 * the first token specially, like SentencePiece's leading space, behave as
 * they do mid-text) and emits what is new, unless the text ends in U+FFFD:
 * then it waits for more ids. `flush` emits whatever is left, U+FFFD included,
 * so the pieces always add up to the decoded text.
 * @module
 */
import type { TokenizerLike } from "./tokenizer_like.ts";

const REPLACEMENT = "\uFFFD";

/**
 * Incremental detokenizer.
 *
 * @example
 * ```ts
 * import { IncrementalDecoder } from "./incremental_decoder.ts";
 * import type { TokenizerLike } from "./tokenizer_like.ts";
 * const bytes: TokenizerLike = {
 *   encode: (t) => [...new TextEncoder().encode(t)],
 *   decode: (ids) => new TextDecoder().decode(new Uint8Array(ids)),
 * };
 * const dec = new IncrementalDecoder(bytes);
 * dec.push(0xe2); dec.push(0x82); // "" twice: "€" is not complete yet
 * dec.push(0xac);                 // "€"
 * ```
 */
export class IncrementalDecoder {
  readonly #tokenizer: TokenizerLike;
  readonly #ids: number[] = [];
  /** Start of the decode window (one token of context before `#read`). */
  #prefix = 0;
  /** Ids before this index have been emitted. */
  #read = 0;
  /** Decoded text of ids[#prefix, #read). */
  #prefixText = "";

  /**
   * Creates an empty decoder.
   * @param tokenizer Decodes ids (special tokens are skipped).
   */
  constructor(tokenizer: TokenizerLike) {
    this.#tokenizer = tokenizer;
  }

  #decode(from: number, to?: number): string {
    return this.#tokenizer.decode(this.#ids.slice(from, to), { skipSpecialTokens: true });
  }

  /** Adds an id; returns the text it completes ("" while a character is incomplete). */
  push(id: number): string {
    this.#ids.push(id);
    const text = this.#decode(this.#prefix);
    if (text.length <= this.#prefixText.length || text.endsWith(REPLACEMENT)) return "";
    const piece = text.slice(this.#prefixText.length);
    this.#prefix = this.#read;
    this.#read = this.#ids.length;
    this.#prefixText = this.#decode(this.#prefix, this.#read);
    return piece;
  }

  /** Emits what is left (incomplete characters as U+FFFD). */
  flush(): string {
    const text = this.#decode(this.#prefix);
    const piece = text.length > this.#prefixText.length ? text.slice(this.#prefixText.length) : "";
    this.#prefix = this.#read = this.#ids.length;
    this.#prefixText = "";
    return piece;
  }
}
