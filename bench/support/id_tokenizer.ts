/**
 * A tokenizer for benches on models that ship none (random-weight bases of a
 * real model's shape): a text's UTF-8 bytes are its ids, and every id
 * decodes to one character of its own, so any id the model picks has text.
 * @module
 */
import type { TokenizerLike } from "../../src/generate/mod.ts";

/** Ids decode to code points from U+10000 on (plane 1 up: valid scalar values, never U+FFFD). */
const FIRST = 0x10000;

/**
 * The byte-in, one-character-per-id-out tokenizer.
 *
 * @example
 * ```ts
 * import { idTokenizer } from "./id_tokenizer.ts";
 * const tokenizer = idTokenizer();
 * tokenizer.encode("def "); // [100, 101, 102, 32]
 * tokenizer.decode([5, 40000]).length; // 4 (two characters outside the BMP)
 * ```
 */
export function idTokenizer(): TokenizerLike {
  const encoder = new TextEncoder();
  return {
    encode: (text) => [...encoder.encode(text)],
    decode: (ids) => ids.map((id) => String.fromCodePoint(FIRST + id)).join(""),
  };
}
