/**
 * Which loader an adapter needs: LoRA's, or a non-LoRA method's (by the
 * `peft_type` of its config).
 * @module
 */
import type { FileSource } from "../storage/file_source.ts";
import { isTunerType } from "./methods.ts";

/**
 * The adapter's config object when its `peft_type` is a non-LoRA method
 * peft-edge merges, else `undefined` (LoRA's loader then reads, checks and
 * reports the config, including an unsupported `peft_type`). Every method
 * loads in either mode.
 *
 * @example
 * ```ts
 * import { resolveSource } from "../hub/resolve.ts";
 * import { tunerConfigOf } from "./peek.ts";
 * const source = await resolveSource("tests/fixtures/tuners/llama-ia3");
 * (await tunerConfigOf(source, {}))?.peft_type; // "IA3"
 * ```
 */
export async function tunerConfigOf(
  source: FileSource,
  options: { config?: Record<string, unknown> },
): Promise<Record<string, unknown> | undefined> {
  let values: unknown = options.config;
  if (values === undefined) {
    if (!await source.exists("adapter_config.json")) return undefined;
    try {
      values = JSON.parse(new TextDecoder().decode(await source.read("adapter_config.json")));
    } catch {
      return undefined; // LoRA's parser reports the malformed file
    }
  }
  if (typeof values !== "object" || values === null || Array.isArray(values)) return undefined;
  const peftType = (values as Record<string, unknown>).peft_type;
  if (!isTunerType(peftType)) return undefined;
  return values as Record<string, unknown>;
}
