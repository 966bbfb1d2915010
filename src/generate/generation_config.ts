/**
 * Defaults for generation from a model's `generation_config.json`
 * (transformers' `GenerationConfig`), in camelCase.
 * @module
 */
import { GenerationError } from "../errors.ts";
import type { FileSource } from "../storage/file_source.ts";
import { readJsonObject } from "../storage/json_file.ts";

/**
 * The `generation_config.json` fields peft-edge uses. Every field is optional;
 * options given to `generate` override them.
 */
export interface GenerationConfig {
  /** `max_new_tokens`. */
  maxNewTokens?: number;
  /** `max_length`: prompt plus new tokens (used when `max_new_tokens` is absent). */
  maxLength?: number;
  /** `do_sample`: sample (true) or decode greedily (false, the default). */
  doSample?: boolean;
  /** `temperature` used when sampling. */
  temperature?: number;
  /** `top_k` used when sampling. */
  topK?: number;
  /** `top_p` used when sampling. */
  topP?: number;
  /** `repetition_penalty`. */
  repetitionPenalty?: number;
  /** `eos_token_id`, always as a list. */
  eosTokenId?: number[];
  /** `bos_token_id`. */
  bosTokenId?: number;
  /** `pad_token_id`. */
  padTokenId?: number;
}

const FILE = "generation_config.json";

/** Reads an optional number or boolean field, naming it on a type error. */
function field<T extends number | boolean>(
  json: Record<string, unknown>,
  key: string,
  type: "number" | "boolean",
): T | undefined {
  const value = json[key];
  if (value === undefined || value === null) return undefined;
  const ok = type === "number" ? typeof value === "number" : typeof value === "boolean";
  if (!ok) {
    throw new GenerationError(`must be a ${type}, got ${JSON.stringify(value)}`, { file: FILE, key });
  }
  return value as T;
}

/** Reads `eos_token_id`: a number, or a list of numbers. */
function eosList(value: unknown): number[] | undefined {
  if (value === undefined || value === null) return undefined;
  const list = Array.isArray(value) ? value : [value];
  if (!list.every((id) => Number.isInteger(id) && id >= 0)) {
    throw new GenerationError(`must be a token id or a list of them, got ${JSON.stringify(value)}`, {
      file: FILE,
      key: "eos_token_id",
    });
  }
  return list as number[];
}

/**
 * Picks the fields peft-edge uses out of a parsed `generation_config.json`
 * (or `config.json`, which older models use for the same keys).
 *
 * @example
 * ```ts
 * import { parseGenerationConfig } from "./generation_config.ts";
 * parseGenerationConfig({ do_sample: false, max_new_tokens: 120, eos_token_id: 2 });
 * // { doSample: false, maxNewTokens: 120, eosTokenId: [2], ... }
 * ```
 */
export function parseGenerationConfig(json: Record<string, unknown>): GenerationConfig {
  const config: GenerationConfig = {
    maxNewTokens: field(json, "max_new_tokens", "number"),
    maxLength: field(json, "max_length", "number"),
    doSample: field(json, "do_sample", "boolean"),
    temperature: field(json, "temperature", "number"),
    topK: field(json, "top_k", "number"),
    topP: field(json, "top_p", "number"),
    repetitionPenalty: field(json, "repetition_penalty", "number"),
    eosTokenId: eosList(json.eos_token_id),
    bosTokenId: field(json, "bos_token_id", "number"),
    padTokenId: field(json, "pad_token_id", "number"),
  };
  for (const key of Object.keys(config) as (keyof GenerationConfig)[]) {
    if (config[key] === undefined) delete config[key];
  }
  return config;
}

/**
 * Loads `generation_config.json` from a model's files; `{}` when the model
 * has none.
 *
 * @example
 * ```ts
 * import { loadGenerationConfig } from "./generation_config.ts";
 * import { localSource } from "../storage/local.ts";
 * const defaults = await loadGenerationConfig(localSource("examples/demo/byte-llama"));
 * defaults.maxNewTokens; // 120
 * ```
 */
export async function loadGenerationConfig(source: FileSource): Promise<GenerationConfig> {
  if (!await source.exists(FILE)) return {};
  return parseGenerationConfig(await readJsonObject(source, FILE, GenerationError));
}
