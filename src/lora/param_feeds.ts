/**
 * Feeds of the parameter sites `addParamBranches` adds (norm bias deltas,
 * modules fed whole for `modules_to_save`), and which patches of a plan go
 * there. A run's rows each pick a set: the base's own parameters, or those
 * of the one active adapter that replaces them.
 * @module
 */
import { Tensor } from "../deps/ort.ts";
import { UnsupportedError } from "../errors.ts";
import { f32ToF16 } from "../numeric/float16.ts";
import type { BiasDeltaSite, FedModuleSite, NormSite, ParamSite, ParamSiteRequest } from "../onnx/param_branches.ts";
import { torchWeightToTarget } from "./merge.ts";
import type { AdapterPlan } from "./plan.ts";
import type { AdapterTensorReader } from "./readers.ts";

/**
 * One adapter's values for the parameter sites, computed once at load.
 *
 * @example
 * ```ts
 * import type { AdapterParams } from "./param_feeds.ts";
 * const none: AdapterParams = { deltas: new Map(), modules: new Map() };
 * ```
 */
export interface AdapterParams {
  /** Norm bias deltas (`adapter - base`), by module. */
  deltas: Map<string, Float32Array>;
  /** Replaced modules' parameters in the fed layout (`[in, out]` / `[num, dim]`, and the bias), by module. */
  modules: Map<string, { weight: Float32Array; bias: Float32Array }>;
}

/**
 * Which of a plan's replacements run through parameter sites: norm biases
 * (deltas) and modules whose weight is replaced (`modules_to_save`: fed
 * whole, their bias with them). Other replaced biases (a Linear's, under
 * `bias: "all"`) go to the LoRA branch's bias input.
 *
 * @throws {UnsupportedError} for a norm's weight, or a weight replaced under the module's own LoRA.
 * @example
 * ```ts
 * import { paramSiteRequest } from "./param_feeds.ts";
 * paramSiteRequest({ patches: [], unmatchedKeys: [], missingModules: [], missingKeys: [], tokens: [] }); // { deltas: [], fed: [], norms: [] }
 * ```
 */
export function paramSiteRequest(plan: AdapterPlan): { deltas: string[]; fed: string[]; norms: string[] } {
  const deltas: string[] = [];
  const fed: string[] = [];
  const norms: string[] = [];
  const lora = new Set(plan.patches.filter((p) => p.kind === "lora").map((p) => p.module));
  for (const p of plan.patches) {
    if (p.kind !== "replace") continue;
    if (p.target.kind === "norm") {
      // A replaced weight feeds the whole norm; a bias alone is a delta.
      if (p.param === "weight") norms.push(p.module);
      else deltas.push(p.module);
    } else if (p.param === "weight") {
      if (lora.has(p.module)) {
        throw new UnsupportedError(
          "replaces the weight of a module under its own LoRA (a saved base_layer.weight differing from the base's), " +
            'which cannot be switched per run; use mode "merged"',
          { key: p.module },
        );
      }
      fed.push(p.module);
    }
  }
  return { deltas, fed, norms };
}

/**
 * Modules of a plan that parameter sites serve (so LoRA branches need no bias input for them).
 *
 * @example
 * ```ts
 * import { paramSiteModules } from "./param_feeds.ts";
 * paramSiteModules({ deltas: ["transformer.ln_f"], fed: ["classifier"] }).has("classifier"); // true
 * ```
 */
export function paramSiteModules(request: ParamSiteRequest): Set<string> {
  return new Set([...request.deltas, ...request.fed, ...(request.norms ?? [])]);
}

/**
 * An adapter's values for the sites its plan uses: norm bias deltas, and the
 * replaced modules' parameters (a parameter it does not replace keeps the
 * base's, from the site).
 *
 * @example
 * ```ts
 * import { adapterParams } from "./param_feeds.ts";
 * const plan = { patches: [], unmatchedKeys: [], missingModules: [], missingKeys: [], tokens: [] };
 * adapterParams(plan, new Map(), () => new Float32Array(), () => new Float32Array(), false); // nothing to feed
 * ```
 */
export function adapterParams(
  plan: AdapterPlan,
  sites: ReadonlyMap<string, ParamSite>,
  tensor: AdapterTensorReader,
  baseBias: (initializer: string) => Float32Array,
  fanInFanOut: boolean,
): AdapterParams {
  const { deltas: deltaModules, fed, norms } = paramSiteRequest(plan);
  const params: AdapterParams = { deltas: new Map(), modules: new Map() };
  for (const p of plan.patches) {
    if (p.kind !== "replace") continue;
    if (norms.includes(p.module)) {
      const site = sites.get(p.module) as NormSite;
      const own = params.modules.get(p.module) ?? { weight: site.base.weight, bias: site.base.bias };
      if (p.param === "weight") own.weight = tensor(p.key);
      else own.bias = tensor(p.key);
      params.modules.set(p.module, own);
    } else if (p.target.kind === "norm" && deltaModules.includes(p.module)) {
      const d = tensor(p.key).slice();
      if (p.target.bias) {
        const b = baseBias(p.target.bias.initializer);
        for (let i = 0; i < d.length; i++) d[i] -= b[i];
      }
      params.deltas.set(p.module, d);
    } else if (fed.includes(p.module)) {
      const site = sites.get(p.module) as FedModuleSite;
      const own = params.modules.get(p.module) ?? { weight: site.base.weight, bias: site.base.bias };
      if (p.param === "weight") {
        own.weight = torchWeightToTarget(tensor(p.key), { ...p.target, layout: "in_out" }, p.torchInOut ?? fanInFanOut);
      } else {
        own.bias = tensor(p.key);
      }
      params.modules.set(p.module, own);
    }
  }
  return params;
}

/** What one row's active adapters contribute to the sites. */
interface RowAdapter {
  weight?: number;
  params?: AdapterParams;
}

type Row = readonly RowAdapter[];

/**
 * Feeds of every site for a batch whose row `i` runs `rows[i]` (one row for a
 * run where every row shares the set: its inputs then broadcast).
 *
 * @throws {UnsupportedError} for a weighted adapter with replaced parameters, or two in one row replacing one module.
 * @example
 * ```ts
 * import { paramFeeds } from "./param_feeds.ts";
 * console.log(paramFeeds(new Map(), [[]])); // {}
 * ```
 */
export function paramFeeds(
  sites: ReadonlyMap<string, ParamSite>,
  rows: readonly Row[],
  memo: ParamTensorMemo = new ParamTensorMemo(),
): Record<string, Tensor> {
  for (const row of rows) {
    for (const a of row) {
      const touched = a.params && (a.params.deltas.size > 0 || a.params.modules.size > 0);
      if (touched && (a.weight ?? 1) !== 1) {
        throw new UnsupportedError(
          "an adapter that replaces parameters (trained biases, modules_to_save, or a LoHa/LoKr/OFT/BOFT/FourierFT weight fed whole) cannot be weighted",
        );
      }
    }
  }
  const feeds: Record<string, Tensor> = {};
  const n = rows.length;
  for (const site of sites.values()) {
    const tensor = (values: Float32Array, dims: number[]) =>
      site.elementType === "float16"
        ? new Tensor("float16", f32ToF16(values), dims)
        : new Tensor("float32", values, dims);
    const several = () =>
      new UnsupportedError("several active adapters replace this module's parameters; activate one of them", {
        key: site.module,
      });
    if (site.kind === "delta" || site.kind === "norm") {
      feedVectors(site, rows, feeds, tensor, several);
      continue;
    }
    // Distinct parameter sets of the batch, the base's included when some row runs without a replacement,
    // in a fixed order (by identity), so every batch over the same sets shares one stacked tensor.
    const chosen = rows.map((row) => {
      const owners = row.filter((a) => a.params?.modules.has(site.module));
      if (owners.length > 1) throw several();
      return owners[0]?.params?.modules.get(site.module) ?? site.base;
    });
    const sets = [...new Set(chosen)].sort((a, b) => memo.id(a) - memo.id(b));
    const pick = chosen.map((set) => sets.indexOf(set));
    const K = sets.length;
    const key = `${site.module}\u0000${sets.map((set) => memo.id(set)).join(",")}`;
    const { inFeatures: inF, outFeatures: outF } = site;
    if (site.kind === "embedding") {
      feeds[site.weight] = memo.tensor(
        `${key}\u0000weight`,
        () => tensor(K === 1 ? sets[0].weight : concat(sets.map((s) => s.weight)), [K * inF, outF]),
      );
      feeds[site.select] = new Tensor("int64", BigInt64Array.from(pick, (k) => BigInt(k * inF)), [n, 1]);
      continue;
    }
    feeds[site.weight] = memo.tensor(`${key}\u0000weight`, () => {
      // [in, K*out]: set k's columns at k*out.
      let w = sets[0].weight;
      if (K > 1) {
        w = new Float32Array(inF * K * outF);
        for (let i = 0; i < inF; i++) {
          sets.forEach((s, k) => w.set(s.weight.subarray(i * outF, (i + 1) * outF), (i * K + k) * outF));
        }
      }
      return tensor(w, [inF, K * outF]);
    });
    feeds[site.bias!] = memo.tensor(
      `${key}\u0000bias`,
      () => tensor(K === 1 ? sets[0].bias : concat(sets.map((s) => s.bias)), [K * outF]),
    );
    feeds[site.select] = new Tensor("int64", BigInt64Array.from(pick, (k, i) => BigInt(i * K + k)), [n]);
  }
  return feeds;
}

/**
 * Shares the big fed tensors (a module's weights side by side, float16
 * copies) among the feed sets built over the same parameter sets, so a cache
 * of many batch compositions holds each combination once. Belongs to one
 * feed cache; keeps the `limit` most recently used tensors.
 *
 * @example
 * ```ts
 * import { ParamTensorMemo } from "./param_feeds.ts";
 * const memo = new ParamTensorMemo(4);
 * memo.id({}); // 0: an id per object, for keys
 * ```
 */
export class ParamTensorMemo {
  readonly #ids = new WeakMap<object, number>();
  readonly #tensors = new Map<string, Tensor>();
  #next = 0;

  /**
   * `limit`: how many tensors to keep.
   *
   * @example
   * ```ts
   * import { ParamTensorMemo } from "./param_feeds.ts";
   * new ParamTensorMemo(16);
   * ```
   */
  constructor(readonly limit = 16) {}

  /**
   * A stable id for an object (a parameter set).
   *
   * @example
   * ```ts
   * import { ParamTensorMemo } from "./param_feeds.ts";
   * const memo = new ParamTensorMemo();
   * const set = {};
   * memo.id(set) === memo.id(set); // true
   * ```
   */
  id(o: object): number {
    let id = this.#ids.get(o);
    if (id === undefined) this.#ids.set(o, id = this.#next++);
    return id;
  }

  /**
   * The tensor kept under `key`, built once.
   *
   * @example
   * ```ts
   * import { ParamTensorMemo } from "./param_feeds.ts";
   * import { Tensor } from "../deps/ort.ts";
   * const t = new ParamTensorMemo().tensor("k", () => new Tensor("float32", new Float32Array(2), [2]));
   * ```
   */
  tensor(key: string, build: () => Tensor): Tensor {
    let t = this.#tensors.get(key);
    if (t) this.#tensors.delete(key);
    else t = build();
    this.#tensors.set(key, t);
    if (this.#tensors.size > this.limit) this.#tensors.delete(this.#tensors.keys().next().value!);
    return t;
  }
}

/**
 * Per-row vectors of a delta or norm site: the row's set's weight (norm sites)
 * and bias; a replaced bias alone comes as a delta on the base's.
 */
function feedVectors(
  site: BiasDeltaSite | NormSite,
  rows: readonly Row[],
  feeds: Record<string, Tensor>,
  tensor: (values: Float32Array, dims: number[]) => Tensor,
  several: () => Error,
) {
  const n = rows.length;
  const N = site.features;
  const weight = new Float32Array(site.kind === "norm" ? n * N : 0);
  const bias = new Float32Array(n * N);
  rows.forEach((row, i) => {
    const deltas = row.map((a) => a.params?.deltas.get(site.module)).filter((d) => d !== undefined);
    const owners = row.filter((a) => a.params?.modules.has(site.module));
    if (deltas.length + owners.length > 1) throw several();
    if (site.kind === "norm") {
      const set = owners[0]?.params?.modules.get(site.module) ?? site.base;
      weight.set(set.weight, i * N);
      bias.set(set.bias, i * N);
    }
    if (deltas[0]) { for (let o = 0; o < N; o++) bias[i * N + o] += deltas[0][o]; }
  });
  if (site.kind === "norm") {
    feeds[site.weight] = tensor(weight, [n, 1, N]);
    feeds[site.bias] = tensor(bias, [n, 1, N]);
  } else {
    feeds[site.delta] = tensor(bias, [n, 1, N]);
  }
}

function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
