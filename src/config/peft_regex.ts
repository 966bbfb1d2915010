/**
 * The regexes PEFT builds around user-supplied names, compiled with Python
 * semantics. Each template is PEFT's own, quoted in the doc comment, so the
 * user's text lands inside it exactly as it does in Python (unescaped: it is
 * regex source there too).
 *
 * @module
 */
import type { ErrorContext } from "../errors.ts";
import { compilePythonRegex } from "./python_regex.ts";

/**
 * A string `target_modules` / `exclude_modules`: `re.fullmatch(pattern, key)`
 * (`check_target_module_exists`, via `match_target_against_key`).
 *
 * @example
 * ```ts
 * import { fullmatchRegex } from "./peft_regex.ts";
 * fullmatchRegex(".*\\.(q|v)_proj").test("model.layers.0.self_attn.v_proj"); // true
 * ```
 */
export function fullmatchRegex(pattern: string, context: ErrorContext = {}): RegExp {
  return compilePythonRegex(pattern, "fullmatch", context);
}

/**
 * Layer index extraction for `layers_to_transform`
 * (`check_target_module_exists`): with a layers pattern `p`,
 * `re.match(rf".*\.{p}\.(\d+)\.", key)`; with none (`None`, `""`, `[]`),
 * `re.match(r".*\.[^.]*\.(\d+)\.", key)`. Group 1 is the index.
 *
 * @example
 * ```ts
 * import { layerIndexRegex } from "./peft_regex.ts";
 * layerIndexRegex("h").exec("transformer.h.3.attn.c_attn")?.[1]; // "3"
 * layerIndexRegex(null).exec("model.layers.12.mlp.up_proj")?.[1]; // "12"
 * ```
 */
export function layerIndexRegex(layersPattern: string | null, context: ErrorContext = {}): RegExp {
  const source = layersPattern === null ? String.raw`.*\.[^.]*\.(\d+)\.` : String.raw`.*\.${layersPattern}\.(\d+)\.`;
  return compilePythonRegex(source, "match", context);
}

/**
 * A `modules_to_save` entry `m` excludes a module from LoRA when
 * `re.match(rf"(^|.*\.){m}($|\..*)", key)` (`check_target_module_exists`).
 *
 * @example
 * ```ts
 * import { modulesToSaveRegex } from "./peft_regex.ts";
 * modulesToSaveRegex("score").test("score"); // true
 * modulesToSaveRegex("score").test("model.score.dense"); // true
 * modulesToSaveRegex("score").test("model.rescore"); // false
 * ```
 */
export function modulesToSaveRegex(moduleToSave: string, context: ErrorContext = {}): RegExp {
  return compilePythonRegex(String.raw`(^|.*\.)${moduleToSave}($|\..*)`, "match", context);
}

/**
 * A `rank_pattern` / `alpha_pattern` key matches a module when
 * `re.match(rf"(.*\.)?({key})$", key_to_match)` (`peft.utils.other.get_pattern_key`).
 *
 * @example
 * ```ts
 * import { patternKeyRegex } from "./peft_regex.ts";
 * patternKeyRegex("q_proj").test("model.layers.0.self_attn.q_proj"); // true
 * patternKeyRegex("q_proj").test("model.layers.0.self_attn.xq_proj"); // false
 * patternKeyRegex("^model.decoder.layers.0.encoder_attn.k_proj").test("model.decoder.layers.0.encoder_attn.k_proj"); // true
 * ```
 */
export function patternKeyRegex(key: string, context: ErrorContext = {}): RegExp {
  return compilePythonRegex(String.raw`(.*\.)?(${key})$`, "match", context);
}
