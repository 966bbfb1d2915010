/**
 * Merged mode: adapters merged into copies of the weights they target
 * (`mergePatches` computes the values), as a new session per adapter (the
 * merged engine) or a new base (`mergeAndUnload`). Exact and as fast to run
 * as the base, at the cost of a full weight copy per adapter.
 * @module
 */
import type { ModelProto } from "../deps/onnx_proto.ts";
import { UnsupportedError } from "../errors.ts";
import { type MergedWeight, mergePatches, type NewBias, type WeightMerger } from "../lora/merge.ts";
import { externalBytes } from "../onnx/external_data.ts";
import { patchModel, type WeightUpdate } from "../onnx/patch.ts";
import {
  dequantizeStored,
  type ExternalBytes,
  readQuantizedWeight,
  readTargetWeight,
  type StoredQuantized,
} from "../onnx/quantized_weights.ts";
import { quantizedUpdates, requantize, type TensorUpdate } from "../onnx/requantize.ts";
import { indexWeights, type InitializerUse, type WeightTarget } from "../onnx/weight_index.ts";
import { isPromptLearning } from "../tuners/prompt_learning/config.ts";
import { isAlora } from "../lora/alora.ts";
import { withScalesMerged } from "../tuners/scales_merged.ts";
import { composedMerge } from "../tuners/compose.ts";
import type { LoadedAdapter } from "./adapter.ts";
import { BaseModel } from "./base_model.ts";
import type { AdapterEngine, WeightedAdapter } from "./engine.ts";
import type { ModelSession } from "./model_session.ts";
import { createSession } from "./session.ts";

const useKey = (u: InitializerUse) => `${u.initializer}\u0000${u.readerIndex}\u0000${u.inputIndex}`;

/**
 * Merges adapters, in order, into copies of the base's weights and returns
 * the patched model. Quantized weights are merged dequantized and stored
 * re-quantized in their own format (`requantize.ts`) after each adapter, as
 * PEFT merges into quantized layers. With `safeMerge`, merged weights are checked for NaN
 * and infinity before anything is returned (PEFT's `safe_merge`).
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "./base_model.ts";
 * import { readAdapter } from "./adapter.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const adapter = await readAdapter(base.weights, "tests/fixtures/llama-tiny-lora-qv", "qv");
 * import { mergeAdapters } from "./merged.ts";
 * const onnx = await mergeAdapters(base, [{ adapter, weight: 1 }], (await base.kernels()).merger, { safeMerge: true });
 * ```
 */
export async function mergeAdapters(
  base: BaseModel,
  adapters: readonly WeightedAdapter[],
  merger: WeightMerger,
  options: { safeMerge?: boolean } = {},
): Promise<ModelProto> {
  const prompt = adapters.find(({ adapter }) => isPromptLearning(adapter.config));
  if (prompt) {
    // PEFT's merge_and_unload has nothing to merge either: the prompt is an input, not a weight delta.
    throw new UnsupportedError(
      `${prompt.adapter.config.peftType} adapter ${prompt.adapter.name} changes no weight, so it cannot be merged`,
      { key: prompt.adapter.name },
    );
  }
  const activated = adapters.find(({ adapter }) => isAlora(adapter.config));
  if (activated) {
    // ALoraLinearVariant.merge_unsafe: the delta applies to some tokens only, which no weight can say.
    throw new UnsupportedError(
      `aLoRA does not support merging (adapter ${activated.adapter.name} applies only after its invocation ` +
        'tokens, as PEFT says); use mode "dynamic"',
      { key: "alora_invocation_tokens" },
    );
  }
  const tuned = adapters.find(({ adapter }) => adapter.config.peftType !== "LORA");
  const weighted = adapters.find(({ weight }) => weight !== 1);
  if (tuned && weighted) {
    // A non-LoRA adapter's plan holds whole new weights computed from the base: it does not scale.
    throw new UnsupportedError(
      `${tuned.adapter.config.peftType} adapter ${tuned.adapter.name} merges with weight 1 only`,
      { key: tuned.adapter.name },
    );
  }
  if (tuned && adapters.length > 1) {
    // PEFT merges each in turn into what the earlier ones left (one method for all, as PEFT loads them).
    const combined = composedMerge(base, adapters.map(({ adapter }) => adapter));
    const name = adapters.map(({ adapter }) => adapter.name).join("+");
    return mergeAdapters(base, [{ adapter: { ...tuned.adapter, name, ...combined }, weight: 1 }], merger, options);
  }
  const merged = new Map<string, MergedWeight>();
  const requantized = new Map<string, StoredQuantized>();
  // Biases added to bias-less layers, summed per layer over the adapters.
  const biases = new Map<number, NewBias>();
  const graph = base.onnx.graph!;
  const external: ExternalBytes = (t) => externalBytes(t, base.externalData, base.file);
  const baseWeight = (use: InitializerUse | WeightTarget) =>
    "quantized" in use && use.quantized
      ? readTargetWeight(graph, use, base.file, external)
      : base.readWeight(use.initializer);
  for (const { adapter: loaded, weight } of adapters) {
    // Per-channel scales loaded for dynamic mode (IA³) are merged into weights only now.
    const adapter = withScalesMerged(base, loaded);
    const newBiases: NewBias[] = [];
    // A quantized layer merges from the float weight the adapter saved for it, when the file was quantized from
    // that weight: PEFT loads it over the layer (strict=False), then merges into it, then re-quantizes.
    const saved = (use: InitializerUse | WeightTarget) =>
      "module" in use && use.quantized ? adapter.quantizedBaseWeights?.get(use.module)?.slice() : undefined;
    const read = (use: InitializerUse | WeightTarget) =>
      merged.get(useKey(use))?.values.slice() ?? saved(use) ?? baseWeight(use);
    const updates = await mergePatches(adapter.plan.patches, read, (k) => adapter.weights.toFloat32(k), merger, {
      fanInFanOut: adapter.config.fanInFanOut,
      weight,
      tokens: adapter.plan.tokens,
      newBiases,
    });
    for (const b of newBiases) {
      // A trained bias replaces what earlier adapters added; `lora_B.bias` deltas add up.
      const known = b.replaces ? undefined : biases.get(b.readerIndex);
      if (known) b.values.forEach((v, i) => known.values[i] += v);
      else biases.set(b.readerIndex, { ...b, values: b.values.slice() });
    }
    for (const update of updates) {
      if (options.safeMerge && !update.values.every(Number.isFinite)) {
        throw new UnsupportedError(
          `safe merge: merging adapter ${adapter.name} gives non-finite values in ${update.module}; the adapter seems broken`,
          { key: update.module },
        );
      }
      merged.set(useKey(update), update);
      if (update.quantized) {
        // PEFT re-quantizes after each adapter it merges into a quantized layer; the next adapter reads that.
        const stored = requantize(
          readQuantizedWeight(graph, update.quantized, base.file, external),
          update.values,
          update.quantized.layout,
        );
        requantized.set(useKey(update), stored);
        update.values = dequantizeStored(stored, update.quantized.layout);
      }
    }
  }
  // Weights of quantized targets are stored in their own format (codes, scales, zero points).
  const updates = [...merged.values()].flatMap((u): (WeightUpdate | TensorUpdate)[] =>
    u.quantized ? quantizedUpdates(graph, { ...u.quantized, module: u.module }, requantized.get(useKey(u))!) : [u]
  );
  return patchModel(base.onnx, base.weights, updates, [...biases.values()]);
}

/**
 * A new base model whose weights have the adapters merged in (PEFT's
 * `merge_and_unload`); the original base is left as it was. The new base
 * creates its own kernels when adapters are applied to it.
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "./base_model.ts";
 * import { readAdapter } from "./adapter.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const adapter = await readAdapter(base.weights, "tests/fixtures/llama-tiny-lora-qv", "qv");
 * import { mergedBase } from "./merged.ts";
 * const merged = await mergedBase(base, [{ adapter, weight: 1 }]);
 * await merged.saveOnnx("/tmp/llama-tiny-qv.onnx");
 * ```
 */
export async function mergedBase(
  base: BaseModel,
  adapters: readonly WeightedAdapter[],
  options: { safeMerge?: boolean } = {},
): Promise<BaseModel> {
  const merger = (await base.kernels()).merger;
  return await base.withWeights(async () => {
    const onnx = await mergeAdapters(base, adapters, merger, options);
    const session = await createSession(onnx, base.externalData, base.settings, base.file);
    // The merged weights exist only here: the new base keeps its bytes (nothing to read them again from).
    const { source, config, file, externalData, settings, text, inlineLocation } = base;
    const parts = { source, config, file, externalData, settings, text, inlineLocation };
    return new BaseModel({ ...parts, onnx, weights: indexWeights(onnx.graph!), session });
  });
}

/**
 * An engine with one merged session per adapter, merged with the base's
 * kernels.
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "./base_model.ts";
 * import { readAdapter } from "./adapter.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const adapter = await readAdapter(base.weights, "tests/fixtures/llama-tiny-lora-qv", "qv");
 * import { mergedEngine } from "./merged.ts";
 * const engine = await mergedEngine(base).add(adapter);
 * const { session } = engine.runnable([{ adapter, weight: 1 }]);
 * ```
 */
export function mergedEngine(base: BaseModel, sessions: ReadonlyMap<string, ModelSession> = new Map()): AdapterEngine {
  return {
    runnable(active: readonly WeightedAdapter[]) {
      if (active.length === 0) return { session: base.session, feeds: {} };
      if (active.length > 1 || active[0].weight !== 1) {
        throw new UnsupportedError(
          'several (or weighted) active adapters need mode "dynamic"; in merged mode each adapter has its own session',
          { key: "adapter" },
        );
      }
      const session = sessions.get(active[0].adapter.name);
      if (!session) throw new UnsupportedError(`adapter ${active[0].adapter.name} has no session`, { key: "adapter" });
      return { session, feeds: {} };
    },
    async add(adapter: LoadedAdapter) {
      const merger = (await base.kernels()).merger;
      const session = await base.withWeights(async () =>
        base.createSessionFromWeights(await mergeAdapters(base, [{ adapter, weight: 1 }], merger))
      );
      return mergedEngine(base, new Map([...sessions, [adapter.name, session]]));
    },
    remove(name: string) {
      const rest = new Map(sessions);
      const retired = rest.get(name);
      rest.delete(name);
      return { engine: mergedEngine(base, rest), retired: retired ? [retired] : [] };
    },
    sessions: () => [...sessions.values()],
  };
}
