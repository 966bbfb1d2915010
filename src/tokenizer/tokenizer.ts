/**
 * {@linkcode TextTokenizer}: a Hugging Face tokenizer (`tokenizer.json` +
 * `tokenizer_config.json`) run by `@huggingface/tokenizers`, with the chat
 * template of the config rendered by `@huggingface/jinja`.
 * @module
 */
import { tokenizers } from "../deps/tokenizers.ts";
import { GenerationError } from "../errors.ts";
import {
  type ChatMessage,
  type ChatTemplateOptions,
  type ChatTemplateSource,
  parseChatTemplate,
  renderChatTemplate,
} from "./chat_template.ts";
import { readSpecialTokens, type SpecialTokens } from "./special_tokens.ts";

/** Options of {@linkcode TextTokenizer.encode}. */
export interface EncodeOptions {
  /** Add the special tokens of the post-processor (BOS, ...); default `true` as in transformers. */
  addSpecialTokens?: boolean;
}

/** Options of {@linkcode TextTokenizer.decode}. */
export interface DecodeOptions {
  /** Drop special tokens from the text; default `false` as in transformers. */
  skipSpecialTokens?: boolean;
}

/**
 * A tokenizer: text to token ids and back, plus the chat template.
 *
 * @example
 * ```ts
 * import { loadTokenizer } from "./load.ts";
 * import { localSource } from "../storage/local.ts";
 * const tok = await loadTokenizer(localSource("examples/demo/byte-llama"));
 * tok.encode("The ");        // [84, 104, 101, 32]
 * tok.decode([104, 105]);    // "hi"
 * ```
 */
export class TextTokenizer {
  /** The special tokens named in `tokenizer_config.json`. */
  readonly specialTokens: SpecialTokens;
  /** The chat template(s), when the tokenizer has one. */
  readonly chatTemplate?: ChatTemplateSource;
  readonly #inner: InstanceType<typeof tokenizers.Tokenizer>;

  /**
   * Builds a tokenizer from parsed files (see `loadTokenizer` to read them).
   * @param tokenizerJson Parsed `tokenizer.json`.
   * @param tokenizerConfig Parsed `tokenizer_config.json` (`{}` when absent).
   * @param chatTemplate A chat template that overrides the config's (from `chat_template.jinja`).
   */
  constructor(
    tokenizerJson: Record<string, unknown>,
    tokenizerConfig: Record<string, unknown> = {},
    chatTemplate?: ChatTemplateSource,
  ) {
    try {
      this.#inner = new tokenizers.Tokenizer(tokenizerJson, tokenizerConfig);
    } catch (cause) {
      throw new GenerationError(`unsupported tokenizer: ${(cause as Error).message}`, {
        file: "tokenizer.json",
        cause,
      });
    }
    this.specialTokens = readSpecialTokens(tokenizerConfig);
    this.chatTemplate = chatTemplate ?? parseChatTemplate(tokenizerConfig.chat_template);
  }

  /**
   * Token ids of a text.
   *
   * @example
   * ```ts
   * import { TextTokenizer } from "./tokenizer.ts";
   * declare const tok: TextTokenizer;
   * const ids = tok.encode("Hello", { addSpecialTokens: false });
   * ```
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    return this.#inner.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  /**
   * Text of token ids. Byte-level tokens that end inside a UTF-8 character
   * decode to U+FFFD, as in transformers.
   *
   * @example
   * ```ts
   * import { TextTokenizer } from "./tokenizer.ts";
   * declare const tok: TextTokenizer;
   * const text = tok.decode([72, 105], { skipSpecialTokens: true });
   * ```
   */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    return this.#inner.decode(ids as number[], {
      skip_special_tokens: options.skipSpecialTokens ?? false,
    });
  }

  /**
   * The id of a token text (`"</s>"`), or `undefined` when it is not in the vocabulary.
   *
   * @example
   * ```ts
   * import { TextTokenizer } from "./tokenizer.ts";
   * declare const tok: TextTokenizer;
   * const eos = tok.tokenId("</s>");
   * ```
   */
  tokenId(token: string): number | undefined {
    return this.#inner.token_to_id(token);
  }

  /**
   * The id of the config's `eos_token`, when it has one that is in the vocabulary.
   *
   * @example
   * ```ts
   * import { TextTokenizer } from "./tokenizer.ts";
   * declare const tok: TextTokenizer;
   * const stopAt = tok.eosTokenId;
   * ```
   */
  get eosTokenId(): number | undefined {
    const eos = this.specialTokens.eos;
    return eos === undefined ? undefined : this.tokenId(eos);
  }

  /**
   * Renders messages with the tokenizer's chat template into prompt text
   * (transformers' `apply_chat_template(..., tokenize=False)`). Encode the
   * result with `addSpecialTokens: false`: templates add their own BOS.
   * Throws {@linkcode GenerationError} when the tokenizer has no template.
   *
   * @example
   * ```ts
   * import { TextTokenizer } from "./tokenizer.ts";
   * declare const tok: TextTokenizer;
   * const prompt = tok.applyChatTemplate([{ role: "user", content: "Hi!" }]);
   * const ids = tok.encode(prompt, { addSpecialTokens: false });
   * ```
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    if (this.chatTemplate === undefined) {
      throw new GenerationError(
        "this tokenizer has no chat template; pass a plain prompt instead",
        { file: "tokenizer_config.json", key: "chat_template" },
      );
    }
    return renderChatTemplate(this.chatTemplate, messages, this.specialTokens, options);
  }
}
