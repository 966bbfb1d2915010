/**
 * Which modules a LoRA config adapts: PEFT's `check_target_module_exists`
 * (`peft/tuners/tuners_utils.py`, v0.19), rule for rule.
 *
 * Module names are as `named_modules()` of the wrapped transformers model
 * gives them, i.e. without PEFT's `base_model.model.` prefix:
 * `model.layers.0.self_attn.q_proj`, `transformer.h.0.attn.c_attn`.
 *
 * @module
 */
import { AdapterConfigError, UnsupportedError } from "../errors.ts";
import type { LoraConfig } from "./lora.ts";
import { fullmatchRegex, layerIndexRegex, modulesToSaveRegex, type PythonRegex } from "./regex.ts";

/** PEFT's `INCLUDE_LINEAR_LAYERS_SHORTHAND`. */
const ALL_LINEAR = "all-linear";

/**
 * Does the config use PEFT's `target_modules="all-linear"` shorthand
 * (compared case-insensitively, as `_maybe_include_all_linear_layers` does)?
 * Such a config must be expanded against the model with
 * {@linkcode expandAllLinear} before modules can be matched.
 *
 * @example
 * ```ts
 * import { parseLoraConfig } from "./lora.ts";
 * import { isAllLinear } from "./targets.ts";
 * isAllLinear(parseLoraConfig({ target_modules: "all-linear" })); // true
 * isAllLinear(parseLoraConfig({ target_modules: ["q_proj"] })); // false
 * ```
 */
export function isAllLinear(config: LoraConfig): boolean {
  return typeof config.targetModules === "string" && config.targetModules.toLowerCase() === ALL_LINEAR;
}

/**
 * Options of {@linkcode expandAllLinear}.
 *
 * @example
 * ```ts
 * import type { ExpandAllLinearOptions } from "./targets.ts";
 * const gptNeoX: ExpandAllLinearOptions = { outputEmbedding: "embed_out" };
 * ```
 */
export interface ExpandAllLinearOptions {
  /**
   * Full name of the model's output layer (`get_output_embeddings()`), which
   * PEFT leaves out; `null` when the model has none. Default `"lm_head"`.
   */
  outputEmbedding?: string | null;
}

/**
 * Replace `"all-linear"` by the model's linear (`nn.Linear` / `Conv1D`)
 * module names, minus the output layer, as PEFT's
 * `_maybe_include_all_linear_layers` does. Configs without the shorthand are
 * returned unchanged.
 *
 * @param linearModuleNames Full names of every linear module of the base model.
 *
 * @example
 * ```ts
 * import { parseLoraConfig } from "./lora.ts";
 * import { expandAllLinear, isTargetModule } from "./targets.ts";
 * const config = expandAllLinear(parseLoraConfig({ target_modules: "all-linear" }), ["model.layers.0.mlp.up_proj", "lm_head"]);
 * isTargetModule(config, "model.layers.0.mlp.up_proj"); // true
 * isTargetModule(config, "lm_head"); // false
 * ```
 */
export function expandAllLinear(
  config: LoraConfig,
  linearModuleNames: readonly string[],
  options: ExpandAllLinearOptions = {},
): LoraConfig {
  if (!isAllLinear(config)) return config;
  const output = options.outputEmbedding === undefined ? "lm_head" : options.outputEmbedding;
  const targets = [...new Set(linearModuleNames)].filter((name) => name !== output);
  return Object.freeze({ ...config, targetModules: targets });
}

/** `key in target_modules or any(key.endswith(f".{t}") for t in target_modules)`. */
function listMatcher(names: readonly string[]): (key: string) => boolean {
  const exact = new Set(names);
  const suffixes = names.map((name) => `.${name}`);
  return (key) => exact.has(key) || suffixes.some((suffix) => key.endsWith(suffix));
}

/** The `layers_to_transform` filter, or `null` when the config does not restrict layers. */
function layerFilter(config: LoraConfig): ((key: string) => boolean) | null {
  const indexes = config.layersToTransform;
  // is_using_layer_indexes: an int (even 0) or a non-empty list.
  if (indexes === null || (Array.isArray(indexes) && indexes.length === 0)) return null;
  const patterns = config.layersPattern;
  // "empty layers_pattern means any layer pattern is ok" (None, "" or []).
  const regexes = patterns === null || patterns.length === 0
    ? [layerIndexRegex(null)]
    : (typeof patterns === "string" ? [patterns] : patterns).map((p) => layerIndexRegex(p, { key: "layers_pattern" }));
  const wanted = (index: number) => (typeof indexes === "number" ? index === indexes : indexes.includes(index));
  return (key) => {
    for (const regex of regexes) {
      const m = regex.exec(key);
      if (!m) continue;
      const index = m[1] ?? "";
      // First pattern that matches decides; PEFT reads int(match.group(1)), so a
      // capturing group inside layers_pattern makes PEFT fail here too.
      if (!/^\d+$/.test(index)) {
        throw new AdapterConfigError(
          `the layer index of ${JSON.stringify(key)} is group 1, ${JSON.stringify(index)}, which is not an integer ` +
            "(layers_pattern must not contain a capturing group; use (?:...))",
          { key: "layers_pattern" },
        );
      }
      return wanted(parseInt(index, 10));
    }
    return false;
  };
}

/**
 * Compile the config's matching rules once; the returned predicate answers
 * {@linkcode isTargetModule} for any module name. Prefer this when testing
 * many modules.
 *
 * @throws {UnsupportedError} for `"all-linear"` (expand it first with
 *   {@linkcode expandAllLinear}) and for `target_modules: null` without
 *   `target_parameters` (PEFT would pick targets from its per-architecture
 *   table).
 *
 * @example
 * ```ts
 * import { parseLoraConfig } from "./lora.ts";
 * import { createTargetMatcher } from "./targets.ts";
 * const matches = createTargetMatcher(parseLoraConfig({ target_modules: ["q_proj", "v_proj"] }));
 * ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj"].filter(matches); // ["model.layers.0.self_attn.q_proj"]
 * ```
 */
export function createTargetMatcher(config: LoraConfig): (moduleName: string) => boolean {
  const targets = config.targetModules;
  if (isAllLinear(config)) {
    throw new UnsupportedError(
      'target_modules "all-linear" must be expanded against the model (expandAllLinear) before matching',
      { key: "target_modules" },
    );
  }
  if (targets === null && config.targetParameters === null) {
    throw new UnsupportedError(
      "target_modules is null: PEFT would choose targets from the model architecture; list them explicitly",
      { key: "target_modules" },
    );
  }

  // 1. exclude_modules (only when truthy): regex fullmatch, exact name, or ".suffix".
  const excl = config.excludeModules;
  const excluded = !excl || excl.length === 0
    ? () => false
    : typeof excl === "string"
    ? ((re: PythonRegex) => (key: string) => re.test(key))(fullmatchRegex(excl, { key: "exclude_modules" }))
    : listMatcher(excl);

  // 2. Adapters never target modules_to_save modules (or anything inside them).
  const saved = (config.modulesToSave ?? []).map((m) => modulesToSaveRegex(m, { key: "modules_to_save" }));

  // 3. target_modules None with target_parameters set: no module is targeted.
  if (targets === null) return () => false;

  // 4. Regex: fullmatch, and layers_to_transform does not apply (the config forbids it anyway).
  if (typeof targets === "string") {
    const re = fullmatchRegex(targets, { key: "target_modules" });
    return (key) => !excluded(key) && !saved.some((s) => s.test(key)) && re.test(key);
  }

  // 5. List: an exact name is a match as is; a ".suffix" match must also pass the layer filter.
  const exact = new Set(targets);
  const suffix = listMatcher(targets);
  const inLayers = layerFilter(config);
  return (key) => {
    if (excluded(key) || saved.some((s) => s.test(key))) return false;
    if (exact.has(key)) return true;
    return suffix(key) && (inLayers === null || inLayers(key));
  };
}

/**
 * Would PEFT put this config's LoRA on `moduleName`? Implements
 * `check_target_module_exists`: `exclude_modules` and `modules_to_save`
 * exclude first; a string `target_modules` must `re.fullmatch` the name; a
 * list matches the exact name or a `.`-separated suffix (`q_proj` matches
 * `model.layers.0.self_attn.q_proj`, never `...xq_proj`), and suffix matches
 * are then restricted to `layers_to_transform`, reading the layer index after
 * `layers_pattern` (or after any `name.<digits>.` when there is no pattern).
 *
 * @throws {UnsupportedError} see {@linkcode createTargetMatcher}.
 *
 * @example
 * ```ts
 * import { parseLoraConfig } from "./lora.ts";
 * import { isTargetModule } from "./targets.ts";
 * const config = parseLoraConfig({ target_modules: ["c_attn"], layers_to_transform: [0], layers_pattern: "h" });
 * isTargetModule(config, "transformer.h.0.attn.c_attn"); // true
 * isTargetModule(config, "transformer.h.1.attn.c_attn"); // false
 * ```
 */
export function isTargetModule(config: LoraConfig, moduleName: string): boolean {
  return createTargetMatcher(config)(moduleName);
}
