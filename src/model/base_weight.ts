/**
 * A base module's weight as float32, as the graph stores it: a float
 * initializer's values, or a quantized one dequantized (what its operator
 * multiplies by).
 * @module
 */
import { externalBytes } from "../onnx/external_data.ts";
import { readTargetWeight } from "../onnx/quantized_weights.ts";
import type { WeightTarget } from "../onnx/weight_target.ts";
import type { BaseModel } from "./base_model.ts";

/**
 * Reads `target`'s weight from `base`, in the target's `layout`.
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "./base_model.ts";
 * import { baseTargetWeight } from "./base_weight.ts";
 * const base = await loadBaseModel("tests/fixtures/real/bases/llama-torchscript");
 * const embedding = baseTargetWeight(base, base.weights.resolve("model.embed_tokens")!);
 * console.log(embedding.length); // vocab × hidden
 * ```
 */
export function baseTargetWeight(base: BaseModel, target: WeightTarget): Float32Array {
  if (!target.quantized) return base.readWeight(target.initializer);
  return readTargetWeight(base.onnx.graph!, target, base.file, (t) => externalBytes(t, base.externalData, base.file));
}
