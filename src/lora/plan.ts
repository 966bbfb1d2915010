/**
 * Planning: pure checks that turn (config, adapter tensors, ONNX weights)
 * into a list of patches, before anything is changed. Most of PEFT's rules
 * and most bad-input errors live here, so a failed load never leaves a
 * half-patched model behind.
 * @module
 */
import { createTargetMatcher, type LoraConfig, rankFor, scalingFor } from "../config/mod.ts";
import { AdapterMismatchError, UnsupportedError } from "../errors.ts";
import type { WeightIndex, WeightTarget } from "../onnx/weight_index.ts";
import type { AdapterLayout, ModuleTensors } from "./adapter_weights.ts";

/** Shapes of the adapter's tensors, by key. */
export type ShapeOf = (key: string) => readonly number[];

/** One LoRA (or DoRA) update of one ONNX weight. */
export interface LoraPatch {
  kind: "lora";
  module: string;
  target: WeightTarget;
  rank: number;
  scale: number;
  /** Key of A ([rank, in] for linear, [rank, num_embeddings] for embeddings). */
  a: string;
  /** Key of B ([out, rank] for linear, [embedding_dim, rank] for embeddings). */
  b: string;
  /** Key of `lora_B.bias` ([out]) when `lora_bias` was used. */
  bias?: string;
  /** Key of the DoRA magnitude vector ([out]). */
  magnitude?: string;
}

/** A full parameter replacement (`modules_to_save`, trained biases). */
export interface ReplacePatch {
  kind: "replace";
  module: string;
  target: WeightTarget;
  /** Which parameter of the module is replaced. */
  param: "weight" | "bias";
  key: string;
}

/** Everything to apply for one adapter. */
export interface AdapterPlan {
  patches: Array<LoraPatch | ReplacePatch>;
  /** Adapter keys that match no module of the base (PEFT's "unexpected keys"). */
  unmatchedKeys: string[];
  /** Base modules the config targets that the adapter has no weights for (PEFT's "missing keys"). */
  missingModules: string[];
}

const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => v === b[i]);
const fmt = (shape: readonly number[]) => `[${shape.join(", ")}]`;

function tensorKeys(t: ModuleTensors): string[] {
  return [t.loraA, t.loraB, t.loraBias, t.magnitude, t.embeddingA, t.embeddingB, t.fullWeight, t.fullBias]
    .filter((k): k is string => k !== undefined);
}

function sample(names: Iterable<string>, n = 5): string {
  const list = [...names];
  return list.slice(0, n).join(", ") + (list.length > n ? `, ... (${list.length} in all)` : "");
}

/** Checks one tensor's shape, naming module, key and both shapes on mismatch. */
function expectShape(
  module: string,
  key: string,
  actual: readonly number[],
  expected: readonly number[],
  target: WeightTarget,
) {
  if (!same(actual, expected)) {
    throw new AdapterMismatchError(
      `${key} has shape ${
        fmt(actual)
      } but the base weight (${target.initializer}, ${target.inFeatures} in x ${target.outFeatures} out) needs ${
        fmt(expected)
      }`,
      { key: module },
    );
  }
}

function planLora(t: ModuleTensors, target: WeightTarget, config: LoraConfig, shapeOf: ShapeOf): LoraPatch {
  const module = t.module;
  const embedding = t.embeddingA !== undefined || t.embeddingB !== undefined;
  const a = embedding ? t.embeddingA : t.loraA;
  const b = embedding ? t.embeddingB : t.loraB;
  if (a === undefined || b === undefined) {
    throw new AdapterMismatchError(`has ${a ? "A" : "B"} but no ${a ? "B" : "A"} matrix`, { key: module });
  }
  if (embedding !== (target.kind === "embedding")) {
    throw new AdapterMismatchError(
      `adapter has ${embedding ? "embedding" : "linear"} LoRA weights but the base module (${target.nodeName}) is ${
        target.kind === "embedding" ? "an embedding" : "a linear layer"
      }`,
      { key: module },
    );
  }
  const rank = rankFor(config, module);
  const aShape = shapeOf(a);
  expectShape(module, a, aShape, [rank, target.inFeatures], target);
  expectShape(module, b, shapeOf(b), [target.outFeatures, rank], target);
  if (t.loraBias !== undefined) {
    expectShape(module, t.loraBias, shapeOf(t.loraBias), [target.outFeatures], target);
    if (target.bias === undefined) {
      throw new UnsupportedError(`lora_B.bias cannot be merged: the base module (${target.nodeName}) has no bias`, {
        key: module,
      });
    }
  }
  if (t.magnitude !== undefined) {
    if (embedding) throw new UnsupportedError("DoRA on embeddings is not supported", { key: module });
    expectShape(module, t.magnitude, shapeOf(t.magnitude), [target.outFeatures], target);
  } else if (config.useDora && !embedding) {
    throw new AdapterMismatchError("config has use_dora but the adapter has no lora_magnitude_vector", { key: module });
  }
  return {
    kind: "lora",
    module,
    target,
    rank,
    scale: scalingFor(config, module),
    a,
    b,
    bias: t.loraBias,
    magnitude: t.magnitude,
  };
}

function planReplace(t: ModuleTensors, target: WeightTarget, shapeOf: ShapeOf, config: LoraConfig): ReplacePatch[] {
  const patches: ReplacePatch[] = [];
  if (t.fullWeight !== undefined) {
    // PyTorch stores Linear as [out, in], Conv1D (fan_in_fan_out) and Embedding as [in, out].
    const torchShape = target.kind === "embedding" || config.fanInFanOut
      ? [target.inFeatures, target.outFeatures]
      : [target.outFeatures, target.inFeatures];
    expectShape(t.module, t.fullWeight, shapeOf(t.fullWeight), torchShape, target);
    patches.push({ kind: "replace", module: t.module, target, param: "weight", key: t.fullWeight });
  }
  if (t.fullBias !== undefined) {
    if (target.bias === undefined) {
      throw new AdapterMismatchError(`adapter has a bias but the base module (${target.nodeName}) has none`, {
        key: t.module,
      });
    }
    expectShape(t.module, t.fullBias, shapeOf(t.fullBias), [target.outFeatures], target);
    patches.push({ kind: "replace", module: t.module, target, param: "bias", key: t.fullBias });
  }
  return patches;
}

/**
 * Matches an adapter's modules to the base's ONNX weights and validates
 * every shape, rank and PEFT rule. Throws on the first error; changes nothing.
 *
 * @example
 * ```ts
 * import { planAdapter } from "./plan.ts";
 * // const plan = planAdapter(config, groupAdapterKeys(file.names()), (k) => file.get(k).shape, base.weights);
 * // plan.patches.length, plan.unmatchedKeys, plan.missingModules
 * ```
 */
export function planAdapter(
  config: LoraConfig,
  layout: AdapterLayout,
  shapeOf: ShapeOf,
  weights: WeightIndex,
): AdapterPlan {
  const patches: Array<LoraPatch | ReplacePatch> = [];
  const unmatchedKeys = [...layout.unknownKeys];
  let loraModules = 0;
  for (const t of layout.modules.values()) {
    const target = weights.get(t.module);
    if (!target) {
      unmatchedKeys.push(...tensorKeys(t));
      continue;
    }
    const hasLora = [t.loraA, t.loraB, t.embeddingA, t.embeddingB].some((k) => k !== undefined);
    if (hasLora) {
      patches.push(planLora(t, target, config, shapeOf));
      loraModules++;
    } else if (t.magnitude !== undefined || t.loraBias !== undefined) {
      throw new AdapterMismatchError("has DoRA magnitude or lora_B.bias but no lora_A/lora_B", { key: t.module });
    }
    patches.push(...planReplace(t, target, shapeOf, config));
  }
  if (loraModules === 0) {
    throw new AdapterMismatchError(
      `adapter matches no module of the base model. Adapter modules: ${sample(layout.modules.keys()) || "(none)"}; ` +
        `base modules: ${sample(weights.modules)}`,
    );
  }
  return { patches, unmatchedKeys, missingModules: missing(config, weights, new Set(patches.map((p) => p.module))) };
}

/**
 * Base modules the config targets that got no weights. Without explicit
 * `target_modules` (PEFT then picks them per architecture) this cannot be
 * known, and nothing is reported.
 */
function missing(config: LoraConfig, weights: WeightIndex, adapted: ReadonlySet<string>): string[] {
  let targeted: (name: string) => boolean;
  try {
    targeted = createTargetMatcher(config);
  } catch (error) {
    if (error instanceof UnsupportedError) return [];
    throw error;
  }
  return weights.modules.filter((m) => !adapted.has(m) && targeted(m));
}
