/**
 * Shapes and layouts shared by the LoRA kernels.
 *
 * @module
 */

/**
 * How a base weight `W` is stored, row-major:
 * - `"out_in"`: `[out, in]` (torch `Linear.weight`, ONNX `Gemm` with `transB=1`);
 * - `"in_out"`: `[in, out]` (ONNX `MatMul` weight, `Gemm` with `transB=0`, GPT-2 `Conv1D`).
 *
 * @example
 * ```ts
 * import type { WeightLayout } from "./types.ts";
 * const layout: WeightLayout = "in_out"; // an ONNX MatMul initializer
 * ```
 */
export type WeightLayout = "out_in" | "in_out";

/**
 * Dims of one LoRA pair on a linear layer: `A` is `[rank, inFeatures]`,
 * `B` is `[outFeatures, rank]` (PEFT's `lora_A` / `lora_B` shapes), and `W`
 * holds `outFeatures * inFeatures` values in its {@linkcode WeightLayout}.
 *
 * @example
 * ```ts
 * import type { LoraDims } from "./types.ts";
 * const dims: LoraDims = { outFeatures: 4096, inFeatures: 4096, rank: 16 };
 * ```
 */
export interface LoraDims {
  /** Output features of the layer (rows of `B`). */
  outFeatures: number;
  /** Input features of the layer (columns of `A`). */
  inFeatures: number;
  /** LoRA rank `r` (rows of `A`, columns of `B`). */
  rank: number;
}

/**
 * Dims of a LoRA pair on an embedding: `lora_embedding_A` is
 * `[rank, numEmbeddings]`, `lora_embedding_B` is `[embeddingDim, rank]` and the
 * table is `[numEmbeddings, embeddingDim]`.
 *
 * @example
 * ```ts
 * import type { EmbeddingDims } from "./types.ts";
 * const dims: EmbeddingDims = { numEmbeddings: 32000, embeddingDim: 2048, rank: 8 };
 * ```
 */
export interface EmbeddingDims {
  /** Rows of the embedding table (vocabulary size). */
  numEmbeddings: number;
  /** Width of one embedding vector. */
  embeddingDim: number;
  /** LoRA rank `r`. */
  rank: number;
}
