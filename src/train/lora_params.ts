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
  /** DoRA's magnitude `[out]`. */
  m?: TrainedTensor;
  /** The weight norms `||W + s·B·A||` of the last feeds (DoRA; PEFT detaches them). */
  norms?: Float32Array;
}

/**
 * DoRA's per-output weight norms `||W + s·B·A||` for a module's current A and B.
 *
 * @example
 * ```ts
 * import type { DoraNorms } from "./lora_params.ts";
 * const unit: DoraNorms = (patch) => new Float32Array(patch.target.outFeatures).fill(1);
 * ```
 */
export type DoraNorms = (patch: LoraPatch, a: Float32Array, b: Float32Array) => Float32Array;

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

  readonly #doraNorms?: DoraNorms;

  constructor(
    patches: readonly LoraPatch[],
    branches: ReadonlyMap<string, LoraBranch>,
    read: (key: string) => Float32Array,
    doraNorms?: DoraNorms,
  ) {
    this.#doraNorms = doraNorms;
    this.#modules = patches.map((patch) => {
      const branch = branches.get(patch.module);
      if (!branch) throw new UnsupportedError("no LoRA branch for this module", { key: patch.module });
      if (patch.magnitude && (!branch.scale || !doraNorms)) {
        throw new UnsupportedError("DoRA module without a DoRA branch", { key: patch.module });
      }
      if (patch.bias) throw new UnsupportedError("training lora_bias is not supported", { key: patch.module });
      if (patch.magnitudeFromBase) {
        throw new UnsupportedError("training a DoRA module whose adapter lacks its magnitude is not supported", {
          key: patch.module,
        });
      }
      if (branch.elementType !== "float32") {
        throw new UnsupportedError("training needs a float32 base (this projection is float16)", { key: patch.module });
      }
      const inDim = branch.kind === "embedding" ? patch.target.inFeatures : branch.inFeatures;
      const a = { key: patch.a, shape: [patch.rank, inDim], data: Float32Array.from(read(patch.a)) };
      const b = { key: patch.b, shape: [branch.outFeatures, patch.rank], data: Float32Array.from(read(patch.b)) };
      const m = patch.magnitude
        ? { key: patch.magnitude, shape: [branch.outFeatures], data: Float32Array.from(read(patch.magnitude)) }
        : undefined;
      return { patch, branch, a, b, m };
    });
    // PEFT's parameter order: lora_A, lora_B, lora_magnitude_vector per module.
    this.tensors = this.#modules.flatMap((m) => (m.m ? [m.a, m.b, m.m] : [m.a, m.b]));
  }

  /** Names of the graph inputs that are trained. */
  get inputs(): string[] {
    return this.#modules.flatMap((m) => (m.m ? [m.branch.a, m.branch.b, m.branch.scale!] : [m.branch.a, m.branch.b]));
  }

  /** The branch inputs for the current tensors: `A^T` `[in, r]` and `(s·B)^T` `[r, out]`. */
  feeds(): Record<string, Tensor> {
    const feeds: Record<string, Tensor> = {};
    for (const module of this.#modules) {
      const { patch, branch, a, b, m } = module;
      const [r, inDim] = a.shape;
      const out = b.shape[0];
      feeds[branch.a] = new Tensor("float32", transposed(a.data, r, inDim), [inDim, r]);
      feeds[branch.b] = new Tensor("float32", transposed(b.data, out, r, patch.scale), [r, out]);
      if (m) {
        // DoRA's scale m / ||W + s B A||, the norm computed from the current A, B and treated as a constant.
        const norms = this.#doraNorms!(patch, a.data, b.data);
        module.norms = norms;
        feeds[branch.scale!] = new Tensor("float32", m.data.map((v, o) => v / norms[o]), [out]);
      }
    }
    return feeds;
  }

  /** Gradients of the branch inputs -> gradients of PEFT's tensors, in {@linkcode LoraParameters.tensors} order. */
  gradients(grads: ReadonlyMap<string, Float32Array>, factor = 1): Float32Array[] {
    return this.#modules.flatMap(({ patch, branch, a, b, m, norms }) => {
      const [r, inDim] = a.shape;
      const out = b.shape[0];
      const ab = [
        transposed(grads.get(branch.a)!, inDim, r, factor),
        transposed(grads.get(branch.b)!, r, out, patch.scale * factor),
      ];
      if (!m) return ab;
      const dScale = grads.get(branch.scale!)!;
      return [...ab, dScale.map((g, o) => (g * factor) / norms![o])];
    });
  }
}
