/**
 * One entry point for reading any adapter for a base: LoRA's loader, a
 * non-LoRA method's, or a prompt-learning one (each in either mode), chosen
 * by the config's `peft_type`.
 * @module
 */
import { type PathOrSource, resolveSource } from "../hub/resolve.ts";
import { tunerConfigOf } from "../tuners/peek.ts";
import { readTunedAdapter } from "../tuners/read.ts";
import {
  type AdapterOptions,
  checkAdapterName,
  type LoadedAdapter,
  readAdapter,
  readAdapterWeights,
} from "./adapter.ts";
import type { BaseModel } from "./base_model.ts";
import { adapterConfigValues, readPromptAdapter } from "./prompt_adapter.ts";
import { isPromptLearningType } from "../tuners/prompt_learning/config.ts";

/**
 * Reads and plans an adapter of any supported `peft_type` for a base, for
 * the given mode.
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "./base_model.ts";
 * import { readAdapterFor } from "./any_adapter.ts";
 * const base = await loadBaseModel("tests/fixtures/real/bases/llama-torchscript");
 * const adapter = await readAdapterFor(base, "tests/fixtures/tuners/llama-ia3", "default", {}, "merged");
 * adapter.config.peftType; // "IA3"
 * ```
 */
export async function readAdapterFor(
  base: BaseModel,
  adapter: PathOrSource,
  name: string,
  options: AdapterOptions,
  mode: string,
): Promise<LoadedAdapter> {
  const source = await resolveSource(adapter, options);
  // The config file is read once here for both peeks (a URL source fetches on every read).
  const peeked = await adapterConfigValues(source, options);
  if (peeked && isPromptLearningType(peeked.peft_type)) {
    return await readPromptAdapter(base, source, peeked, name, options);
  }
  const values = await tunerConfigOf(source, peeked ? { config: peeked } : options);
  if (!values) {
    const loaded = await readAdapter(base.weights, source, name, options, base);
    // Merging into quantized layers re-quantizes them; PEFT warns of the rounding.
    const rounding = mode === "merged" ? quantizedMergeWarnings(loaded) : [];
    for (const w of rounding) (options.onWarning ?? console.warn)(w);
    return rounding.length > 0 ? { ...loaded, warnings: [...loaded.warnings, ...rounding] } : loaded;
  }
  checkAdapterName(name);
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    (options.onWarning ?? console.warn)(message);
  };
  const read = () => readAdapterWeights(source, { whole: options.isTrainable });
  const tunedMode = mode === "dynamic" ? "dynamic" : "merged";
  const { config, plan, weights, parameters, saved } = await readTunedAdapter(
    base,
    read,
    values,
    source.location,
    warn,
    tunedMode,
  );
  return { name, location: source.location, config, plan, weights, parameters, warnings, ...(saved ? { saved } : {}) };
}

/**
 * PEFT's warning on merging into quantized layers (bitsandbytes `merge`),
 * once per bit width, as Python shows a repeated warning once.
 */
function quantizedMergeWarnings(adapter: LoadedAdapter): string[] {
  const targets = [...adapter.plan.patches, ...adapter.plan.tokens]
    .filter((p) => p.kind !== "replace" || p.param === "weight")
    .map((p) => p.target);
  const bits = new Set(targets.flatMap((t) => t.quantized ? [t.quantized.bits] : []));
  return [...bits].sort().map((b) =>
    `Merge lora module to ${b}-bit linear may get different generations due to rounding errors.`
  );
}
