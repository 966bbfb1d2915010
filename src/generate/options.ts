/**
 * Generation options, their defaults (options, then `generation_config.json`,
 * then transformers' defaults) and their validation.
 * @module
 */
import { GenerationError } from "../errors.ts";
import type { GenerationConfig } from "./generation_config.ts";
import { randomSeed, SEED_LIMIT } from "./rng.ts";

/** Options of `generate` and `stream`. */
export interface GenerateOptions {
  /** New tokens to generate at most (default: `max_new_tokens` of generation_config.json, else 20). */
  maxNewTokens?: number;
  /**
   * Sampling temperature; 0 decodes greedily. Default: generation_config's
   * `temperature` (1 if unset) when it has `do_sample: true`, else 0.
   */
  temperature?: number;
  /** Keep the k most likely tokens when sampling; 0 keeps all (default: generation_config or 50). */
  topK?: number;
  /** Nucleus sampling mass in (0, 1] (default: generation_config or 1). */
  topP?: number;
  /** transformers' repetition penalty, > 0; 1 disables (default: generation_config or 1). */
  repetitionPenalty?: number;
  /** Seed of the sampling RNG, an integer in [0, 2^32); random when omitted. */
  seed?: number;
  /** Strings that end generation; the text from the first match on is not returned. */
  stop?: string | readonly string[];
  /**
   * Token id(s) that end generation and are not returned. Default:
   * generation_config's, then config.json's, then the tokenizer's `eos_token`.
   * `[]` disables.
   */
  eosTokenId?: number | readonly number[];
  /** Adapter(s) to run with, passed to the model's `run`; `null` for the base alone. */
  adapter?: string | readonly string[] | null;
  /** Aborts generation: checked before and after every model run. */
  signal?: AbortSignal;
  /** Defaults from `generation_config.json` (see `loadGenerationConfig`). */
  generationConfig?: GenerationConfig;
  /** Add the tokenizer's special tokens (BOS) to a text prompt (default true; chat prompts never). */
  addSpecialTokens?: boolean;
}

/** Options after defaults and validation, as the generation loop uses them. */
export interface GenerationSettings {
  /** New tokens at most. */
  readonly maxNewTokens: number;
  /** 0: greedy. */
  readonly temperature: number;
  /** 0: all tokens. */
  readonly topK: number;
  /** 1: all tokens. */
  readonly topP: number;
  /** 1: none. */
  readonly repetitionPenalty: number;
  /** The RNG seed. */
  readonly seed: number;
  /** Stop strings, non-empty. */
  readonly stop: readonly string[];
  /** Ids that end generation. */
  readonly eosTokenIds: ReadonlySet<number>;
}

/** Checks a number option; throws a GenerationError naming it. */
function check(key: string, value: number, ok: boolean, wanted: string): number {
  if (typeof value !== "number" || !ok) {
    throw new GenerationError(`must be ${wanted}, got ${String(value)}`, { key });
  }
  return value;
}

/** Reads the eos option or default into a set, checking the ids. */
function eosSet(value: number | readonly number[] | undefined): Set<number> {
  const list = value === undefined ? [] : typeof value === "number" ? [value] : value;
  if (!Array.isArray(list) || !list.every((id) => Number.isInteger(id) && id >= 0)) {
    throw new GenerationError(`must be a token id or a list of them, got ${String(value)}`, {
      key: "eosTokenId",
    });
  }
  return new Set(list);
}

/** Context for defaults that do not come from the options. */
export interface SettingsContext {
  /** Prompt length in tokens (for generation_config's `max_length`). */
  promptLength: number;
  /** `eos_token_id` of config.json. */
  configEos?: unknown;
  /** The tokenizer's eos id. */
  tokenizerEos?: number;
}

/**
 * Applies defaults and validates; throws {@linkcode GenerationError} naming
 * the bad option.
 *
 * @example
 * ```ts
 * import { resolveSettings } from "./options.ts";
 * const s = resolveSettings({ temperature: 0.7, seed: 1, stop: "\n\n" }, { promptLength: 4 });
 * s.topK; // 50
 * ```
 */
export function resolveSettings(options: GenerateOptions, context: SettingsContext): GenerationSettings {
  const gc = options.generationConfig ?? {};
  const maxNewTokens = options.maxNewTokens ?? gc.maxNewTokens ??
    (gc.maxLength !== undefined ? Math.max(0, gc.maxLength - context.promptLength) : 20);
  check("maxNewTokens", maxNewTokens, Number.isSafeInteger(maxNewTokens) && maxNewTokens >= 0, "an integer >= 0");
  const temperature = options.temperature ?? (gc.doSample ? gc.temperature ?? 1 : 0);
  check("temperature", temperature, Number.isFinite(temperature) && temperature >= 0, "a finite number >= 0");
  const topK = options.topK ?? gc.topK ?? 50;
  check("topK", topK, Number.isSafeInteger(topK) && topK >= 0, "an integer >= 0 (0 keeps all tokens)");
  const topP = options.topP ?? gc.topP ?? 1;
  check("topP", topP, Number.isFinite(topP) && topP > 0 && topP <= 1, "a number in (0, 1]");
  const repetitionPenalty = options.repetitionPenalty ?? gc.repetitionPenalty ?? 1;
  check(
    "repetitionPenalty",
    repetitionPenalty,
    Number.isFinite(repetitionPenalty) && repetitionPenalty > 0,
    "a finite number > 0 (1 disables)",
  );
  const seed = options.seed ?? randomSeed();
  check("seed", seed, Number.isInteger(seed) && seed >= 0 && seed < SEED_LIMIT, "an integer in [0, 2^32)");
  const stop = options.stop === undefined ? [] : typeof options.stop === "string" ? [options.stop] : options.stop;
  if (!Array.isArray(stop) || !stop.every((s) => typeof s === "string" && s.length > 0)) {
    throw new GenerationError("must be a non-empty string or a list of them", { key: "stop" });
  }
  let eos: number | readonly number[] | undefined = options.eosTokenId ?? gc.eosTokenId;
  if (eos === undefined) {
    const fromConfig = context.configEos;
    eos = (typeof fromConfig === "number" || Array.isArray(fromConfig))
      ? fromConfig as number | number[]
      : context.tokenizerEos;
  }
  return {
    maxNewTokens,
    temperature,
    topK,
    topP,
    repetitionPenalty,
    seed,
    stop: [...stop],
    eosTokenIds: eosSet(eos),
  };
}
