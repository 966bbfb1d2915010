/**
 * Loading a {@linkcode TextTokenizer} from a model's files.
 * @module
 */
import { GenerationError } from "../errors.ts";
import type { FileSource } from "../storage/file_source.ts";
import { readJsonObject } from "../storage/json_file.ts";
import { type ChatTemplateSource, parseChatTemplate } from "./chat_template.ts";
import { TextTokenizer } from "./tokenizer.ts";

/** A standalone chat template (`chat_template.jinja`, or `chat_template.json`), if the model has one. */
async function readChatTemplateFile(source: FileSource): Promise<ChatTemplateSource | undefined> {
  if (await source.exists("chat_template.jinja")) {
    return new TextDecoder().decode(await source.read("chat_template.jinja"));
  }
  if (await source.exists("chat_template.json")) {
    return parseChatTemplate((await readJsonObject(source, "chat_template.json", GenerationError)).chat_template);
  }
  return undefined;
}

/**
 * Loads the tokenizer of a model folder: `tokenizer.json` (required),
 * `tokenizer_config.json` (optional), and a chat template from
 * `chat_template.jinja` / `chat_template.json` or the config.
 *
 * @example
 * ```ts
 * import { loadTokenizer } from "./load.ts";
 * import { localSource } from "../storage/local.ts";
 * const tok = await loadTokenizer(localSource("examples/demo/byte-llama"));
 * console.log(tok.decode(tok.encode("naïve")));  // "naïve"
 * ```
 */
export async function loadTokenizer(source: FileSource): Promise<TextTokenizer> {
  const tokenizerJson = await readJsonObject(source, "tokenizer.json", GenerationError);
  const config = await source.exists("tokenizer_config.json")
    ? await readJsonObject(source, "tokenizer_config.json", GenerationError)
    : {};
  return new TextTokenizer(tokenizerJson, config, await readChatTemplateFile(source));
}
