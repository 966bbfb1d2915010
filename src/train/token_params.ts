/**
 * Trained trainable tokens (PEFT's `trainable_tokens_delta`, `[K, dim]`):
 * the rows that replace an embedding's rows for K token ids, fed to the
 * embedding's trainable-tokens branch (`token_branches.ts`) and trained
 * through it (the gradient of a row sums the embedding output's gradient
 * where its id occurs, as PEFT's `index_copy` + embedding gives).
 * @module
 */
import { Tensor } from "../deps/ort.ts";
import { UnsupportedError } from "../errors.ts";
import type { TokensPatch } from "../lora/plan.ts";
import type { TokenBranch } from "../onnx/token_branches.ts";
import type { TrainedTensor } from "./trained_tensor.ts";

interface Tokens {
  branch: TokenBranch;
  ids: readonly number[];
  tensor: TrainedTensor;
}

/**
 * The trainable tokens of one adapter.
 *
 * @example
 * ```ts
 * import { TokenParameters } from "./token_params.ts";
 * const none = new TokenParameters([], new Map(), () => new Float32Array());
 * console.log(none.tensors.length); // 0
 * ```
 */
export class TokenParameters {
  readonly #tokens: Tokens[] = [];
  /** Every trained tensor (one `trainable_tokens_delta` per embedding). */
  readonly tensors: TrainedTensor[] = [];

  /**
   * @throws {UnsupportedError} for tokens on a tied `lm_head` (one delta trained through two branches) or an id
   * listed twice (PEFT's `index_copy` keeps one of the rows).
   */
  constructor(
    patches: readonly TokensPatch[],
    branches: ReadonlyMap<string, TokenBranch>,
    read: (key: string) => Float32Array,
  ) {
    for (const patch of patches) {
      const module = patch.target.module;
      if (patch.tokensAreOutputs) {
        throw new UnsupportedError("training trainable tokens of a tied lm_head is not supported", { key: module });
      }
      if (new Set(patch.indices).size !== patch.indices.length) {
        throw new UnsupportedError("training trainable tokens with a repeated token id is not supported", {
          key: "trainable_token_indices",
        });
      }
      const branch = branches.get(module);
      if (!branch) throw new UnsupportedError("no trainable-tokens branch for this module", { key: module });
      if (branch.elementType !== "float32") {
        throw new UnsupportedError("training needs a float32 base (this embedding is float16)", { key: module });
      }
      const shape = [patch.indices.length, branch.features];
      const tensor = { key: patch.key, shape, data: Float32Array.from(read(patch.key)) };
      this.#tokens.push({ branch, ids: patch.indices, tensor });
      this.tensors.push(tensor);
    }
  }

  /** Names of the graph inputs that are trained ({@linkcode TokenParameters.tensors} order). */
  get inputs(): string[] {
    return this.#tokens.map((t) => t.branch.values);
  }

  /** The branches' inputs: the ids `[1, 1, K]` and the current rows `[1, K, dim]`. */
  feeds(): Record<string, Tensor> {
    const feeds: Record<string, Tensor> = {};
    for (const { branch, ids, tensor } of this.#tokens) {
      feeds[branch.indices] = new Tensor("int64", BigInt64Array.from(ids, BigInt), [1, 1, ids.length]);
      feeds[branch.values] = new Tensor("float32", Float32Array.from(tensor.data), [1, ids.length, branch.features]);
    }
    return feeds;
  }

  /** Gradients of the rows inputs -> gradients of the deltas, in {@linkcode TokenParameters.tensors} order. */
  gradients(grads: ReadonlyMap<string, Float32Array>, factor = 1): Float32Array[] {
    return this.#tokens.map(({ branch }) => grads.get(branch.values)!.map((v) => v * factor));
  }
}
