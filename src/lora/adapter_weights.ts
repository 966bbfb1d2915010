/**
 * Grouping an adapter's state dict (PEFT's saved keys) by module. PEFT saves
 * `base_model.model.<module>.lora_A.weight`, `.lora_B.weight`,
 * `.lora_B.bias`, `.lora_magnitude_vector` (DoRA), `.lora_embedding_A/B`,
 * the wrapped layer's own parameters (`<module>.base_layer.weight`/`.bias`)
 * and, for `modules_to_save` / `bias: "all"`, other modules' full
 * parameters (`<module>.weight`, `<module>.bias`).
 * @module
 */

/** The adapter tensors of one module, by role (tensor keys in the file). */
export interface ModuleTensors {
  /** PyTorch module name without PEFT's `base_model.model.` prefix. */
  module: string;
  loraA?: string;
  loraB?: string;
  loraBias?: string;
  magnitude?: string;
  embeddingA?: string;
  embeddingB?: string;
  /** Full replacement weight (modules_to_save). */
  fullWeight?: string;
  /** Full replacement bias (modules_to_save, `bias: "all"`). */
  fullBias?: string;
  /** The LoRA-wrapped layer's own weight (`<module>.base_layer.weight`, saved with embedding LoRAs). */
  baseWeight?: string;
  /** The LoRA-wrapped layer's own trained bias (`<module>.base_layer.bias`, `bias: "lora_only"` / `"all"`). */
  baseBias?: string;
  /** PEFT's TrainableTokens rows (`<module>.token_adapter.trainable_tokens_delta`, `[tokens, dim]`). */
  tokenDelta?: string;
}

/** The adapter's keys grouped by module, plus keys of no known form. */
export interface AdapterLayout {
  modules: Map<string, ModuleTensors>;
  /** Keys whose form peft-edge does not understand (reported, not applied). */
  unknownKeys: string[];
}

const PEFT_PREFIX = "base_model.model.";

const ROLES: ReadonlyArray<[suffix: string, role: keyof Omit<ModuleTensors, "module">]> = [
  [".token_adapter.trainable_tokens_delta", "tokenDelta"],
  [".lora_A.weight", "loraA"],
  [".lora_B.weight", "loraB"],
  [".lora_B.bias", "loraBias"],
  [".lora_magnitude_vector.weight", "magnitude"],
  [".lora_magnitude_vector", "magnitude"],
  [".lora_embedding_A", "embeddingA"],
  [".lora_embedding_B", "embeddingB"],
  [".base_layer.weight", "baseWeight"],
  [".base_layer.bias", "baseBias"],
  [".weight", "fullWeight"],
  [".bias", "fullBias"],
];

/**
 * Groups adapter tensor keys by the PyTorch module they belong to.
 *
 * @example
 * ```ts
 * import { groupAdapterKeys } from "./adapter_weights.ts";
 * const layout = groupAdapterKeys([
 *   "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
 *   "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
 * ]);
 * layout.modules.get("model.layers.0.self_attn.q_proj")?.loraA;
 * ```
 */
export function groupAdapterKeys(keys: Iterable<string>): AdapterLayout {
  const modules = new Map<string, ModuleTensors>();
  const unknownKeys: string[] = [];
  for (const key of keys) {
    const name = key.startsWith(PEFT_PREFIX) ? key.slice(PEFT_PREFIX.length) : key;
    const match = ROLES.find(([suffix]) => name.endsWith(suffix) && name.length > suffix.length);
    if (!match) {
      unknownKeys.push(key);
      continue;
    }
    const [suffix, role] = match;
    const module = name.slice(0, -suffix.length);
    const entry = modules.get(module) ?? { module };
    entry[role] = key;
    modules.set(module, entry);
  }
  return { modules, unknownKeys };
}
