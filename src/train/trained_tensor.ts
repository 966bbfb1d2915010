/**
 * A trained tensor under its PEFT key, and the transpose that moves tensors
 * between PyTorch's layout and the graph's. Shared by the LoRA and site
 * parameters (one module, so neither imports the other).
 * @module
 */

/**
 * One trained tensor under its PEFT key.
 *
 * @example
 * ```ts
 * import type { TrainedTensor } from "./trained_tensor.ts";
 * const t: TrainedTensor = { key: "base_model.model.x.lora_A.weight", shape: [1, 2], data: new Float32Array(2) };
 * ```
 */
export interface TrainedTensor {
  key: string;
  shape: number[];
  data: Float32Array;
}

/**
 * `[rows, cols]` row-major -> its transpose, times `scale`.
 *
 * @example
 * ```ts
 * import { transposed } from "./trained_tensor.ts";
 * transposed(new Float32Array([1, 2, 3, 4, 5, 6]), 2, 3); // [1, 4, 2, 5, 3, 6]
 * ```
 */
export function transposed(data: Float32Array, rows: number, cols: number, scale = 1): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c] * scale;
  return out;
}
