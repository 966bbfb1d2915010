/**
 * Loading a {@linkcode TextTokenizer} from a model's files.
 * @module
 */
import { GenerationError } from "../errors.ts";
import type { FileSource } from "../storage/file_source.ts";
import { type ChatTemplateSource, parseChatTemplate } from "./chat_template.ts";
import { TextTokenizer } from "./tokenizer.ts";

/** Reads and parses a JSON object file, naming the file on failure. */
async function readJsonObject(source: FileSource, file: string): Promise<Record<string, unknown>> {
  const text = new TextDecoder().decode(await source.read(file));
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new GenerationError(`not valid JSON: ${(cause as Error).message}`, { file, cause });
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    throw new GenerationError("must hold a JSON object", { file });
  }
  return value as Record<string, unknown>;
}

/** A standalone chat template (`chat_template.jinja`, or `chat_template.json`), if the model has one. */
async function readChatTemplateFile(source: FileSource): Promise<ChatTemplateSource | undefined> {
  if (await source.exists("chat_template.jinja")) {
    return new TextDecoder().decode(await source.read("chat_template.jinja"));
  }
  if (await source.exists("chat_template.json")) {
    return parseChatTemplate((await readJsonObject(source, "chat_template.json")).chat_template);
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
  const tokenizerJson = await readJsonObject(source, "tokenizer.json");
  const config = await source.exists("tokenizer_config.json")
    ? await readJsonObject(source, "tokenizer_config.json")
    : {};
  return new TextTokenizer(tokenizerJson, config, await readChatTemplateFile(source));
}
