/**
 * PEFT's initialisation of new LoRA tensors (`get_peft_model`):
 * `init_lora_weights: true` gives A Kaiming-uniform (`a = sqrt(5)`, bound
 * `1/sqrt(in)`, as `nn.Linear`) and B zeros; `"gaussian"` gives A normal
 * with std `1/r`; `false` leaves both at `nn.Linear`'s default init. For
 * embeddings PEFT swaps the roles: A zeros, B standard normal (`false`:
 * both standard normal). Seeded, so a seed gives the same adapter.
 * @module
 */
import { UnsupportedError } from "../errors.ts";
import { createRng, type Rng } from "../generate/rng.ts";

function uniform(rng: Rng, n: number, bound: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (2 * rng.uniform() - 1) * bound;
  return out;
}

function normal(rng: Rng, n: number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    // Box-Muller; 1 - u keeps the log finite.
    const r = Math.sqrt(-2 * Math.log(1 - rng.uniform()));
    const t = 2 * Math.PI * rng.uniform();
    out[i] = r * Math.cos(t) * std;
    if (i + 1 < n) out[i + 1] = r * Math.sin(t) * std;
  }
  return out;
}

/**
 * New A (`[r, in]`) and B (`[out, r]`) for one module, PEFT layout.
 *
 * @throws {UnsupportedError} for init schemes that need the base weights or data (pissa, olora, loftq, eva, corda, ...).
 * @example
 * ```ts
 * import { initLora } from "./lora_init.ts";
 * const { a, b } = initLora("linear", 8, 64, 64, true, 0);
 * console.log(a.length, b.every((v) => v === 0)); // 512 true
 * ```
 */
export function initLora(
  kind: "linear" | "embedding",
  r: number,
  inFeatures: number,
  outFeatures: number,
  init: boolean | string,
  seed: number,
): { a: Float32Array; b: Float32Array } {
  const rng = createRng(seed);
  const nA = r * inFeatures;
  const nB = outFeatures * r;
  if (kind === "embedding") {
    if (init === false) return { a: normal(rng, nA, 1), b: normal(rng, nB, 1) };
    if (init === true || init === "gaussian") return { a: new Float32Array(nA), b: normal(rng, nB, 1) };
  } else {
    if (init === true) return { a: uniform(rng, nA, 1 / Math.sqrt(inFeatures)), b: new Float32Array(nB) };
    if (init === "gaussian") return { a: normal(rng, nA, 1 / r), b: new Float32Array(nB) };
    if (init === false) {
      return { a: uniform(rng, nA, 1 / Math.sqrt(inFeatures)), b: uniform(rng, nB, 1 / Math.sqrt(r)) };
    }
  }
  throw new UnsupportedError(
    `init_lora_weights ${JSON.stringify(init)} is not supported by createAdapter; use true, "gaussian" or false`,
    { key: "init_lora_weights" },
  );
}

/**
 * A new `lora_B.bias` (`[out]`, `lora_bias`): zeros for `init_lora_weights`
 * true or `"gaussian"` (PEFT's reset), else `nn.Linear`'s default bias init
 * (uniform, bound `1/sqrt(r)`).
 *
 * @example
 * ```ts
 * import { initLoraBias } from "./lora_init.ts";
 * console.log(initLoraBias(8, 64, true, 0).every((v) => v === 0)); // true
 * ```
 */
export function initLoraBias(r: number, outFeatures: number, init: boolean | string, seed: number): Float32Array {
  if (init === true || init === "gaussian") return new Float32Array(outFeatures);
  // A seed of its own, apart from the module's A and B.
  return uniform(createRng(seed + 0x5eed), outFeatures, 1 / Math.sqrt(r));
}

/**
 * The fields PEFT 0.21's `LoraConfig` writes to `adapter_config.json`, with its defaults.
 *
 * @example
 * ```ts
 * import { PEFT_LORA_DEFAULTS } from "./lora_init.ts";
 * console.log(PEFT_LORA_DEFAULTS.r, PEFT_LORA_DEFAULTS.lora_alpha); // 8 8
 * ```
 */
export const PEFT_LORA_DEFAULTS: Readonly<Record<string, unknown>> = {
  alora_invocation_tokens: null,
  alpha_pattern: {},
  arrow_config: null,
  auto_mapping: null,
  base_model_name_or_path: null,
  bias: "none",
  corda_config: null,
  ensure_weight_tying: false,
  eva_config: null,
  exclude_modules: null,
  fan_in_fan_out: false,
  inference_mode: false,
  init_lora_weights: true,
  kasa_config: null,
  layer_replication: null,
  layers_pattern: null,
  layers_to_transform: null,
  loftq_config: {},
  lora_alpha: 8,
  lora_bias: false,
  lora_dropout: 0.0,
  lora_ga_config: null,
  megatron_config: null,
  megatron_core: "megatron.core",
  modules_to_save: null,
  monteclora_config: null,
  peft_type: "LORA",
  peft_version: "0.21.0",
  qalora_group_size: 16,
  r: 8,
  rank_pattern: {},
  revision: null,
  target_modules: null,
  target_parameters: null,
  task_type: null,
  trainable_token_indices: null,
  use_bdlora: null,
  use_dora: false,
  use_qalora: false,
  use_rslora: false,
  velora_config: null,
};
