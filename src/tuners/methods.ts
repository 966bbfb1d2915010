/**
 * The non-LoRA methods by `peft_type`.
 * @module
 */
import { adalora } from "./adalora/mod.ts";
import { boft } from "./boft/mod.ts";
import type { TunerType } from "./config.ts";
import { fourierft } from "./fourierft/mod.ts";
import { ia3 } from "./ia3/mod.ts";
import { loha } from "./loha/mod.ts";
import { lnTuning } from "./ln_tuning/mod.ts";
import { lokr } from "./lokr/mod.ts";
import type { TunerMethod } from "./method.ts";
import { oft } from "./oft/mod.ts";
import { vera } from "./vera/mod.ts";

/**
 * Each supported method by its `peft_type`.
 *
 * @example
 * ```ts
 * import { TUNER_METHODS } from "./methods.ts";
 * Object.keys(TUNER_METHODS); // ["IA3", "LOHA", "LOKR", "ADALORA", "VERA", "OFT", "BOFT", "FOURIERFT", "LN_TUNING"]
 * ```
 */
export const TUNER_METHODS: Readonly<Record<TunerType, TunerMethod>> = Object.freeze({
  IA3: ia3,
  LOHA: loha,
  LOKR: lokr,
  ADALORA: adalora,
  VERA: vera,
  OFT: oft,
  BOFT: boft,
  FOURIERFT: fourierft,
  LN_TUNING: lnTuning,
});

/**
 * Whether a `peft_type` is one of {@linkcode TUNER_METHODS}.
 *
 * @example
 * ```ts
 * import { isTunerType } from "./methods.ts";
 * isTunerType("LOHA"); // true
 * ```
 */
export function isTunerType(peftType: unknown): peftType is TunerType {
  return typeof peftType === "string" && Object.hasOwn(TUNER_METHODS, peftType);
}
