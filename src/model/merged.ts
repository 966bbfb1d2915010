/**
 * Merged mode's apply step: the base's ONNX model with one or more
 * adapters merged into copies of the weights they target.
 * @module
 */
import type { ModelProto } from "../deps/onnx_proto.ts";
import { UnsupportedError } from "../errors.ts";
import { mergePatches } from "../lora/merge.ts";
import type { WeightMerger } from "../lora/merger.ts";
import { patchModel, type WeightUpdate } from "../onnx/patch.ts";
import { indexWeights, type InitializerUse } from "../onnx/weight_index.ts";
import type { LoadedAdapter } from "./adapter.ts";
import { BaseModel } from "./base_model.ts";
import { createSession } from "./session.ts";

/** One adapter to merge, with its weight (PEFT's per-adapter weights; 1 by default). */
export interface WeightedAdapter {
  adapter: LoadedAdapter;
  weight?: number;
}

const useKey = (u: InitializerUse) => `${u.initializer}\u0000${u.readerIndex}\u0000${u.inputIndex}`;

/**
 * Merges adapters, in order, into copies of the base's weights and returns
 * the patched model. With `safeMerge`, merged weights are checked for NaN
 * and infinity before anything is returned (PEFT's `safe_merge`).
 *
 * @example
 * ```ts
 * import { mergeAdapters } from "./merged.ts";
 * // const onnx = await mergeAdapters(base, [{ adapter }], cpuMerger(await loadKernels()));
 * ```
 */
export async function mergeAdapters(
  base: BaseModel,
  adapters: readonly WeightedAdapter[],
  merger: WeightMerger,
  options: { safeMerge?: boolean } = {},
): Promise<ModelProto> {
  const merged = new Map<string, WeightUpdate>();
  for (const { adapter, weight } of adapters) {
    const reader = {
      read: (use: InitializerUse) => merged.get(useKey(use))?.values.slice() ?? base.readWeight(use.initializer),
    };
    const updates = await mergePatches(adapter.plan.patches, reader, (k) => adapter.weights.toFloat32(k), merger, {
      fanInFanOut: adapter.config.fanInFanOut,
      weight,
    });
    for (const update of updates) {
      if (options.safeMerge && !update.values.every(Number.isFinite)) {
        throw new UnsupportedError(
          `safe merge: merging adapter ${adapter.name} gives non-finite values in ${update.module}; the adapter seems broken`,
          { key: update.module },
        );
      }
      merged.set(useKey(update), update);
    }
  }
  return patchModel(base.onnx, base.weights, [...merged.values()]);
}

/**
 * A new base model whose weights have the adapters merged in (PEFT's
 * `merge_and_unload`); the original base is left as it was.
 *
 * @example
 * ```ts
 * import { mergedBase } from "./merged.ts";
 * // const merged = await mergedBase(base, [{ adapter }], cpuMerger(await loadKernels()));
 * ```
 */
export async function mergedBase(
  base: BaseModel,
  adapters: readonly WeightedAdapter[],
  merger: WeightMerger,
  options: { safeMerge?: boolean } = {},
): Promise<BaseModel> {
  const onnx = await mergeAdapters(base, adapters, merger, options);
  const session = await createSession(onnx, base.externalData, base.settings, base.file);
  return new BaseModel(
    base.source,
    base.config,
    base.file,
    onnx,
    base.externalData,
    indexWeights(onnx.graph!),
    base.settings,
    session,
    base.text,
  );
}
