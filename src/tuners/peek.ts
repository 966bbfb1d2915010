/**
 * Which loader an adapter needs: LoRA's, or a non-LoRA method's (by the
 * `peft_type` of its config).
 * @module
 */
import { UnsupportedError } from "../errors.ts";
import type { FileSource } from "../storage/file_source.ts";
import { isTunerType, TUNER_METHODS } from "./methods.ts";

/**
 * The adapter's config object when its `peft_type` is a non-LoRA method
 * peft-edge merges, else `undefined` (LoRA's loader then reads, checks and
 * reports the config, including an unsupported `peft_type`). A method
 * without dynamic mode is refused there, naming merged mode.
 *
 * @example
 * ```ts
 * import { resolveSource } from "../hub/resolve.ts";
 * import { tunerConfigOf } from "./peek.ts";
 * const source = await resolveSource("tests/fixtures/tuners/llama-ia3");
 * (await tunerConfigOf(source, {}, "merged"))?.peft_type; // "IA3"
 * ```
 */
export async function tunerConfigOf(
  source: FileSource,
  options: { config?: Record<string, unknown> },
  mode: string,
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
  if (mode !== "merged" && !(mode === "dynamic" && hasDynamicMode(peftType))) {
    throw new UnsupportedError(
      `peft_type ${peftType} loads in mode "merged" only (its weights are merged into the base); ` +
        `mode ${JSON.stringify(mode)} supports LORA, ${DYNAMIC.join(", ")}`,
      { key: "mode" },
    );
  }
  return values as Record<string, unknown>;
}

/**
 * Methods whose dynamic mode exists: a fed per-channel scale, fed norm parameters (`param_branches.ts`), or a
 * low-rank delta run as a LoRA branch.
 */
function hasDynamicMode(peftType: keyof typeof TUNER_METHODS): boolean {
  const method = TUNER_METHODS[peftType];
  return method.scale !== undefined || method.replaces !== undefined || method.lowRank !== undefined;
}

const DYNAMIC = (Object.keys(TUNER_METHODS) as (keyof typeof TUNER_METHODS)[]).filter(hasDynamicMode);
