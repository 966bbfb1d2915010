/**
 * Trained tensors fed through parameter sites (`addParamBranches`): a
 * norm's bias under `bias: "all"` (fed as its delta from the base's) and the
 * modules PEFT trains whole (`modules_to_save`: a Linear's weight and bias,
 * an Embedding's table, fed as they are). Kept in PyTorch's layout, as PEFT
 * saves them; a site's gradient is its parameter's, in the site's layout.
 * @module
 */
import { Tensor } from "../deps/ort.ts";
import { UnsupportedError } from "../errors.ts";
import type { BiasDeltaSite, FedModuleSite, ParamSite } from "../onnx/param_branches.ts";
import { type TrainedTensor, transposed } from "./trained_tensor.ts";

/**
 * One parameter trained through a site: its module, adapter key and which
 * parameter it is. A bias of a module whose weight is not trained is a
 * norm's, fed as its delta from `base`, the base's own bias (zeros if none).
 *
 * @example
 * ```ts
 * import type { SiteParameter } from "./site_params.ts";
 * const head: SiteParameter = { module: "lm_head", key: "base_model.model.lm_head.weight", param: "weight" };
 * ```
 */
export interface SiteParameter {
  module: string;
  key: string;
  param: "weight" | "bias";
  base?: Float32Array;
  /** A Linear's weight saved `[in, out]` (Conv1D; `ReplacePatch.torchInOut`). */
  torchInOut?: boolean;
}

interface NormBias {
  kind: "delta";
  tensor: TrainedTensor;
  site: BiasDeltaSite;
  base: Float32Array;
}

interface FedModule {
  kind: "fed";
  site: FedModuleSite;
  weight: TrainedTensor;
  /** PyTorch stores it `[out, in]` (a Linear without `fan_in_fan_out`): transposed to the site's `[in, out]`. */
  outIn: boolean;
  bias?: TrainedTensor;
}

/**
 * The tensors an adapter trains through parameter sites.
 *
 * @example
 * ```ts
 * import { SiteParameters } from "./site_params.ts";
 * const none = new SiteParameters(new Map(), [], () => new Float32Array(), false);
 * console.log(none.tensors.length); // 0
 * ```
 */
export class SiteParameters {
  readonly #entries: (NormBias | FedModule)[] = [];
  /** Every trained tensor, in the order of the parameters given. */
  readonly tensors: TrainedTensor[] = [];

  /** @throws {UnsupportedError} for a parameter without a site of its kind (a fed norm's, a bias without its weight). */
  constructor(
    sites: ReadonlyMap<string, ParamSite>,
    parameters: readonly SiteParameter[],
    read: (key: string) => Float32Array,
    fanInFanOut: boolean,
  ) {
    const fed = new Map<string, FedModule>();
    const tensor = (key: string, shape: number[]) => ({ key, shape, data: Float32Array.from(read(key)) });
    // Weights first, so a module's bias finds its entry.
    const ordered = [...parameters].sort((a, b) => Number(a.param === "bias") - Number(b.param === "bias"));
    for (const p of ordered) {
      const site = sites.get(p.module);
      if (site?.kind === "delta" && p.param === "bias") {
        const t = tensor(p.key, [site.features]);
        this.#entries.push({ kind: "delta", tensor: t, site, base: p.base ?? new Float32Array(site.features) });
        continue;
      }
      if ((site?.kind === "linear" || site?.kind === "embedding") && p.param === "weight") {
        const outIn = site.kind === "linear" && !(p.torchInOut ?? fanInFanOut);
        const [inF, outF] = [site.inFeatures, site.outFeatures];
        const entry: FedModule = { kind: "fed", site, weight: tensor(p.key, outIn ? [outF, inF] : [inF, outF]), outIn };
        fed.set(p.module, entry);
        this.#entries.push(entry);
        continue;
      }
      const entry = fed.get(p.module);
      if (entry && entry.site.kind === "linear" && p.param === "bias") {
        entry.bias = tensor(p.key, [entry.site.outFeatures]);
        continue;
      }
      throw new UnsupportedError(`training this module's ${p.param} (${site?.kind ?? "no"} site) is not supported`, {
        key: p.module,
      });
    }
    for (const e of this.#entries) {
      if (e.kind === "delta") this.tensors.push(e.tensor);
      else this.tensors.push(e.weight, ...(e.bias ? [e.bias] : []));
    }
  }

  /** Names of the graph inputs that are trained ({@linkcode SiteParameters.tensors} order). */
  get inputs(): string[] {
    return this.#entries.flatMap((e) =>
      e.kind === "delta" ? [e.site.delta] : [e.site.weight, ...(e.bias ? [e.site.bias!] : [])]
    );
  }

  /** The sites' inputs for a batch of `rows`, every row on the trained set. */
  feeds(rows: number): Record<string, Tensor> {
    const feeds: Record<string, Tensor> = {};
    for (const e of this.#entries) {
      if (e.kind === "delta") {
        const { tensor, base, site } = e;
        feeds[site.delta] = new Tensor("float32", tensor.data.map((v, i) => v - base[i]), [1, 1, site.features]);
        continue;
      }
      const { site, weight, outIn, bias } = e;
      const [inF, outF] = [site.inFeatures, site.outFeatures];
      const w = outIn ? transposed(weight.data, outF, inF) : weight.data;
      feeds[site.weight] = new Tensor("float32", w, [inF, outF]);
      if (site.kind === "embedding") {
        feeds[site.select] = new Tensor("int64", new BigInt64Array(rows), [rows, 1]);
        continue;
      }
      feeds[site.bias!] = new Tensor("float32", bias?.data ?? site.base.bias, [outF]);
      // One parameter set: row i takes set 0 of its own rows (i * K + 0 with K = 1).
      feeds[site.select] = new Tensor("int64", BigInt64Array.from({ length: rows }, (_, i) => BigInt(i)), [rows]);
    }
    return feeds;
  }

  /** Gradients of the sites' inputs -> gradients of the tensors, in {@linkcode SiteParameters.tensors} order. */
  gradients(grads: ReadonlyMap<string, Float32Array>, factor = 1): Float32Array[] {
    return this.#entries.flatMap((e) => {
      if (e.kind === "delta") return [grads.get(e.site.delta)!.map((v) => v * factor)];
      const { site, outIn, bias } = e;
      const g = grads.get(site.weight)!;
      const dw = outIn ? transposed(g, site.inFeatures, site.outFeatures, factor) : g.map((v) => v * factor);
      return bias ? [dw, grads.get(site.bias!)!.map((v) => v * factor)] : [dw];
    });
  }
}
