/**
 * Several adapters of one non-LoRA method on the same modules, combined as
 * PEFT combines them: merging several (`merge_and_unload` / `merge_adapter`
 * with a list of active adapters) merges each in turn into what the previous
 * ones left; the forward of several active adapters equals merging them in
 * order (deltas add, IA³ scales multiply, BOFT rotations compose as its merge
 * composes them), or in the reverse order for OFT (`forwardReversed`). Each
 * adapter's merge is recomputed from its saved tensors, whatever mode it was
 * loaded for.
 * @module
 */
import { UnsupportedError } from "../errors.ts";
import type { AdapterPlan, ReplacePatch } from "../lora/plan.ts";
import type { WeightTarget } from "../onnx/weight_target.ts";
import { parseSafetensors, type Safetensors, serializeSafetensors, type TensorInput } from "../safetensors/mod.ts";
import type { TunerConfig, TunerType } from "./config.ts";
import { isTunerType, TUNER_METHODS } from "./methods.ts";
import { mergeModuleParams, type ModuleParams, savedTensors, type TunedBase } from "./read.ts";

/**
 * What combining reads of an adapter (a `LoadedAdapter` is one).
 *
 * @example
 * ```ts
 * import type { ComposableAdapter } from "./compose.ts";
 * const type = (a: ComposableAdapter) => a.config.peftType;
 * ```
 */
export interface ComposableAdapter {
  readonly name: string;
  readonly config: { readonly peftType: string };
  readonly plan: AdapterPlan;
  /** The saved file (`TunedAdapter.saved`). */
  readonly saved?: Safetensors;
}

/**
 * A module's parameters after several adapters (`[out, in]` weight), and
 * whether any of them changed its bias.
 *
 * @example
 * ```ts
 * import type { ComposedModule } from "./compose.ts";
 * const rows = (c: ComposedModule) => c.target.outFeatures;
 * ```
 */
export interface ComposedModule {
  target: WeightTarget;
  params: ModuleParams;
  biasChanged: boolean;
}

/** The modules an adapter's plan changes, with their targets. */
function targetsOf(plan: AdapterPlan): Map<string, WeightTarget> {
  const targets = new Map<string, WeightTarget>();
  for (const p of [...plan.patches, ...(plan.scales ?? [])]) targets.set(p.module, p.target);
  return targets;
}

/**
 * Checks that adapters can be combined as PEFT combines them: one non-LoRA
 * method for all (PEFT: "Cannot combine adapters with different peft types"),
 * not LN tuning (its layer merges and runs one adapter at a time).
 *
 * @throws {UnsupportedError} otherwise.
 * @example
 * ```ts
 * import { composableType } from "./compose.ts";
 * const plan = { patches: [], unmatchedKeys: [], missingModules: [], missingKeys: [], tokens: [] };
 * composableType([{ name: "a", config: { peftType: "LOHA" }, plan }, { name: "b", config: { peftType: "LOHA" }, plan }]); // "LOHA"
 * ```
 */
export function composableType(adapters: readonly ComposableAdapter[]): TunerType {
  const types = [...new Set(adapters.map((a) => a.config.peftType))];
  if (types.length > 1) {
    throw new UnsupportedError(
      `Cannot combine adapters with different peft types (${types.join(", ")}), as PEFT says: ` +
        `${adapters.map((a) => a.name).join(", ")}`,
      { key: "adapter" },
    );
  }
  const type = types[0];
  if (!isTunerType(type)) throw new UnsupportedError(`${type} adapters are not combined here`, { key: "adapter" });
  if (type === "LN_TUNING" && adapters.length > 1) {
    throw new UnsupportedError(
      `Trying to merge ${adapters.length} adapters, but LN tuning does not allow merging more than one adapter at a ` +
        "time (as PEFT says)",
      { key: "adapter" },
    );
  }
  return type;
}

/**
 * Each module's parameters after merging `adapters` one after the other into
 * the base's (`order` `"merge"`), or what PEFT's forward with them active in
 * this order computes (`"forward"`: the same, reversed for OFT). Only the
 * modules in `only`, when given. `alone`, when given, tells a module's
 * parameters after one adapter merged alone into the base (computed when it
 * was loaded): the first adapter on a module then starts from them instead of
 * reading the base's weights, which a session may hold by then.
 *
 * @throws {UnsupportedError} for adapters {@linkcode composableType} refuses.
 * @example
 * ```ts
 * import { loadBaseModel } from "../model/base_model.ts";
 * import { readAdapterFor } from "../model/any_adapter.ts";
 * import { composedModules } from "./compose.ts";
 * const base = await loadBaseModel("tests/fixtures/real/bases/llama-torchscript");
 * const a = await readAdapterFor(base, "tests/fixtures/tuners/llama-oft-pair/a", "a", {}, "dynamic");
 * const b = await readAdapterFor(base, "tests/fixtures/tuners/llama-oft-pair/b", "b", {}, "dynamic");
 * composedModules(base, [a, b], "forward").size; // 6: q_proj, v_proj and down_proj of both layers
 * ```
 */
export function composedModules(
  base: TunedBase,
  adapters: readonly ComposableAdapter[],
  order: "merge" | "forward",
  only?: ReadonlySet<string>,
  alone?: (adapter: ComposableAdapter, module: string) => (ModuleParams & { biasMerged: boolean }) | undefined,
): Map<string, ComposedModule> {
  const type = composableType(adapters);
  const method = TUNER_METHODS[type];
  const inOrder = order === "forward" && method.forwardReversed ? [...adapters].reverse() : adapters;
  const composed = new Map<string, ComposedModule>();
  for (const adapter of inOrder) {
    if (!adapter.saved) {
      throw new UnsupportedError(`${type} adapter ${adapter.name} cannot be combined with another`, {
        key: adapter.name,
      });
    }
    const saved = savedTensors(adapter.saved, method);
    const config = adapter.config as TunerConfig;
    for (const [module, target] of targetsOf(adapter.plan)) {
      if (only && !only.has(module)) continue;
      const before = composed.get(module);
      const own = { module, target, tensor: saved.module(module), shared: saved.shared };
      const { biasMerged, ...params } = (before ? undefined : alone?.(adapter, module)) ??
        mergeModuleParams(base, method, config, own, before?.params);
      composed.set(module, { target, params, biasChanged: (before?.biasChanged ?? false) || biasMerged });
    }
  }
  return composed;
}

/**
 * Several adapters of one method merged one after the other (PEFT's
 * `merge_and_unload` with them active), as one plan of full-parameter
 * replacements (`[out, in]` weights) and the values it names.
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "../model/base_model.ts";
 * import { readAdapterFor } from "../model/any_adapter.ts";
 * import { composedMerge } from "./compose.ts";
 * const base = await loadBaseModel("tests/fixtures/real/bases/llama-torchscript");
 * const a = await readAdapterFor(base, "tests/fixtures/tuners/llama-loha-pair/a", "a", {}, "merged");
 * const b = await readAdapterFor(base, "tests/fixtures/tuners/llama-loha-pair/b", "b", {}, "merged");
 * composedMerge(base, [a, b]).plan.patches.length; // 6
 * ```
 */
export function composedMerge(
  base: TunedBase,
  adapters: readonly ComposableAdapter[],
): { plan: AdapterPlan; weights: Safetensors } {
  const outputs = new Map<string, TensorInput>();
  const patches: ReplacePatch[] = [];
  for (const [module, { target, params, biasChanged }] of composedModules(base, adapters, "merge")) {
    const key = `${module}.weight`;
    outputs.set(key, { dtype: "F32", shape: [target.outFeatures, target.inFeatures], data: params.weight });
    patches.push({ kind: "replace", module, target, param: "weight", key, torchInOut: false });
    if (biasChanged && params.bias) {
      outputs.set(`${module}.bias`, { dtype: "F32", shape: [target.outFeatures], data: params.bias });
      patches.push({ kind: "replace", module, target, param: "bias", key: `${module}.bias` });
    }
  }
  const weights = parseSafetensors(serializeSafetensors(outputs), "combined merged weights");
  return { plan: { patches, unmatchedKeys: [], missingModules: [], missingKeys: [], tokens: [] }, weights };
}
