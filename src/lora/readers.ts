/**
 * What the apply step reads, in both modes: adapter tensors and base weights
 * as float32. Merging and dynamic feeds take the same two readers.
 * @module
 */
import type { InitializerUse } from "../onnx/weight_index.ts";

/**
 * An adapter's tensor as float32, by key in its safetensors file.
 *
 * @example
 * ```ts
 * import type { AdapterTensorReader } from "./readers.ts";
 * const tensors = new Map([["lora_A", new Float32Array(4)]]);
 * const tensor: AdapterTensorReader = (key) => tensors.get(key)!;
 * ```
 */
export type AdapterTensorReader = (key: string) => Float32Array;

/**
 * A fresh float32 copy of the base weight a node input reads, in the stored
 * layout. Merging reads any {@linkcode InitializerUse} (an earlier adapter's
 * merged values, or the base's); dynamic mode reads a whole `WeightTarget`
 * (dequantized for quantized projections).
 *
 * @example
 * ```ts
 * import type { BaseWeightReader } from "./readers.ts";
 * import type { WeightTarget } from "../onnx/weight_index.ts";
 * const zeros: BaseWeightReader<WeightTarget> = (t) => new Float32Array(t.inFeatures * t.outFeatures);
 * ```
 */
export type BaseWeightReader<U extends InitializerUse = InitializerUse> = (use: U) => Float32Array;
