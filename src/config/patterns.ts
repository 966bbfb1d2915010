/**
 * Per-module rank, alpha and scaling: PEFT's `get_pattern_key`
 * (`peft/utils/other.py`) and its use in `LoraModel._create_and_replace`
 * and `LoraLayer.update_layer` (v0.19).
 *
 * @module
 */
import type { LoraConfig } from "./lora.ts";
import { patternKeyRegex, PatternMap } from "./regex.ts";

/**
 * The first of `patternKeys` (in order) that matches `moduleName`, where a
 * key matches when `re.match(rf"(.*\.)?({key})$", moduleName)` does: the key
 * is a regex that must match a whole `.`-separated tail of the name. Returns
 * `undefined` when none matches (PEFT then falls back to the name itself).
 *
 * @example
 * ```ts
 * import { getPatternKey } from "./patterns.ts";
 * getPatternKey(["v_proj", "q_proj"], "model.layers.0.self_attn.q_proj"); // "q_proj"
 * getPatternKey(["proj"], "model.layers.0.self_attn.q_proj"); // undefined ("proj" is not a whole tail)
 * getPatternKey(["layers.0.self_attn.q_proj", "q_proj"], "model.layers.0.self_attn.q_proj"); // "layers.0.self_attn.q_proj"
 * ```
 */
export function getPatternKey(patternKeys: Iterable<string>, moduleName: string): string | undefined {
  for (const key of patternKeys) {
    if (patternKeyRegex(key, { key }).test(moduleName)) return key;
  }
  return undefined;
}

/** `pattern.get(get_pattern_key(pattern.keys(), name), fallback)`, as `_create_and_replace` does. */
function lookup(pattern: ReadonlyMap<string, number>, moduleName: string, fallback: number): number {
  const match = pattern instanceof PatternMap
    ? pattern.firstMatch(moduleName)
    : getPatternKey(pattern.keys(), moduleName);
  const key = match ?? moduleName;
  return pattern.get(key) ?? fallback;
}

/**
 * The LoRA rank PEFT gives `moduleName`: the first matching `rank_pattern`
 * entry, else `r`.
 *
 * @example
 * ```ts
 * import { parseLoraConfig } from "./lora.ts";
 * import { rankFor } from "./patterns.ts";
 * const config = parseLoraConfig({ r: 8, target_modules: ["q_proj", "v_proj"], rank_pattern: { v_proj: 4 } });
 * rankFor(config, "model.layers.0.self_attn.v_proj"); // 4
 * rankFor(config, "model.layers.0.self_attn.q_proj"); // 8
 * ```
 */
export function rankFor(config: LoraConfig, moduleName: string): number {
  return lookup(config.rankPattern, moduleName, config.r);
}

/**
 * The `lora_alpha` PEFT gives `moduleName`: the first matching
 * `alpha_pattern` entry, else `lora_alpha`.
 *
 * @example
 * ```ts
 * import { parseLoraConfig } from "./lora.ts";
 * import { alphaFor } from "./patterns.ts";
 * const config = parseLoraConfig({ lora_alpha: 16, target_modules: ["q_proj"], alpha_pattern: { "^model.layers.0.self_attn.q_proj": 32 } });
 * alphaFor(config, "model.layers.0.self_attn.q_proj"); // 32
 * alphaFor(config, "model.layers.1.self_attn.q_proj"); // 16
 * ```
 */
export function alphaFor(config: LoraConfig, moduleName: string): number {
  return lookup(config.alphaPattern, moduleName, config.loraAlpha);
}

/**
 * The scale PEFT multiplies `lora_B @ lora_A` by for `moduleName`:
 * `alpha / sqrt(r)` with `use_rslora`, else `alpha / r`, with `r` and `alpha`
 * both taken from the patterns (`LoraLayer.update_layer`).
 *
 * @example
 * ```ts
 * import { parseLoraConfig } from "./lora.ts";
 * import { scalingFor } from "./patterns.ts";
 * scalingFor(parseLoraConfig({ r: 4, lora_alpha: 8, target_modules: ["q_proj"] }), "q_proj"); // 2
 * scalingFor(parseLoraConfig({ r: 4, lora_alpha: 8, use_rslora: true, target_modules: ["q_proj"] }), "q_proj"); // 4
 * ```
 */
export function scalingFor(config: LoraConfig, moduleName: string): number {
  const r = rankFor(config, moduleName);
  const alpha = alphaFor(config, moduleName);
  return config.useRslora ? alpha / Math.sqrt(r) : alpha / r;
}
