/**
 * Dynamic mode with several dense-delta adapters (LoHa, LoKr, OFT, BOFT,
 * FourierFT: each module's weight fed whole) active on one row: a module
 * more than one of them changes is fed the weight PEFT's forward with all of
 * them active computes (`compose.ts`), built once per ordered set of
 * adapters and kept for the next runs with that set.
 * @module
 */
import type { ActiveAdapter } from "../lora/dynamic_feeds.ts";
import type { AdapterParams } from "../lora/param_feeds.ts";
import type { AdapterPlan } from "../lora/plan.ts";
import { type ComposableAdapter, composedModules } from "./compose.ts";
import { isTunerType } from "./methods.ts";
import type { TunedBase } from "./read.ts";

/**
 * One active adapter of a row: what it is, and its feeds.
 *
 * @example
 * ```ts
 * import type { DenseRowEntry } from "./dense_rows.ts";
 * const name = (e: DenseRowEntry) => e.adapter.name;
 * ```
 */
export interface DenseRowEntry {
  adapter: ComposableAdapter;
  active: ActiveAdapter;
}

/** `[out, in]` to `[in, out]`, the layout fed to a whole-module site. */
function transposed(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c];
  return out;
}

/**
 * Combined feeds of dense adapters that share modules in one row, cached by
 * ordered adapter names (the `limit` most recently used sets).
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "../model/base_model.ts";
 * import { DenseRows } from "./dense_rows.ts";
 * const base = await loadBaseModel("tests/fixtures/real/bases/llama-torchscript");
 * const rows = new DenseRows(base);
 * rows.row([]); // []: nothing to combine
 * ```
 */
export class DenseRows {
  readonly #base: TunedBase;
  readonly #limit: number;
  readonly #sets = new Map<string, { names: readonly string[]; active: ActiveAdapter }>();

  /**
   * `base`: whose weights the combined ones start from; `limit`: how many combined sets to keep.
   *
   * @example
   * ```ts
   * import { loadBaseModel } from "../model/base_model.ts";
   * import { DenseRows } from "./dense_rows.ts";
   * new DenseRows(await loadBaseModel("tests/fixtures/real/bases/llama-torchscript"), 8);
   * ```
   */
  constructor(base: TunedBase, limit = 16) {
    this.#base = base;
    this.#limit = limit;
  }

  /**
   * The row's feeds: unchanged unless two or more non-LoRA adapters feed a
   * module whole, which are then replaced by one adapter whose modules are
   * theirs, those they share combined as PEFT's forward combines them.
   * Weighted adapters are left as they are (feeding them whole refuses them).
   *
   * @example
   * ```ts
   * import { loadBaseModel } from "../model/base_model.ts";
   * import { DenseRows } from "./dense_rows.ts";
   * const rows = new DenseRows(await loadBaseModel("tests/fixtures/real/bases/llama-torchscript"));
   * rows.row([]).length; // 0
   * ```
   */
  row(entries: readonly DenseRowEntry[]): ActiveAdapter[] {
    const fed = entries.filter((e) =>
      isTunerType(e.adapter.config.peftType) && (e.active.weight ?? 1) === 1 &&
      (e.active.params?.modules.size ?? 0) > 0
    );
    const owners = new Map<string, number>();
    for (const e of fed) for (const m of e.active.params!.modules.keys()) owners.set(m, (owners.get(m) ?? 0) + 1);
    const shared = new Set([...owners].filter(([, n]) => n > 1).map(([m]) => m));
    if (shared.size === 0) return entries.map((e) => e.active);
    const group = fed.filter((e) => [...e.active.params!.modules.keys()].some((m) => shared.has(m)));
    const combined = this.#combined(group, shared);
    const first = entries.indexOf(group[0]);
    return entries.flatMap((e, i) => i === first ? [combined] : group.includes(e) ? [] : [e.active]);
  }

  /**
   * Drops the combined sets that use adapter `name`; returns their plans (for the feed cache to forget).
   *
   * @example
   * ```ts
   * import { loadBaseModel } from "../model/base_model.ts";
   * import { DenseRows } from "./dense_rows.ts";
   * new DenseRows(await loadBaseModel("tests/fixtures/real/bases/llama-torchscript")).forget("a"); // []
   * ```
   */
  forget(name: string): AdapterPlan[] {
    const plans: AdapterPlan[] = [];
    for (const [key, set] of [...this.#sets]) {
      if (!set.names.includes(name)) continue;
      this.#sets.delete(key);
      plans.push(set.active.plan);
    }
    return plans;
  }

  #combined(group: readonly DenseRowEntry[], shared: ReadonlySet<string>): ActiveAdapter {
    const names = group.map((e) => e.adapter.name);
    const key = names.join("\u0000");
    const known = this.#sets.get(key);
    if (known) {
      this.#sets.delete(key); // re-inserted below: most recently used last
      this.#sets.set(key, known);
      return known.active;
    }
    const params: AdapterParams = { deltas: new Map(), modules: new Map() };
    // Modules one adapter changes keep its set (shared with its own feeds); shared ones are combined.
    for (const e of group) {
      for (const [m, set] of e.active.params!.modules) if (!shared.has(m)) params.modules.set(m, set);
    }
    // Each adapter's own feeds hold its module merged alone (made at load): the first on a module starts from
    // them, so no base weight is read here, at run time, when a session may hold the only copy.
    const alone = (adapter: ComposableAdapter, m: string) => {
      const own = group.find((e) => e.adapter === adapter)!.active.params!.modules.get(m);
      if (!own) return undefined;
      const patches = adapter.plan.patches.filter((p) => p.module === m && p.kind === "replace");
      const { outFeatures, inFeatures } = patches[0].target;
      const biasMerged = patches.some((p) => p.kind === "replace" && p.param === "bias");
      return { weight: transposed(own.weight, inFeatures, outFeatures), bias: own.bias, biasMerged };
    };
    const composed = composedModules(this.#base, group.map((e) => e.adapter), "forward", shared, alone);
    for (const [m, { target, params: p }] of composed) {
      // A dense method changes weights only: the bias fed stays the module's own.
      const { bias } = group.find((e) => e.active.params!.modules.has(m))!.active.params!.modules.get(m)!;
      params.modules.set(m, { weight: transposed(p.weight, target.outFeatures, target.inFeatures), bias });
    }
    const plan: AdapterPlan = { patches: [], unmatchedKeys: [], missingModules: [], missingKeys: [], tokens: [] };
    const active: ActiveAdapter = { plan, tensor: group[0].active.tensor, params };
    this.#sets.set(key, { names, active });
    if (this.#sets.size > this.#limit) this.#sets.delete(this.#sets.keys().next().value!);
    return active;
  }
}
