/**
 * Writing an adapter the way PEFT's `save_pretrained` does:
 * `adapter_config.json` (every field of the config, keys sorted, indent 2,
 * `inference_mode: true`) and `adapter_model.safetensors` (PEFT's keys,
 * without the adapter name, float32, metadata `{"format": "pt"}`).
 * @module
 */
import { serializeSafetensors, type TensorInput } from "../safetensors/mod.ts";
import type { TrainedTensor } from "./trained_tensor.ts";

/** PEFT's file names. */
export const ADAPTER_CONFIG_FILE = "adapter_config.json";
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";

function sortedDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedDeep);
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return Object.fromEntries(entries.map(([k, v]) => [k, sortedDeep(v)]));
  }
  return value;
}

/**
 * The text of `adapter_config.json` for a config object (as read, or as
 * `createAdapter` made it), as PEFT writes it.
 *
 * @example
 * ```ts
 * import { adapterConfigText } from "./peft_format.ts";
 * console.log(adapterConfigText({ r: 8, peft_type: "LORA", inference_mode: false }));
 * // {\n  "inference_mode": true,\n  "peft_type": "LORA",\n  "r": 8\n}
 * ```
 */
export function adapterConfigText(raw: Readonly<Record<string, unknown>>): string {
  return JSON.stringify(sortedDeep({ ...raw, inference_mode: true }), null, 2);
}

/**
 * `adapter_model.safetensors` bytes for trained tensors (and any other tensors kept as they were).
 *
 * @example
 * ```ts
 * import { adapterWeightsBytes } from "./peft_format.ts";
 * const bytes = adapterWeightsBytes([{ key: "base_model.model.q.lora_A.weight", shape: [1, 2], data: new Float32Array(2) }]);
 * ```
 */
export function adapterWeightsBytes(
  tensors: readonly TrainedTensor[],
  others: Record<string, TensorInput> = {},
): Uint8Array {
  const all: Record<string, TensorInput> = { ...others };
  for (const t of tensors) all[t.key] = { dtype: "F32", shape: t.shape, data: t.data };
  return serializeSafetensors(all, { format: "pt" });
}
