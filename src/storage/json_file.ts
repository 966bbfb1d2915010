/**
 * Reading a JSON-object file (`config.json`, `tokenizer.json`, ...) from a
 * {@linkcode FileSource}, with the caller's typed error naming the file.
 * @module
 */
import type { ErrorContext, PeftEdgeError } from "../errors.ts";
import type { FileSource } from "./file_source.ts";
import { jsonSyntaxError } from "../json/syntax.ts";

/**
 * Reads and parses a file that must hold a JSON object.
 *
 * @example
 * ```ts
 * import { readJsonObject } from "./json_file.ts";
 * import { localSource } from "./local.ts";
 * import { OnnxModelError } from "../errors.ts";
 * const config = await readJsonObject(localSource("tests/fixtures/llama-tiny"), "config.json", OnnxModelError);
 * ```
 */
export async function readJsonObject(
  source: FileSource,
  file: string,
  ErrorClass: new (message: string, context?: ErrorContext) => PeftEdgeError,
): Promise<Record<string, unknown>> {
  const text = new TextDecoder().decode(await source.read(file));
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new ErrorClass(`not valid JSON (${jsonSyntaxError(cause)})`, { file, cause });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ErrorClass("must hold a JSON object", { file });
  }
  return value as Record<string, unknown>;
}
