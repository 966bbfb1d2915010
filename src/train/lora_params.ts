/**
 * The trained tensors of one LoRA adapter, kept in PEFT's layout (`lora_A`
 * `[r, in]`, `lora_B` `[out, r]`, biases `[out]`, float32) and turned into the
 * dynamic branches' feeds (`A^T`, `(s·B)^T`, the bias delta `s·lora_B.bias +
 * bias - base bias`) and back (the branches' gradients into gradients of
 * PEFT's tensors).
 * @module
 */
import { Tensor } from "../deps/ort.ts";
import { UnsupportedError } from "../errors.ts";
import type { LoraPatch } from "../lora/plan.ts";
import type { LoraBranch, LoraGroup } from "../onnx/lora_branches.ts";
import type { SiteParameters } from "./site_params.ts";
import type { TokenParameters } from "./token_params.ts";
import { type TrainedTensor, transposed } from "./trained_tensor.ts";

interface Lora {
  patch: LoraPatch;
  a: TrainedTensor;
  b: TrainedTensor;
  /** DoRA's magnitude `[out]`. */
  m?: TrainedTensor;
  /** `lora_B.bias` `[out]` (`lora_bias`). */
  bias?: TrainedTensor;
  /** The weight norms `||W + s·B·A||` of the last feeds (DoRA; PEFT detaches them). */
  norms?: Float32Array;
}

/** A module's own bias trained in full (`bias: "all"` / `"lora_only"`), fed as its difference from the base's. */
interface TrainedBias {
  tensor: TrainedTensor;
  base: Float32Array;
}

interface Module {
  branch: LoraBranch;
  /** Absent on a module whose only trained tensor is its bias (its branch fed zeros). */
  lora?: Lora;
  bias?: TrainedBias;
}

/**
 * A module's bias that is trained in full: the module, the adapter key of
 * the trained value and the base's own bias (zeros when the export has none).
 *
 * @example
 * ```ts
 * import type { BiasParameter } from "./lora_params.ts";
 * const p: BiasParameter = { module: "h.0.attn.c_attn", key: "base_model.model.h.0.attn.c_attn.base_layer.bias", base: new Float32Array(3) };
 * ```
 */
export interface BiasParameter {
  module: string;
  key: string;
  base: Float32Array;
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
  readonly #sites?: SiteParameters;
  readonly #tokens?: TokenParameters;
  /** Every trained tensor: A, B (and B's bias, DoRA's magnitude) per module in the adapter's order, then trained biases. */
  readonly tensors: TrainedTensor[];

  readonly #doraNorms?: DoraNorms;

  constructor(
    patches: readonly LoraPatch[],
    branches: ReadonlyMap<string, LoraBranch>,
    read: (key: string) => Float32Array,
    doraNorms?: DoraNorms,
    biases: readonly BiasParameter[] = [],
    sites?: SiteParameters,
    tokens?: TokenParameters,
  ) {
    this.#sites = sites;
    this.#tokens = tokens;
    this.#doraNorms = doraNorms;
    const branchOf = (module: string) => {
      const branch = branches.get(module);
      if (!branch) throw new UnsupportedError("no LoRA branch for this module", { key: module });
      if (branch.elementType !== "float32") {
        throw new UnsupportedError("training needs a float32 base (this projection is float16)", { key: module });
      }
      return branch;
    };
    const modules = new Map<string, Module>();
    for (const patch of patches) {
      const branch = branchOf(patch.module);
      if (patch.magnitude && (!branch.scale || !doraNorms)) {
        throw new UnsupportedError("DoRA module without a DoRA branch", { key: patch.module });
      }
      if (patch.magnitudeFromBase) {
        throw new UnsupportedError("training a DoRA module whose adapter lacks its magnitude is not supported", {
          key: patch.module,
        });
      }
      const inDim = branch.kind === "embedding" ? patch.target.inFeatures : branch.inFeatures;
      const vector = (key: string) => ({ key, shape: [branch.outFeatures], data: Float32Array.from(read(key)) });
      const a = { key: patch.a, shape: [patch.rank, inDim], data: Float32Array.from(read(patch.a)) };
      const b = { key: patch.b, shape: [branch.outFeatures, patch.rank], data: Float32Array.from(read(patch.b)) };
      const m = patch.magnitude ? vector(patch.magnitude) : undefined;
      const bias = patch.bias ? vector(patch.bias) : undefined;
      if (bias && !branch.bias) {
        throw new UnsupportedError("lora_bias module without a bias input", { key: patch.module });
      }
      modules.set(patch.module, { branch, lora: { patch, a, b, m, bias } });
    }
    for (const { module, key, base } of biases) {
      const branch = branchOf(module);
      if (!branch.bias) throw new UnsupportedError("trained bias without a bias input", { key: module });
      const tensor = { key, shape: [branch.outFeatures], data: Float32Array.from(read(key)) };
      const entry = modules.get(module) ?? { branch };
      entry.bias = { tensor, base };
      modules.set(module, entry);
    }
    this.#modules = [...modules.values()];
    // PEFT's parameter order per module: lora_A, lora_B (weight, bias), lora_magnitude_vector; then the biases.
    this.tensors = [
      ...this.#modules.flatMap(({ lora: l }) =>
        l ? [l.a, l.b, ...(l.bias ? [l.bias] : []), ...(l.m ? [l.m] : [])] : []
      ),
      ...this.#modules.flatMap((m) => (m.bias ? [m.bias.tensor] : [])),
      ...(sites?.tensors ?? []),
      ...(tokens?.tensors ?? []),
    ];
  }

  /** Names of the graph inputs that are trained. */
  get inputs(): string[] {
    const lora = this.#modules.flatMap(({ branch, lora: l }) =>
      l ? [branch.a, branch.b, ...(l.bias ? [branch.bias!] : []), ...(l.m ? [branch.scale!] : [])] : []
    );
    const bias = this.#modules.filter((m) => m.bias && !m.lora?.bias).map((m) => m.branch.bias!);
    // A shared product's A (one input for the group) is listed once.
    return [...new Set([...lora, ...bias, ...(this.#sites?.inputs ?? []), ...(this.#tokens?.inputs ?? [])])];
  }

  /** Each member's column offset in its group's joined A^T `[in, sum of ranks]`, and the group's width. */
  #groupColumns(group: LoraGroup): { offsets: Map<string, number>; width: number } {
    const offsets = new Map<string, number>();
    let width = 0;
    for (const m of group.modules) {
      const l = this.#modules.find((x) => x.branch.module === m)?.lora;
      if (!l) throw new UnsupportedError("a shared A product's member has no LoRA", { key: m });
      offsets.set(m, width);
      width += l.a.shape[0];
    }
    return { offsets, width };
  }

  /**
   * The branch inputs for the current tensors: `A^T` `[in, r]`, `(s·B)^T` `[r, out]`
   * (zeros `[in, 1]`, `[1, out]` on a bias-only module) and the bias delta `[out]`;
   * and the parameter sites' inputs for a batch of `rows`.
   */
  feeds(rows = 1): Record<string, Tensor> {
    const feeds: Record<string, Tensor> = {};
    for (const { branch, lora, bias } of this.#modules) {
      const out = branch.outFeatures;
      if (!lora) {
        // Rank 1 of zeros, not rank 0: WebGPU cannot bind the empty buffers of a rank 0 branch.
        const inDim = branch.inFeatures;
        feeds[branch.a] = new Tensor("float32", new Float32Array(inDim), [inDim, 1]);
        feeds[branch.b] = new Tensor("float32", new Float32Array(out), [1, out]);
      } else {
        const { patch, a, b, m } = lora;
        const [r, inDim] = a.shape;
        if (branch.group) {
          // The group's members side by side along the rank: A^T columns [offset, offset + r).
          const { offsets, width } = this.#groupColumns(branch.group);
          if (!feeds[branch.a]) {
            feeds[branch.a] = new Tensor("float32", new Float32Array(inDim * width), [inDim, width]);
            const ranks = branch.group.modules.map((x) => this.#modules.find((y) => y.branch.module === x)!.lora!);
            feeds[branch.group.split] = new Tensor(
              "int64",
              BigInt64Array.from(ranks, (l) => BigInt(l.a.shape[0])),
              [ranks.length],
            );
          }
          const joined = feeds[branch.a].data as Float32Array;
          const off = offsets.get(branch.module)!;
          for (let k = 0; k < r; k++) {
            for (let i = 0; i < inDim; i++) joined[i * width + off + k] = a.data[k * inDim + i];
          }
        } else feeds[branch.a] = new Tensor("float32", transposed(a.data, r, inDim), [inDim, r]);
        feeds[branch.b] = new Tensor("float32", transposed(b.data, out, r, patch.scale), [r, out]);
        if (m) {
          // DoRA's scale m / ||W + s B A||, the norm computed from the current A, B and treated as a constant.
          const norms = this.#doraNorms!(patch, a.data, b.data);
          lora.norms = norms;
          feeds[branch.scale!] = new Tensor("float32", m.data.map((v, o) => v / norms[o]), [out]);
        }
      }
      if (branch.bias) {
        // PEFT's lora_B(x) * s carries s·lora_B.bias; a trained bias replaces the base's.
        const delta = new Float32Array(out);
        if (lora?.bias) { for (let o = 0; o < out; o++) delta[o] += lora.patch.scale * lora.bias.data[o]; }
        if (bias) { for (let o = 0; o < out; o++) delta[o] += bias.tensor.data[o] - bias.base[o]; }
        feeds[branch.bias] = new Tensor("float32", delta, [out]);
      }
    }
    return { ...feeds, ...this.#sites?.feeds(rows), ...this.#tokens?.feeds() };
  }

  /** Gradients of the branch inputs -> gradients of PEFT's tensors, in {@linkcode LoraParameters.tensors} order. */
  gradients(grads: ReadonlyMap<string, Float32Array>, factor = 1): Float32Array[] {
    const lora = this.#modules.flatMap(({ branch, lora: l }) => {
      if (!l) return [];
      const [r, inDim] = l.a.shape;
      const out = l.b.shape[0];
      const s = l.patch.scale;
      let dA: Float32Array;
      if (branch.group) {
        const { offsets, width } = this.#groupColumns(branch.group);
        const [joined, off] = [grads.get(branch.a)!, offsets.get(branch.module)!];
        dA = new Float32Array(r * inDim);
        for (let k = 0; k < r; k++) {
          for (let i = 0; i < inDim; i++) dA[k * inDim + i] = joined[i * width + off + k] * factor;
        }
      } else dA = transposed(grads.get(branch.a)!, inDim, r, factor);
      const g = [
        dA,
        transposed(grads.get(branch.b)!, r, out, s * factor),
      ];
      if (l.bias) g.push(grads.get(branch.bias!)!.map((v) => v * s * factor));
      if (l.m) g.push(grads.get(branch.scale!)!.map((v, o) => (v * factor) / l.norms![o]));
      return g;
    });
    const bias = this.#modules.flatMap(({ branch, bias: b }) =>
      b ? [grads.get(branch.bias!)!.map((v) => v * factor)] : []
    );
    return [
      ...lora,
      ...bias,
      ...(this.#sites?.gradients(grads, factor) ?? []),
      ...(this.#tokens?.gradients(grads, factor) ?? []),
    ];
  }
}
