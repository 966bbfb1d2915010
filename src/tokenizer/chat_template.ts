/**
 * Chat templates: picking the template a tokenizer ships and rendering it
 * with `@huggingface/jinja`, with the variables transformers'
 * `apply_chat_template` provides (`messages`, `add_generation_prompt`,
 * `tools`, the special tokens, and any extra keyword arguments).
 * @module
 */
import { jinja } from "../deps/tokenizers.ts";
import { GenerationError } from "../errors.ts";
import type { SpecialTokens } from "./special_tokens.ts";

/** One chat turn. `content` is usually a string; templates may accept richer values. */
export interface ChatMessage {
  /** `system`, `user`, `assistant`, `tool`, ... */
  role: string;
  /** The text of the turn (or a template-specific structure). */
  content: unknown;
  /** Any other field a template reads (`tool_calls`, `name`, ...). */
  [field: string]: unknown;
}

/**
 * A chat template as tokenizers store it: one template, or several by name
 * (`tokenizer_config.json` may hold `[{ "name": "default", "template": ... }]`).
 */
export type ChatTemplateSource = string | Readonly<Record<string, string>>;

/** Options of {@linkcode renderChatTemplate}, named as in transformers but in camelCase. */
export interface ChatTemplateOptions {
  /** Append the tokens that start an assistant turn (default `true`). */
  addGenerationPrompt?: boolean;
  /** Tool definitions passed to the template as `tools`. */
  tools?: readonly unknown[];
  /** Which named template to use; default `tool_use` when tools are given and it exists, else `default`. */
  templateName?: string;
  /** Extra variables passed to the template as is. */
  variables?: Readonly<Record<string, unknown>>;
}

/**
 * Reads the `chat_template` value of a tokenizer config (string or list of
 * named templates) into a {@linkcode ChatTemplateSource}.
 *
 * @example
 * ```ts
 * import { parseChatTemplate } from "./chat_template.ts";
 * parseChatTemplate([{ name: "default", template: "{{ messages[0].content }}" }]);
 * // { default: "{{ messages[0].content }}" }
 * ```
 */
export function parseChatTemplate(value: unknown): ChatTemplateSource | undefined {
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const named: Record<string, string> = {};
    for (const entry of value) {
      const { name, template } = (entry ?? {}) as { name?: unknown; template?: unknown };
      if (typeof name === "string" && typeof template === "string") named[name] = template;
    }
    return Object.keys(named).length > 0 ? named : undefined;
  }
  return undefined;
}

/** Picks the template text to use among named templates. */
function pickTemplate(source: ChatTemplateSource, options: ChatTemplateOptions): string {
  if (typeof source === "string") return source;
  const name = options.templateName ??
    (options.tools && "tool_use" in source ? "tool_use" : "default");
  const template = source[name];
  if (template === undefined) {
    throw new GenerationError(
      `no chat template named ${JSON.stringify(name)} (have ${Object.keys(source).join(", ")})`,
      { key: "chat_template" },
    );
  }
  return template;
}

/**
 * Renders a chat template into the prompt text.
 *
 * @example
 * ```ts
 * import { renderChatTemplate } from "./chat_template.ts";
 * const template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}" +
 *   "{% if add_generation_prompt %}<assistant>{% endif %}";
 * renderChatTemplate(template, [{ role: "user", content: "hi" }], {});
 * // "<user>hi<assistant>"
 * ```
 */
export function renderChatTemplate(
  source: ChatTemplateSource,
  messages: readonly ChatMessage[],
  specialTokens: SpecialTokens,
  options: ChatTemplateOptions = {},
): string {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new GenerationError("needs at least one message", { key: "messages" });
  }
  const text = pickTemplate(source, options);
  let template: InstanceType<typeof jinja.Template>;
  try {
    template = new jinja.Template(text);
  } catch (cause) {
    throw new GenerationError(`cannot parse the chat template: ${(cause as Error).message}`, {
      key: "chat_template",
      cause,
    });
  }
  try {
    return template.render({
      ...options.variables,
      messages,
      add_generation_prompt: options.addGenerationPrompt ?? true,
      ...(options.tools ? { tools: options.tools } : {}),
      bos_token: specialTokens.bos ?? "",
      eos_token: specialTokens.eos ?? "",
      unk_token: specialTokens.unk ?? "",
      pad_token: specialTokens.pad ?? "",
    });
  } catch (cause) {
    throw new GenerationError(`the chat template failed: ${(cause as Error).message}`, {
      key: "chat_template",
      cause,
    });
  }
}
