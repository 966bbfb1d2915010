/**
 * Special tokens as `tokenizer_config.json` names them. Transformers saves
 * each either as a plain string or as a serialized `AddedToken`
 * (`{"content": "</s>", ...}`); this reads both.
 * @module
 */

/** The special tokens a chat template or a generation loop may need. */
export interface SpecialTokens {
  /** Beginning-of-sequence token text (`bos_token`), if any. */
  readonly bos?: string;
  /** End-of-sequence token text (`eos_token`), if any. */
  readonly eos?: string;
  /** Unknown token text (`unk_token`), if any. */
  readonly unk?: string;
  /** Padding token text (`pad_token`), if any. */
  readonly pad?: string;
}

/**
 * Reads one special token entry: a string, an `AddedToken`-like object with
 * `content`, or null/absent.
 *
 * @example
 * ```ts
 * import { tokenText } from "./special_tokens.ts";
 * tokenText("</s>");                    // "</s>"
 * tokenText({ content: "<|im_end|>" }); // "<|im_end|>"
 * tokenText(null);                      // undefined
 * ```
 */
export function tokenText(entry: unknown): string | undefined {
  if (typeof entry === "string") return entry;
  if (entry && typeof entry === "object") {
    const content = (entry as { content?: unknown }).content;
    if (typeof content === "string") return content;
  }
  return undefined;
}

/**
 * Collects `bos_token`, `eos_token`, `unk_token` and `pad_token` from a parsed
 * `tokenizer_config.json`.
 *
 * @example
 * ```ts
 * import { readSpecialTokens } from "./special_tokens.ts";
 * readSpecialTokens({ bos_token: "<s>", eos_token: { content: "</s>" } });
 * // { bos: "<s>", eos: "</s>", unk: undefined, pad: undefined }
 * ```
 */
export function readSpecialTokens(config: Record<string, unknown>): SpecialTokens {
  return {
    bos: tokenText(config.bos_token),
    eos: tokenText(config.eos_token),
    unk: tokenText(config.unk_token),
    pad: tokenText(config.pad_token),
  };
}
