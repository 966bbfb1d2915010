/**
 * The trained tensors of one LoRA adapter, kept in PEFT's layout (`lora_A`
 * `[r, in]`, `lora_B` `[out, r]`, float32) and turned into the dynamic
 * branches' feeds (`A^T`, `(s·B)^T`) and back (the branches' gradients into
 * gradients of PEFT's tensors).
 * @module
 */
import { Tensor } from "../deps/ort.ts";
import { UnsupportedError } from "../errors.ts";
import type { LoraPatch } from "../lora/plan.ts";
import type { LoraBranch } from "../onnx/lora_branches.ts";

/**
 * One trained tensor under its PEFT key.
 *
 * @example
 * ```ts
 * import type { TrainedTensor } from "./lora_params.ts";
 * const t: TrainedTensor = { key: "base_model.model.x.lora_A.weight", shape: [1, 2], data: new Float32Array(2) };
 * ```
 */
export interface TrainedTensor {
  key: string;
  shape: number[];
  data: Float32Array;
}

interface Module {
  patch: LoraPatch;
  branch: LoraBranch;
  a: TrainedTensor;
  b: TrainedTensor;
}

/** `[rows, cols]` row-major -> its transpose, times `scale`. */
export function transposed(data: Float32Array, rows: number, cols: number, scale = 1): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c] * scale;
  return out;
}

/**
 * An adapter's trainable LoRA tensors and their mapping to branch inputs.
 *
 * @example
 * ```ts
 * import { LoraParameters } from "./lora_params.ts";
 * const params = new LoraParameters([], new Map(), () => new Float32Array());
 * console.log(params.tensors.length); // 0
 * ```
 */
export class LoraParameters {
  readonly #modules: Module[];
  /** Every trained tensor, A then B per module, in the adapter's module order. */
  readonly tensors: TrainedTensor[];

  constructor(
    patches: readonly LoraPatch[],
    branches: ReadonlyMap<string, LoraBranch>,
    read: (key: string) => Float32Array,
  ) {
    this.#modules = patches.map((patch) => {
      const branch = branches.get(patch.module);
      if (!branch) throw new UnsupportedError("no LoRA branch for this module", { key: patch.module });
      if (patch.magnitude) throw new UnsupportedError("training DoRA adapters is not supported", { key: patch.module });
      if (patch.bias) throw new UnsupportedError("training lora_bias is not supported", { key: patch.module });
      if (branch.elementType !== "float32") {
        throw new UnsupportedError("training needs a float32 base (this projection is float16)", { key: patch.module });
      }
      const inDim = branch.kind === "embedding" ? patch.target.inFeatures : branch.inFeatures;
      const a = { key: patch.a, shape: [patch.rank, inDim], data: Float32Array.from(read(patch.a)) };
      const b = { key: patch.b, shape: [branch.outFeatures, patch.rank], data: Float32Array.from(read(patch.b)) };
      return { patch, branch, a, b };
    });
    this.tensors = this.#modules.flatMap((m) => [m.a, m.b]);
  }

  /** Names of the graph inputs that are trained. */
  get inputs(): string[] {
    return this.#modules.flatMap((m) => [m.branch.a, m.branch.b]);
  }

  /** The branch inputs for the current tensors: `A^T` `[in, r]` and `(s·B)^T` `[r, out]`. */
  feeds(): Record<string, Tensor> {
    const feeds: Record<string, Tensor> = {};
    for (const { patch, branch, a, b } of this.#modules) {
      const [r, inDim] = a.shape;
      const out = b.shape[0];
      feeds[branch.a] = new Tensor("float32", transposed(a.data, r, inDim), [inDim, r]);
      feeds[branch.b] = new Tensor("float32", transposed(b.data, out, r, patch.scale), [r, out]);
    }
    return feeds;
  }

  /** Gradients of the branch inputs -> gradients of PEFT's tensors, in {@linkcode LoraParameters.tensors} order. */
  gradients(grads: ReadonlyMap<string, Float32Array>, factor = 1): Float32Array[] {
    return this.#modules.flatMap(({ patch, branch, a, b }) => {
      const [r, inDim] = a.shape;
      const out = b.shape[0];
      return [
        transposed(grads.get(branch.a)!, inDim, r, factor),
        transposed(grads.get(branch.b)!, r, out, patch.scale * factor),
      ];
    });
  }
}
