/**
 * Tokenizers and chat templates: `tokenizer.json` run by
 * `@huggingface/tokenizers`, chat templates by `@huggingface/jinja`.
 *
 * @example
 * ```ts
 * import { loadTokenizer } from "./mod.ts";
 * import { localSource } from "../storage/local.ts";
 * const tok = await loadTokenizer(localSource("examples/demo/byte-llama"));
 * const ids = tok.encode("def ");
 * ```
 * @module
 */
export { loadTokenizer } from "./load.ts";
export { type DecodeOptions, type EncodeOptions, TextTokenizer } from "./tokenizer.ts";
export {
  type ChatMessage,
  type ChatTemplateOptions,
  type ChatTemplateSource,
  parseChatTemplate,
  renderChatTemplate,
} from "./chat_template.ts";
export { readSpecialTokens, type SpecialTokens, tokenText } from "./special_tokens.ts";
export type { FileSource } from "../storage/file_source.ts";
