/**
 * A chat template for models whose tokenizer has none (or a different one
 * than the service should use): a tokenizer wrapper whose
 * `applyChatTemplate` renders the given template.
 * @module
 */
import type { TokenizerLike } from "../generate/mod.ts";
import { renderChatTemplate } from "../tokenizer/chat_template.ts";
import type { SpecialTokens } from "../tokenizer/special_tokens.ts";

/**
 * The tokenizer, with `template` (Jinja, as in `tokenizer_config.json`)
 * used for chat prompts instead of its own.
 *
 * @example
 * ```ts
 * import { withChatTemplate } from "./chat_template.ts";
 * import type { TokenizerLike } from "../generate/mod.ts";
 * declare const tokenizer: TokenizerLike;
 * const chat = withChatTemplate(
 *   tokenizer,
 *   "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}",
 * );
 * ```
 */
export function withChatTemplate(tokenizer: TokenizerLike, template: string): TokenizerLike {
  const specialTokens: SpecialTokens = (tokenizer as { specialTokens?: SpecialTokens }).specialTokens ?? {};
  return {
    encode: (text, options) => tokenizer.encode(text, options),
    decode: (ids, options) => tokenizer.decode(ids, options),
    applyChatTemplate: (messages, options) => renderChatTemplate(template, messages, specialTokens, options),
    get eosTokenId() {
      return tokenizer.eosTokenId;
    },
  };
}
