/**
 * Merging an adapter loaded as per-channel scales (IA³ in dynamic mode,
 * `AdapterPlan.scales`) when asked (`mergeAndUnload`): the scaled weights are
 * computed then, by the method's own merge, so dynamic mode never holds a
 * copy of the weights it scales.
 * @module
 */
import type { AdapterPlan } from "../lora/plan.ts";
import { parseSafetensors, type Safetensors, serializeSafetensors, type TensorInput } from "../safetensors/mod.ts";
import type { TunerConfig } from "./config.ts";
import { isTunerType, TUNER_METHODS } from "./methods.ts";
import { mergeModule, type TunedBase } from "./read.ts";

/**
 * What {@linkcode withScalesMerged} reads and returns of an adapter.
 *
 * @example
 * ```ts
 * import type { ScaledAdapter } from "./scales_merged.ts";
 * const scaled = (a: ScaledAdapter) => (a.plan.scales ?? []).length > 0;
 * ```
 */
export interface ScaledAdapter {
  config: { peftType: string };
  plan: AdapterPlan;
  weights: Safetensors;
}

/**
 * The adapter with its scales (if any) replaced by the full weights they
 * merge into (`replace` patches, as merged mode plans them); unchanged when
 * it has none.
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "../model/base_model.ts";
 * import { readAdapterFor } from "../model/any_adapter.ts";
 * import { withScalesMerged } from "./scales_merged.ts";
 * const base = await loadBaseModel("tests/fixtures/real/bases/llama-torchscript");
 * const ia3 = await readAdapterFor(base, "tests/fixtures/tuners/llama-ia3", "ia3", {}, "dynamic");
 * withScalesMerged(base, ia3).plan.patches.length; // 6: each scaled weight replaced
 * ```
 */
export function withScalesMerged<A extends ScaledAdapter>(base: TunedBase, adapter: A): A {
  const scales = adapter.plan.scales ?? [];
  if (scales.length === 0 || !isTunerType(adapter.config.peftType)) return adapter;
  const method = TUNER_METHODS[adapter.config.peftType];
  const config = adapter.config as unknown as TunerConfig;
  const outputs = new Map<string, TensorInput>();
  const patches = scales.flatMap((s) => {
    const tensor = (param: string) =>
      s.key.endsWith(`.${param}`)
        ? { values: adapter.weights.toFloat32(s.key), shape: adapter.weights.info(s.key).shape }
        : undefined;
    return mergeModule(base, method, config, { ...s, tensor, shared: () => undefined }, outputs);
  });
  const { scales: _, ...plan } = adapter.plan;
  const weights = parseSafetensors(serializeSafetensors(outputs), `${adapter.config.peftType} merged weights`);
  return { ...adapter, plan: { ...plan, patches: [...plan.patches, ...patches] }, weights };
}
