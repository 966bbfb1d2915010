/**
 * Feeds for a graph with LoRA branches (see `addLoraBranches`): which
 * adapters are active is decided per run by the tensors fed to each branch.
 *
 * Several active adapters sum their deltas, as PEFT does for a list of
 * active adapters, by concatenating along the rank:
 * `A = [A1; A2]` (`[r1 + r2, in]`) and `B = [w1 s1 B1, w2 s2 B2]`
 * (`[out, r1 + r2]`), so `x A^T B^T = w1 s1 x A1^T B1^T + w2 s2 x A2^T B2^T`.
 * With weights this is PEFT's `add_weighted_adapter(..., combination_type="cat")`.
 * A branch no active adapter touches gets rank 0.
 * @module
 */
import { Tensor } from "../deps/ort.ts";
import { OnnxModelError, UnsupportedError } from "../errors.ts";
import type { LoraKernels } from "../kernels/kernels.ts";
import { f32ToF16 } from "../numeric/float16.ts";
import type { LoraBranch, LoraGroup } from "../onnx/lora_branches.ts";
import type { WeightTarget } from "../onnx/weight_index.ts";
import type { ParamSite } from "../onnx/param_branches.ts";
import { type AdapterParams, paramFeeds, ParamTensorMemo } from "./param_feeds.ts";
import type { AdapterPlan, LoraPatch } from "./plan.ts";
import type { AdapterTensorReader, BaseWeightReader } from "./readers.ts";

/**
 * One active adapter of a run, as the branch feeds read it: its plan, its
 * tensors and its weight in the sum of deltas.
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "../model/base_model.ts";
 * import { readAdapter } from "../model/adapter.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const adapter = await readAdapter(base.weights, "tests/fixtures/llama-tiny-lora-qv", "qv");
 * import type { ActiveAdapter } from "./dynamic_feeds.ts";
 * const active: ActiveAdapter = { plan: adapter.plan, tensor: (k) => adapter.weights.toFloat32(k), weight: 0.5 };
 * ```
 */
export interface ActiveAdapter {
  plan: AdapterPlan;
  tensor: AdapterTensorReader;
  /** Multiplies this adapter's delta (PEFT's `add_weighted_adapter` weight). Default 1. */
  weight?: number;
  /** DoRA scales per module from {@linkcode doraScales}; required for every DoRA patch. */
  doraScales?: ReadonlyMap<string, Float32Array>;
  /** Bias deltas per module from {@linkcode biasDeltas}; required for `lora_bias` and trained-bias patches. */
  biasDeltas?: ReadonlyMap<string, Float32Array>;
  /** Values for parameter sites (`param_feeds.ts`); their modules' replacements are fed there, not to branches. */
  params?: AdapterParams;
  /** An activated LoRA: its rank columns are gated by the run's mask on masked branches (`LoraBranch.mask`). */
  masked?: boolean;
}

/**
 * Feeds for the branch inputs, by input name.
 *
 * @example
 * ```ts
 * import { adapterFeeds, type BranchFeeds } from "./dynamic_feeds.ts";
 * const feeds: BranchFeeds = adapterFeeds(new Map(), []); // no branches: nothing to feed
 * ```
 */
export type BranchFeeds = Record<string, Tensor>;

/**
 * The LoRA patches of a plan (the ones dynamic branches carry).
 *
 * @example
 * ```ts
 * import { loraPatches } from "./dynamic_feeds.ts";
 * loraPatches({ patches: [], unmatchedKeys: [], missingModules: [], missingKeys: [], tokens: [] }); // []
 * ```
 */
export function loraPatches(plan: AdapterPlan): LoraPatch[] {
  return plan.patches.filter((p): p is LoraPatch => p.kind === "lora");
}

/**
 * DoRA's per-output factors `m / ||W + s B A||` (norms over the input dim,
 * PEFT's `get_weight_norm`) for every DoRA patch of a plan: what a DoRA
 * branch's `scale` input takes. Computed once, when the adapter is loaded.
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "../model/base_model.ts";
 * import { readAdapter } from "../model/adapter.ts";
 * import { loadKernels } from "../kernels/kernels.ts";
 * import { doraScales } from "./dynamic_feeds.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const dora = await readAdapter(base.weights, "tests/fixtures/llama-tiny-dora-qv", "dora");
 * const scales = doraScales(
 *   dora.plan,
 *   (target) => base.readWeight(target.initializer),
 *   (key) => dora.weights.toFloat32(key),
 *   await loadKernels(),
 * );
 * ```
 */
export function doraScales(
  plan: AdapterPlan,
  baseWeight: BaseWeightReader<WeightTarget>,
  tensor: AdapterTensorReader,
  kernels: LoraKernels,
): Map<string, Float32Array> {
  const scales = new Map<string, Float32Array>();
  for (const p of loraPatches(plan)) {
    if (!p.magnitude) continue;
    const dims = { outFeatures: p.target.outFeatures, inFeatures: p.target.inFeatures, rank: p.rank };
    const w = baseWeight(p.target);
    const norms = kernels.doraNorms(w, tensor(p.a), tensor(p.b), dims, p.scale, p.target.layout);
    // A magnitude the adapter lacks is PEFT's init: the base rows' norms (scale 0 leaves W as it is).
    const m = p.magnitudeFromBase
      ? kernels.doraNorms(w, tensor(p.a), tensor(p.b), dims, 0, p.target.layout)
      : tensor(p.magnitude);
    const factors = new Float32Array(m.length);
    for (let o = 0; o < m.length; o++) factors[o] = m[o] / norms[o];
    scales.set(p.module, factors);
  }
  return scales;
}

/**
 * What each module's `bias` branch input takes for one adapter, summed per
 * module: `s * lora_B.bias` for `lora_bias`, and a trained bias (`bias:
 * "all"` / `"lora_only"`, a saved `base_layer.bias`) minus the base's, so
 * `x W + b_base + delta` is the adapter's `x W + b`. Computed once at load.
 *
 * @example
 * ```ts
 * import { biasDeltas } from "./dynamic_feeds.ts";
 * biasDeltas({ patches: [], unmatchedKeys: [], missingModules: [], missingKeys: [], tokens: [] }, () => new Float32Array(), () => new Float32Array()); // empty map
 * ```
 */
export function biasDeltas(
  plan: AdapterPlan,
  baseBias: (target: WeightTarget) => Float32Array,
  tensor: AdapterTensorReader,
): Map<string, Float32Array> {
  const deltas = new Map<string, Float32Array>();
  const add = (module: string, values: Float32Array, factor: number) => {
    let d = deltas.get(module);
    if (!d) deltas.set(module, d = new Float32Array(values.length));
    for (let i = 0; i < d.length; i++) d[i] += factor * values[i];
  };
  for (const p of plan.patches) {
    if (p.kind === "lora" && p.bias) add(p.module, tensor(p.bias), p.scale);
    if (p.kind === "replace" && p.param === "bias") {
      add(p.module, tensor(p.key), 1);
      add(p.module, baseBias(p.target), -1);
    }
  }
  return deltas;
}

/** Modules whose branch needs a `bias` input for this plan. */
export function biasModules(plan: AdapterPlan): string[] {
  return plan.patches.filter((p) => p.kind === "lora" ? p.bias !== undefined : p.param === "bias").map((p) => p.module);
}

/** Checks that every patch of every active adapter can be fed to the branches. */
function checkPlans(branches: ReadonlyMap<string, LoraBranch>, active: readonly ActiveAdapter[]) {
  const perModule = new Map<string, number>();
  const replacedBias = new Set<string>();
  for (const { plan, weight = 1, doraScales, biasDeltas, params } of active) {
    if (!Number.isFinite(weight)) throw new UnsupportedError(`adapter weight must be a finite number, got ${weight}`);
    for (const p of plan.patches) {
      // Fed to a parameter site instead (checked by paramFeeds).
      if (p.kind === "replace" && (params?.deltas.has(p.module) || params?.modules.has(p.module))) continue;
      if (p.kind === "replace" && p.param === "weight") {
        throw new UnsupportedError(
          `replaces the module's weight (modules_to_save), which cannot be switched per run; merge this adapter instead`,
          { key: p.module },
        );
      }
      const branch = branches.get(p.module);
      if (p.kind === "replace" || p.bias) {
        if (!branch?.bias) {
          throw new OnnxModelError("the adapter changes this module's bias but its branch has no bias input", {
            key: p.module,
          });
        }
        if (!biasDeltas?.has(p.module)) {
          throw new UnsupportedError("bias patch without its biasDeltas entry", { key: p.module });
        }
      }
      if (p.kind === "replace") {
        // A replaced bias is the adapter's own value, not a delta that scales or sums.
        if (weight !== 1) {
          throw new UnsupportedError("an adapter with trained biases cannot be weighted", { key: p.module });
        }
        if (replacedBias.has(p.module)) {
          throw new UnsupportedError("several active adapters replace this module's bias; activate one of them", {
            key: p.module,
          });
        }
        replacedBias.add(p.module);
        continue;
      }
      if (!branch) {
        throw new OnnxModelError(
          "the graph has no LoRA branch for this module; add branches for every module the adapters touch",
          {
            key: p.module,
          },
        );
      }
      if (p.magnitude) {
        if (!branch.scale) {
          throw new OnnxModelError("the adapter uses DoRA here but the branch has no DoRA scale input", {
            key: p.module,
          });
        }
        if (!doraScales?.has(p.module)) {
          throw new UnsupportedError("DoRA patch without its doraScales entry", { key: p.module });
        }
        if (weight !== 1) throw new UnsupportedError("a DoRA adapter cannot be weighted", { key: p.module });
      }
      perModule.set(p.module, (perModule.get(p.module) ?? 0) + 1);
    }
  }
  for (const { plan } of active) {
    for (const p of loraPatches(plan)) {
      if (p.magnitude && perModule.get(p.module)! > 1) {
        throw new UnsupportedError(
          "several active adapters touch a module where one of them uses DoRA; PEFT's result then depends on their order. Activate one adapter on this module",
          { key: p.module },
        );
      }
    }
  }
}

/**
 * Builds the branch feeds for one set of active adapters (empty: every
 * branch off, the base model). Validates everything first.
 *
 * @throws {OnnxModelError} when an adapter touches a module without a branch (or a DoRA module without a scale input).
 * @throws {UnsupportedError} for replaced parameters, `lora_bias`, weighted DoRA, or DoRA mixed with another adapter on one module.
 * @example
 * ```ts
 * import { loadBaseModel } from "../model/base_model.ts";
 * import { readAdapter } from "../model/adapter.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const adapter = await readAdapter(base.weights, "tests/fixtures/llama-tiny-lora-qv", "qv");
 * import { addLoraBranches } from "../onnx/lora_branches.ts";
 * import { adapterFeeds, loraPatches } from "./dynamic_feeds.ts";
 * const modules = loraPatches(adapter.plan).map((p) => p.module);
 * const { branches } = addLoraBranches(base.onnx, base.weights, modules);
 * const feeds = adapterFeeds(branches, [{ plan: adapter.plan, tensor: (k) => adapter.weights.toFloat32(k) }]);
 * ```
 */
export function adapterFeeds(
  branches: ReadonlyMap<string, LoraBranch>,
  active: readonly ActiveAdapter[],
  minRank = 0,
): BranchFeeds {
  checkPlans(branches, active);
  const byModule = new Map<string, Array<{ patch: LoraPatch; adapter: ActiveAdapter }>>();
  for (const adapter of active) {
    for (const patch of loraPatches(adapter.plan)) {
      byModule.set(patch.module, [...(byModule.get(patch.module) ?? []), { patch, adapter }]);
    }
  }
  const feeds: BranchFeeds = {};
  // A^T of branches in a shared product, joined per group after the loop.
  const grouped = new Map<string, Float32Array>();
  for (const branch of branches.values()) {
    const parts = byModule.get(branch.module) ?? [];
    const { inFeatures: inF, outFeatures: outF } = branch;
    // Zero columns past the adapters' ranks add nothing (minRank 1: WebGPU cannot bind an empty buffer).
    const rank = Math.max(minRank, parts.reduce((r, { patch }) => r + patch.rank, 0));
    // Transposed once here, per adapter set: A^T [in, rank] and (s·B)^T [rank, out].
    const a = new Float32Array(inF * rank);
    const b = new Float32Array(rank * outF);
    const on = new Float32Array(rank);
    let offset = 0;
    for (const { patch, adapter } of parts) {
      if (adapter.masked) on.fill(1, offset, offset + patch.rank);
      const pa = adapter.tensor(patch.a);
      const pb = adapter.tensor(patch.b);
      const r = patch.rank;
      const factor = patch.scale * (adapter.weight ?? 1);
      for (let k = 0; k < r; k++) {
        for (let i = 0; i < inF; i++) a[i * rank + offset + k] = pa[k * inF + i];
        for (let o = 0; o < outF; o++) b[(offset + k) * outF + o] = factor * pb[o * r + k];
      }
      offset += r;
    }
    // Per-row branches take one set for every row as a leading dim of 1 (broadcast).
    const lead = branch.rowsDim ? [1] : [];
    const tensor = (values: Float32Array, dims: number[]) =>
      branch.elementType === "float16"
        ? new Tensor("float16", f32ToF16(values), [...lead, ...dims])
        : new Tensor("float32", values, [...lead, ...dims]);
    if (branch.group) grouped.set(branch.module, a);
    else feeds[branch.a] = tensor(a, [inF, rank]);
    feeds[branch.b] = tensor(b, [rank, outF]);
    if (branch.maskOn && branch.maskOff) {
      feeds[branch.maskOn] = tensor(on, [1, rank]);
      feeds[branch.maskOff] = tensor(on.map((v) => 1 - v), [1, rank]);
    }
    if (branch.scale) {
      const dora = parts.find(({ patch }) => patch.magnitude)?.adapter.doraScales?.get(branch.module);
      feeds[branch.scale] = tensor(dora ?? new Float32Array(outF).fill(1), branch.rowsDim ? [1, outF] : [outF]);
    }
    if (branch.bias) {
      const sum = new Float32Array(outF);
      for (const adapter of active) {
        const d = adapter.biasDeltas?.get(branch.module);
        const w = adapter.weight ?? 1;
        if (d) { for (let o = 0; o < outF; o++) sum[o] += w * d[o]; }
      }
      feeds[branch.bias] = tensor(sum, branch.rowsDim ? [1, outF] : [outF]);
    }
  }
  for (const group of groupsOf(branches)) {
    const first = branches.get(group.modules[0])!;
    const parts = group.modules.map((m) => grouped.get(m)!);
    const ranks = parts.map((p) => p.length / first.inFeatures);
    const a = joinColumns(parts, ranks, first.inFeatures);
    const lead = first.rowsDim ? [1] : [];
    const dims = [...lead, first.inFeatures, a.length / first.inFeatures];
    feeds[group.a] = first.elementType === "float16"
      ? new Tensor("float16", f32ToF16(a), dims)
      : new Tensor("float32", a, dims);
    feeds[group.split] = splitTensor(ranks);
  }
  return feeds;
}

/** The shared products (`LoraGroup`) of these branches, each once. */
function groupsOf(branches: ReadonlyMap<string, LoraBranch>): LoraGroup[] {
  return [...new Set([...branches.values()].flatMap((b) => (b.group ? [b.group] : [])))];
}

/** A group's split sizes. */
function splitTensor(ranks: readonly number[]): Tensor {
  return new Tensor("int64", BigInt64Array.from(ranks, BigInt), [ranks.length]);
}

/** `[rows, sum of ranks]` from `[rows, ranks[i]]` parts side by side (A^T's of one group, joined along the rank). */
function joinColumns<T extends TensorArray>(parts: readonly T[], ranks: readonly number[], rows: number): T {
  const width = ranks.reduce((n, r) => n + r, 0);
  const out = (parts[0] instanceof Uint16Array ? new Uint16Array(rows * width) : new Float32Array(rows * width)) as T;
  let offset = 0;
  parts.forEach((part, p) => {
    const r = ranks[p];
    for (let i = 0; i < rows; i++) out.set(part.subarray(i * r, (i + 1) * r), i * width + offset);
    offset += r;
  });
  return out;
}

/**
 * Caches {@linkcode adapterFeeds} per set of active adapters (same plans, in
 * the same order, with the same weights), so switching back and forth costs
 * nothing after the first run. The cache belongs to the instance; plans are
 * recognised by identity and their `tensor`/`doraScales` must not change.
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "../model/base_model.ts";
 * import { readAdapter } from "../model/adapter.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const adapter = await readAdapter(base.weights, "tests/fixtures/llama-tiny-lora-qv", "qv");
 * import { addLoraBranches } from "../onnx/lora_branches.ts";
 * import { AdapterFeedCache, loraPatches } from "./dynamic_feeds.ts";
 * const modules = loraPatches(adapter.plan).map((p) => p.module);
 * const cache = new AdapterFeedCache(addLoraBranches(base.onnx, base.weights, modules).branches);
 * const qv = cache.feeds([{ plan: adapter.plan, tensor: (k) => adapter.weights.toFloat32(k) }]);
 * const off = cache.feeds([]); // every branch at rank 0: the base
 * ```
 */
export class AdapterFeedCache {
  readonly #branches: ReadonlyMap<string, LoraBranch>;
  readonly #sites: ReadonlyMap<string, ParamSite>;
  readonly #memo = new ParamTensorMemo();
  readonly #minRank: number;
  readonly #ids = new WeakMap<AdapterPlan, number>();
  /**
   * Adapter sets and mixed-batch stacks are kept apart, each within its own
   * limits: a stack is rows x its adapters' bytes, and one of 16 rows could
   * otherwise push out every set it is stacked from, which each new batch
   * composition would then rebuild.
   */
  readonly #sets: FeedLru;
  readonly #stacks: FeedLru;
  #nextId = 0;

  /**
   * `limit`: how many adapter sets to keep (least recently used dropped first), and as many
   * mixed-batch stacks; `sites`: the graph's parameter sites (`addParamBranches`), fed alongside
   * the branches; `minRank`: the smallest rank fed (1 on WebGPU, whose kernels cannot bind the
   * empty tensors of rank 0); `maxBytes`: the most the CPU tensors of the sets may hold together,
   * and as much for the stacks (the newest of each is always kept). Continuous batching makes a
   * stack per batch composition, each rows x the adapters' bytes, so the count alone could hold
   * gigabytes.
   *
   * @example
   * ```ts
   * import { AdapterFeedCache } from "./dynamic_feeds.ts";
   * const cache = new AdapterFeedCache(new Map(), 8);
   * ```
   */
  constructor(
    branches: ReadonlyMap<string, LoraBranch>,
    limit = 32,
    sites: ReadonlyMap<string, ParamSite> = new Map(),
    minRank = 0,
    maxBytes = 256 * 2 ** 20,
  ) {
    this.#branches = branches;
    this.#sites = sites;
    this.#minRank = minRank;
    this.#sets = new FeedLru(limit, maxBytes);
    this.#stacks = new FeedLru(limit, maxBytes);
  }

  /**
   * The feeds for these active adapters, built once per set.
   *
   * @example
   * ```ts
   * import { AdapterFeedCache } from "./dynamic_feeds.ts";
   * console.log(new AdapterFeedCache(new Map()).feeds([])); // {}
   * ```
   */
  feeds(active: readonly ActiveAdapter[]): BranchFeeds {
    return this.#sets.get(
      this.#key(active),
      () => ({
        ...adapterFeeds(this.#branches, active, this.#minRank),
        ...paramFeeds(this.#sites, [active], this.#memo),
      }),
    );
  }

  /**
   * Mixed-batch feeds: row `i` runs with the adapters `rows[i]` (empty: the
   * base), stacked by {@linkcode stackRowFeeds}; built once per list of sets.
   *
   * @example
   * ```ts
   * import { AdapterFeedCache } from "./dynamic_feeds.ts";
   * console.log(new AdapterFeedCache(new Map()).rowFeeds([[], []])); // {}
   * ```
   */
  rowFeeds(rows: readonly (readonly ActiveAdapter[])[]): BranchFeeds {
    const key = rows.map((r) => this.#key(r)).join("|");
    return this.#stacks.get(key, () => ({
      ...stackRowFeeds(this.#branches, rows.map((r) => this.feeds(r))),
      ...paramFeeds(this.#sites, rows, this.#memo),
    }));
  }

  #key(active: readonly ActiveAdapter[]): string {
    return active.map((a) => {
      let id = this.#ids.get(a.plan);
      if (id === undefined) this.#ids.set(a.plan, id = this.#nextId++);
      return `${id}*${a.weight ?? 1}${a.masked ? "m" : ""}`;
    }).join(",");
  }

  /**
   * Drops every cached set that uses this plan (after deleting an adapter).
   *
   * @example
   * ```ts
   * import { AdapterFeedCache } from "./dynamic_feeds.ts";
   * new AdapterFeedCache(new Map()).forget({ patches: [], unmatchedKeys: [], missingModules: [], missingKeys: [], tokens: [] });
   * ```
   */
  forget(plan: AdapterPlan): void {
    const id = this.#ids.get(plan);
    if (id === undefined) return;
    const uses = (key: string) => key.split(/[,|]/).some((part) => part.startsWith(`${id}*`));
    this.#sets.dropWhere(uses);
    this.#stacks.dropWhere(uses);
    this.#ids.delete(plan);
  }
}

/** Feed sets by key, least recently used dropped first past `limit` entries or `maxBytes` of CPU tensors. */
class FeedLru {
  readonly #entries = new Map<string, { feeds: BranchFeeds; bytes: number }>();
  readonly #limit: number;
  readonly #maxBytes: number;
  #bytes = 0;

  constructor(limit: number, maxBytes: number) {
    this.#limit = limit;
    this.#maxBytes = maxBytes;
  }

  get(key: string, build: () => BranchFeeds): BranchFeeds {
    const hit = this.#entries.get(key);
    if (hit) {
      this.#entries.delete(key); // re-inserted below: most recently used last
      this.#entries.set(key, hit);
      return hit.feeds;
    }
    const feeds = build();
    // GPU-resident tensors (WebGPU feeds) hold no CPU bytes.
    const bytes = Object.values(feeds).reduce(
      (n, t) => n + (t.location === "cpu" ? (t.data as ArrayBufferView).byteLength : 0),
      0,
    );
    this.#entries.set(key, { feeds, bytes });
    this.#bytes += bytes;
    while (this.#entries.size > 1 && (this.#entries.size > this.#limit || this.#bytes > this.#maxBytes)) {
      this.#drop(this.#entries.keys().next().value!);
    }
    return feeds;
  }

  dropWhere(test: (key: string) => boolean): void {
    for (const key of [...this.#entries.keys()]) if (test(key)) this.#drop(key);
  }

  #drop(key: string): void {
    this.#bytes -= this.#entries.get(key)?.bytes ?? 0;
    this.#entries.delete(key);
  }
}

type TensorArray = Float32Array | Uint16Array;

/** `out` `[rows, outer, width]` row `row` gets `src` `[outer, w]` in its first `w` columns (the rest stay 0). */
function padInto(out: TensorArray, row: number, outer: number, width: number, src: TensorArray, w: number) {
  const base = row * outer * width;
  if (w === width) {
    out.set(src, base);
    return;
  }
  for (let i = 0; i < outer; i++) out.set(src.subarray(i * w, (i + 1) * w), base + i * width);
}

/**
 * Stacks per-row feed sets (each from {@linkcode adapterFeeds} on
 * per-row branches, one set per batch row) into one mixed-batch feed: A
 * `[rows, in, maxRank]`, B `[rows, maxRank, out]`, scale `[rows, 1, out]`.
 * Rows of lower rank are padded with zeros, which add nothing (a zero column
 * of A^T meets a zero row of B^T). Rows may share a set object.
 *
 * @throws {OnnxModelError} when a branch is not per-row (built without `perRow`).
 * @example
 * ```ts
 * import { loadBaseModel } from "../model/base_model.ts";
 * import { readAdapter } from "../model/adapter.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const adapter = await readAdapter(base.weights, "tests/fixtures/llama-tiny-lora-qv", "qv");
 * import { addLoraBranches } from "../onnx/lora_branches.ts";
 * import { adapterFeeds, loraPatches, stackRowFeeds } from "./dynamic_feeds.ts";
 * const modules = loraPatches(adapter.plan).map((p) => p.module);
 * const { branches } = addLoraBranches(base.onnx, base.weights, modules, { perRow: true });
 * const qv = adapterFeeds(branches, [{ plan: adapter.plan, tensor: (k) => adapter.weights.toFloat32(k) }]);
 * const off = adapterFeeds(branches, []);
 * const feeds = stackRowFeeds(branches, [qv, off, qv]); // rows 0 and 2 with the adapter, row 1 the base
 * ```
 */
export function stackRowFeeds(branches: ReadonlyMap<string, LoraBranch>, rows: readonly BranchFeeds[]): BranchFeeds {
  const feeds: BranchFeeds = {};
  const n = rows.length;
  for (const branch of branches.values()) {
    if (!branch.rowsDim) {
      throw new OnnxModelError("mixed batches need per-row branches (addLoraBranches with perRow)", {
        key: branch.module,
      });
    }
    const { inFeatures: inF, outFeatures: outF } = branch;
    const ranks = rows.map((r) => r[branch.b].dims[1]);
    const rank = Math.max(0, ...ranks);
    const make = (size: number): TensorArray =>
      branch.elementType === "float16" ? new Uint16Array(size) : new Float32Array(size);
    const b = make(n * rank * outF);
    // B^T rows past a row's rank stay 0: its rows are contiguous.
    rows.forEach((r, i) => b.set(r[branch.b].data as TensorArray, i * rank * outF));
    feeds[branch.b] = tensor(b, [n, rank, outF]);
    if (!branch.group) {
      const a = make(n * inF * rank);
      rows.forEach((r, i) => padInto(a, i, inF, rank, r[branch.a].data as TensorArray, ranks[i]));
      feeds[branch.a] = tensor(a, [n, inF, rank]);
    }
    for (const name of [branch.maskOn, branch.maskOff]) {
      // [rows, 1, rank]; columns past a row's rank stay 0 (its A and B columns there are 0 too).
      if (!name) continue;
      const gate = make(n * rank);
      rows.forEach((r, i) => gate.set(r[name].data as TensorArray, i * rank));
      feeds[name] = tensor(gate, [n, 1, rank]);
    }
    for (const name of [branch.scale, branch.bias]) {
      if (!name) continue;
      const vector = make(n * outF);
      rows.forEach((r, i) => vector.set(r[name].data as TensorArray, i * outF));
      feeds[name] = tensor(vector, [n, 1, outF]);
    }
  }
  for (const group of groupsOf(branches)) {
    // Each member padded to its largest rank over the rows, as its B is.
    const inF = branches.get(group.modules[0])!.inFeatures;
    const rowRanks = rows.map((r) => [...(r[group.split].data as BigInt64Array)].map(Number));
    const padded = group.modules.map((_, m) => Math.max(0, ...rowRanks.map((ranks) => ranks[m])));
    const width = padded.reduce((s, r) => s + r, 0);
    const first = rows[0]?.[group.a].data as TensorArray | undefined;
    const a = first instanceof Uint16Array ? new Uint16Array(n * inF * width) : new Float32Array(n * inF * width);
    rows.forEach((r, i) => {
      const src = r[group.a].data as TensorArray;
      const ranks = rowRanks[i];
      const rowWidth = ranks.reduce((s, k) => s + k, 0);
      // A row at the padded ranks is laid out as the stack is: one copy (per input feature otherwise).
      if (ranks.every((k, m) => k === padded[m])) {
        a.set(src, i * inF * width);
        return;
      }
      for (let j = 0; j < inF; j++) {
        let from = j * rowWidth;
        let to = (i * inF + j) * width;
        group.modules.forEach((_, m) => {
          a.set(src.subarray(from, from + ranks[m]), to);
          from += ranks[m];
          to += padded[m];
        });
      }
    });
    feeds[group.a] = tensor(a, [n, inF, width]);
    feeds[group.split] = splitTensor(padded);
  }
  return feeds;
}

function tensor(data: TensorArray, dims: number[]): Tensor {
  return data instanceof Uint16Array ? new Tensor("float16", data, dims) : new Tensor("float32", data, dims);
}
