/**
 * Planning: pure checks that turn (config, adapter tensors, ONNX weights)
 * into a list of patches, before anything is changed. Most of PEFT's rules
 * and most bad-input errors live here, so a failed load never leaves a
 * half-patched model behind.
 * @module
 */
import { createTargetMatcher, type LoraConfig, rankFor, scalingFor } from "../config/mod.ts";
import { AdapterConfigError, AdapterMismatchError, UnsupportedError } from "../errors.ts";
import { loraSupportsClass } from "../onnx/module_scope.ts";
import { unscopedNote } from "../onnx/weight_index.ts";
import type { NormTarget } from "../onnx/norm_index.ts";
import type { WeightIndex, WeightTarget } from "../onnx/weight_target.ts";
import type { AdapterLayout, ModuleTensors } from "./adapter_weights.ts";

/** Shapes of the adapter's tensors, by key. */
export type ShapeOf = (key: string) => readonly number[];

/**
 * Whether the adapter tensor `key` (a full weight, PyTorch layout) holds the
 * export's own values of `target`: then loading it changes nothing.
 */
export type SameAsBase = (key: string, target: WeightTarget) => boolean;

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
  /**
   * The adapter lacks `magnitude`: PEFT keeps its init value, the row norms of
   * `W + s·B₀A₀` with B₀ = 0, i.e. of the base weight.
   */
  magnitudeFromBase?: boolean;
}

/** A full parameter replacement (`modules_to_save`, trained biases). */
export interface ReplacePatch {
  kind: "replace";
  module: string;
  target: WeightTarget;
  /** Which parameter of the module is replaced. */
  param: "weight" | "bias";
  key: string;
  /**
   * A replaced Linear-kind weight is saved `[in, out]` (transformers' Conv1D), not `[out, in]` (`nn.Linear`). A
   * module saved whole keeps its own class's layout whatever `fan_in_fan_out` says (GPT-2's `lm_head` is a Linear).
   */
  torchInOut?: boolean;
}

/**
 * Whether a Linear-kind module's saved full weight is `[in, out]` (Conv1D). Its class decides where the export
 * records it; else the shape does when it is not square (only one reading fits); a square weight of unknown class
 * follows `fan_in_fan_out` (set for GPT-2-style Conv1D models).
 */
function savedInOut(
  target: WeightTarget,
  shape: readonly number[] | undefined,
  fanInFanOut: boolean,
  className: string | undefined,
): boolean {
  const cls = className?.slice(className.lastIndexOf(".") + 1);
  if (cls === "Conv1D") return true;
  if (cls === "Linear") return false;
  if (shape?.length === 2 && target.inFeatures !== target.outFeatures) {
    if (shape[0] === target.inFeatures && shape[1] === target.outFeatures) return true;
    if (shape[0] === target.outFeatures && shape[1] === target.inFeatures) return false;
  }
  return fanInFanOut;
}

/**
 * PEFT's TrainableTokens: rows `indices` of an embedding (and of the tied
 * `lm_head` when the model ties them) are replaced by the rows of `key`
 * (`[indices.length, dim]`).
 */
export interface TokensPatch {
  kind: "tokens";
  module: string;
  target: WeightTarget;
  key: string;
  indices: readonly number[];
  /** Whether the target's tokens are its output features (a tied `lm_head`) rather than its inputs (an embedding). */
  tokensAreOutputs: boolean;
}

/**
 * A per-channel scale of a module's input or output (IA³'s `ia3_l`), as
 * dynamic mode runs it: `key` holds the `[features]` vector.
 */
export interface ScalePatch {
  kind: "scale";
  module: string;
  target: WeightTarget;
  key: string;
  /** Scales the module's input (IA³'s `feedforward_modules`), else its output (bias included). */
  input: boolean;
}

/** Everything to apply for one adapter. */
export interface AdapterPlan {
  patches: Array<LoraPatch | ReplacePatch>;
  /** Trainable-token rows; kept apart from `patches`, which both modes apply, as only merged mode applies these. */
  tokens: TokensPatch[];
  /**
   * Per-channel scales (IA³ loaded in dynamic mode, whose `patches` are then
   * empty: merging computes the scaled weights when asked, `tuners/scales_merged.ts`).
   */
  scales?: ScalePatch[];
  /** Adapter keys that match no module of the base (PEFT's "unexpected keys"). */
  unmatchedKeys: string[];
  /** Base modules the config targets that the adapter has no weights for (PEFT's "missing keys"). */
  missingModules: string[];
  /** Tensors of adapted modules that the adapter lacks and that PEFT leaves at their init (its "missing adapter keys"). */
  missingKeys: string[];
}

const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => v === b[i]);
const fmt = (shape: readonly number[]) => `[${shape.join(", ")}]`;

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

/**
 * PEFT's init (reset_lora_parameters) starts linear B and embedding A at zero
 * for `init_lora_weights` true or "gaussian"; a tensor missing from the
 * checkpoint keeps that init. Other inits are random (or data-driven).
 */
const zeroInit = (config: LoraConfig) => config.initLoraWeights === true || config.initLoraWeights === "gaussian";

/** The file key of another tensor of the module that `key` (one of its `.lora_*` tensors) belongs to. */
const keyBeside = (key: string, suffix: string) => key.slice(0, key.lastIndexOf(".lora_")) + suffix;

function planLora(
  t: ModuleTensors,
  target: WeightTarget,
  config: LoraConfig,
  shapeOf: ShapeOf,
  missingKeys: string[],
  patternKey: string = t.module,
): LoraPatch | undefined {
  const module = t.module;
  const embedding = t.embeddingA !== undefined || t.embeddingB !== undefined;
  const a = embedding ? t.embeddingA : t.loraA;
  const b = embedding ? t.embeddingB : t.loraB;
  if (embedding !== (target.kind === "embedding")) {
    throw new AdapterMismatchError(
      `adapter has ${embedding ? "embedding" : "linear"} LoRA weights but the base module (${target.nodeName}) is ${
        target.kind === "embedding" ? "an embedding" : "a linear layer"
      }`,
      { key: module },
    );
  }
  // A 3-D expert stack's factors hold every expert's: [r·E, in] and [out, r·E].
  const rank = rankFor(config, patternKey) * (target.experts ?? 1);
  if (a === undefined || b === undefined) {
    // The factor PEFT starts at zero: its product stays zero, and so does the delta (DoRA's too, when
    // the magnitude is also at its init, the base norms).
    const zeroFactor = embedding ? a === undefined : b === undefined;
    const doraAtInit = !config.useDora || (t.magnitude === undefined && !embedding);
    if (zeroFactor && zeroInit(config) && doraAtInit && t.loraBias === undefined) {
      if (a !== undefined) expectShape(module, a, shapeOf(a), [rank, target.inFeatures], target);
      if (b !== undefined) expectShape(module, b, shapeOf(b), [target.outFeatures, rank], target);
      missingKeys.push(keyBeside(a ?? b!, embedding ? ".lora_embedding_A" : ".lora_B.weight"));
      if (config.useDora) missingKeys.push(keyBeside(a!, ".lora_magnitude_vector"));
      return undefined;
    }
    throw new AdapterMismatchError(
      `has ${a ? "A" : "B"} but no ${a ? "B" : "A"} matrix` +
        (zeroFactor && !zeroInit(config)
          ? ` (PEFT would keep its random init_lora_weights=${JSON.stringify(config.initLoraWeights)} value)`
          : ""),
      { key: module },
    );
  }
  const aShape = shapeOf(a);
  expectShape(module, a, aShape, [rank, target.inFeatures], target);
  expectShape(module, b, shapeOf(b), [target.outFeatures, rank], target);
  if (t.loraBias !== undefined) {
    expectShape(module, t.loraBias, shapeOf(t.loraBias), [target.outFeatures], target);
    // A base layer without a bias still gets `scale · lora_B.bias` added (PEFT's unmerged forward); merged
    // mode adds a bias to the graph, dynamic mode refuses lora_bias.
  }
  if (t.magnitude !== undefined) {
    if (embedding) throw new UnsupportedError("DoRA on embeddings is not supported", { key: module });
    expectShape(module, t.magnitude, shapeOf(t.magnitude), [target.outFeatures], target);
  } else if (config.useDora && !embedding) {
    if (!zeroInit(config)) {
      throw new AdapterMismatchError(
        "config has use_dora but the adapter has no lora_magnitude_vector, and PEFT's init value for it " +
          `(from a random init_lora_weights=${JSON.stringify(config.initLoraWeights)} B) cannot be reproduced`,
        { key: module },
      );
    }
    missingKeys.push(keyBeside(a, ".lora_magnitude_vector"));
  }
  return {
    kind: "lora",
    module,
    target,
    rank,
    scale: scalingFor(config, patternKey),
    a,
    b,
    bias: t.loraBias,
    ...(t.magnitude !== undefined ? { magnitude: t.magnitude } : {}),
    ...(config.useDora && !embedding && t.magnitude === undefined
      ? { magnitude: keyBeside(a, ".lora_magnitude_vector"), magnitudeFromBase: true }
      : {}),
  };
}

/**
 * Why a bias cannot be given to a module whose export has none, or undefined
 * when it can: a linear layer exported without one (exporters drop a bias
 * that is all zeros: dynamo's `Gemm` without C) computes `x W` and gets an
 * added bias; so does a `LayerNormalization` without its B input.
 */
function noBiasSite(target: WeightTarget): string | undefined {
  if (target.inSubgraph) return "its node sits inside an If subgraph";
  if (target.outputFusedInto) {
    return `its output goes to the fused op ${target.outputFusedInto}, which may hold the bias`;
  }
  if (target.kind === "embedding") return "it is an embedding";
  if (target.kind === "norm" && (target as NormTarget).scaleNode !== undefined) {
    return "it is a decomposed norm with no bias Add to replace";
  }
  return undefined;
}

/**
 * The replacements of a module's own weight and/or bias by saved full
 * tensors (`modules_to_save`, trained biases, LN tuning's norms), checked
 * against the target (shape, a bias site where the export has none).
 *
 * @throws {AdapterMismatchError} for a wrong shape, or a bias the export cannot take.
 * @throws {UnsupportedError} for the weight of a decomposed norm whose scale is not the weight itself.
 * @example
 * ```ts
 * import { planReplace } from "./plan.ts";
 * import type { WeightTarget } from "../onnx/weight_target.ts";
 * import { parseLoraConfig } from "../config/mod.ts";
 * declare const norm: WeightTarget;
 * planReplace({ module: "model.norm", fullWeight: "w" }, norm, () => [norm.outFeatures], parseLoraConfig({ peft_type: "LORA" }));
 * ```
 */
export function planReplace(
  t: ModuleTensors,
  target: WeightTarget,
  shapeOf: ShapeOf,
  config: LoraConfig,
  className?: string,
): ReplacePatch[] {
  const patches: ReplacePatch[] = [];
  if (t.fullWeight !== undefined) {
    if (target.kind === "norm" && !(target as NormTarget).scaleIsWeight) {
      throw new UnsupportedError(
        `replacing the weight of ${target.nodeName}, a decomposed norm whose scale is not read as ${t.module}.weight (it may be a folded expression such as 1 + weight), is not supported`,
        { key: t.module },
      );
    }
    // PyTorch stores Linear as [out, in], Conv1D and Embedding as [in, out]; a norm's weight is [n].
    const torchInOut = target.kind === "linear" &&
      savedInOut(target, shapeOf(t.fullWeight), config.fanInFanOut, className);
    const torchShape = target.kind === "norm"
      ? [target.outFeatures]
      : target.kind === "embedding" || torchInOut
      ? [target.inFeatures, target.outFeatures]
      : [target.outFeatures, target.inFeatures];
    expectShape(t.module, t.fullWeight, shapeOf(t.fullWeight), torchShape, target);
    patches.push({ kind: "replace", module: t.module, target, param: "weight", key: t.fullWeight, torchInOut });
  }
  if (t.fullBias !== undefined) {
    const why = target.bias === undefined ? noBiasSite(target) : undefined;
    if (why !== undefined) {
      throw new AdapterMismatchError(
        `adapter has a bias but the base module (${target.nodeName}) has none in the export, and none can be added (${why})`,
        { key: t.module },
      );
    }
    expectShape(t.module, t.fullBias, shapeOf(t.fullBias), [target.outFeatures], target);
    patches.push({ kind: "replace", module: t.module, target, param: "bias", key: t.fullBias });
  }
  return patches;
}

/** What planning may know of the base beyond its graph. */
export interface PlanOptions {
  /** Recognises a saved full weight equal to the export's (then not applied: a no-op). */
  sameAsBase?: SameAsBase;
  /** The HF config's `tie_word_embeddings` (PEFT then also replaces trainable-token rows of `lm_head`). */
  tiedEmbeddings?: boolean;
  /**
   * Modules holding a parameter the adapter wraps (`target_parameters`, see `param_targets.ts`), their LoRA
   * rewritten as the module's: injected whatever `target_modules` says, with rank and alpha patterns matched
   * against the parameter's key (the value).
   */
  wrapped?: ReadonlyMap<string, string>;
  /** Targets the export's weight index lacks (wrapped 3-D expert stacks), by the name the layout gives them. */
  targets?: ReadonlyMap<string, WeightTarget>;
}

/**
 * A module the config selects, that the adapter has weights for (so it
 * exists in the Hugging Face model), has no weight in the ONNX export.
 * Applying the rest would run the model with part of its adapter missing,
 * so nothing is applied.
 *
 * @example
 * ```ts
 * import { ModuleNotInExportError } from "./plan.ts";
 * const e = new ModuleNotInExportError("model.layers.0.self_attn.q_proj", "onnx/model_q4.onnx", "no weight found");
 * e.module; // "model.layers.0.self_attn.q_proj"
 * ```
 */
export class ModuleNotInExportError extends AdapterMismatchError {
  /** `module`: the PEFT module name; `export_`: the ONNX file; `detail`: why no weight was found. */
  constructor(readonly module: string, readonly export_: string, detail: string) {
    super(
      `the adapter changes ${module}, but the ONNX export ${export_} has no weight for it (${detail}); ` +
        "nothing of the adapter was applied",
      { file: export_, key: module },
    );
  }
}

/** PEFT's `_set_trainable` match of a `modules_to_save` entry: the name itself or a `.`-suffix. */
function savedModule(config: LoraConfig, module: string): boolean {
  return (config.modulesToSave ?? []).some((m) => module === m || module.endsWith(`.${m}`));
}

function formatTargets(config: LoraConfig): string {
  const t = config.targetModules;
  return typeof t === "string" ? JSON.stringify(t) : `{${(t ?? []).map((x) => `'${x}'`).join(", ")}}`;
}

/**
 * PEFT raises in `inject_adapter` when the config selects no module of the
 * model, and in `_create_new_module` when it selects one LoRA cannot wrap.
 * The modules known here are those the export shows (with or without a
 * weight) and those the adapter has weights for.
 */
function checkSelection(
  config: LoraConfig,
  weights: WeightIndex,
  layout: AdapterLayout,
  exportFile: string,
  wrapsParameters: boolean,
) {
  if (config.targetModules === null) return;
  const known = [...new Set([...layout.modules.keys(), ...weights.scopes.map((s) => s.module), ...weights.modules])];
  const selects = createTargetMatcher(config);
  const selected = known.filter(selects);
  // inject_adapter: matched parameters count as targets (target_modules [] is how PEFT says "parameters only").
  if (selected.length === 0 && wrapsParameters) return;
  if (selected.length === 0) {
    const unexcluded = config.excludeModules
      ? known.filter(createTargetMatcher({ ...config, excludeModules: null }))
      : [];
    if (unexcluded.length > 0) {
      throw new AdapterConfigError(
        "All modules were excluded. This is likely unintended. Check your `target_modules` and `exclude_modules` " +
          `configuration (excluded: ${sample(unexcluded)})`,
        { key: "exclude_modules" },
      );
    }
    throw new AdapterConfigError(
      `Target modules ${formatTargets(config)} not found in the base model (${exportFile}). ` +
        "Please check the target modules and try again.",
      { key: "target_modules" },
    );
  }
  for (const module of selected) {
    if (layout.modules.has(module) || weights.get(module) !== undefined) continue;
    const scope = weights.scopes.find((s) => s.module === module);
    // A module the export shows, without a weight LoRA could wrap: a norm, an activation, a whole block.
    if (scope && loraSupportsClass(scope.className) !== true && weights.resolve(module) === undefined) {
      throw new UnsupportedError(
        `Target module ${module}${scope.className ? ` (${scope.className})` : ""} is not supported. Currently, only ` +
          "`torch.nn.Linear`, `torch.nn.Embedding`, `torch.nn.Conv1d`, `torch.nn.Conv2d`, `torch.nn.Conv3d`, " +
          "`transformers.pytorch_utils.Conv1D` and `torch.nn.MultiheadAttention` are supported (as PEFT says)",
        { key: "target_modules" },
      );
    }
  }
}

/**
 * Decides, as PEFT does, which modules of the base the adapter changes, and
 * validates every shape, rank and rule: the config selects the modules
 * (`target_modules`, `exclude_modules`, `layers_to_transform`,
 * `layers_pattern`, `modules_to_save`); adapter keys of modules it does not
 * select are PEFT's "unexpected keys" (returned in `unmatchedKeys`, not
 * applied), selected modules without keys its "missing keys". A selected
 * module with adapter weights but no weight in the export is an error
 * ({@linkcode ModuleNotInExportError}): an adapter is applied whole or not
 * at all. Throws on the first error; changes nothing.
 *
 * A saved `base_layer.weight` is applied (a replacement under the module's
 * LoRA) unless `sameAsBase` says it holds the export's own values.
 *
 * Module names are resolved against the export with `WeightIndex.resolve`
 * (exact, else the one export module equal up to a leading prefix).
 *
 * @example
 * ```ts
 * import { planAdapter } from "./plan.ts";
 * import type { AdapterLayout } from "./adapter_weights.ts";
 * import type { LoraConfig } from "../config/mod.ts";
 * import type { WeightIndex } from "../onnx/weight_target.ts";
 * declare const config: LoraConfig, layout: AdapterLayout, weights: WeightIndex;
 * declare const shapeOf: (key: string) => readonly number[];
 * const plan = planAdapter(config, layout, shapeOf, weights);
 * console.log(plan.unmatchedKeys);
 * ```
 */
export function planAdapter(
  config: LoraConfig,
  layout: AdapterLayout,
  shapeOf: ShapeOf,
  weights: WeightIndex,
  options: PlanOptions = {},
): AdapterPlan {
  const { sameAsBase } = options;
  const wrapped = options.wrapped ?? new Map<string, string>();
  const exportFile = weights.file ?? "the ONNX model";
  // target_modules null: PEFT would pick targets from its per-architecture table; the keys must then decide.
  const matcher = config.targetModules === null ? () => true : createTargetMatcher(config);
  const selects = (module: string) => wrapped.has(module) || matcher(module);
  checkSelection(config, weights, layout, exportFile, wrapped.size > 0);
  const patches: Array<LoraPatch | ReplacePatch> = [];
  const unmatchedKeys = [...layout.unknownKeys];
  const adapted = new Set<string>();
  const missingKeys: string[] = [];
  const find = (module: string, why: string) => {
    const target = options.targets?.get(module) ?? weights.resolve(module);
    if (!target) {
      const scope = weights.resolveScope(module);
      const where = scope ? `the export shows ${scope.module} but no weight LoRA can adapt there` : "not found";
      const note = unscopedNote(weights);
      throw new ModuleNotInExportError(
        module,
        exportFile,
        `${where}; ${why}. Export modules: ${sample(weights.modules) || "(none)"}${note ? `. ${note}` : ""}`,
      );
    }
    return target;
  };
  const tokens: TokensPatch[] = [];
  for (const t of layout.modules.values()) {
    if (t.tokenDelta !== undefined) {
      tokens.push(...planTokens(config, t.module, t.tokenDelta, shapeOf, weights, options, find));
      if (Object.keys(t).length === 2) continue;
    }
    const loraKeys = [t.loraA, t.loraB, t.loraBias, t.magnitude, t.embeddingA, t.embeddingB]
      .filter((k): k is string => k !== undefined);
    const saved = savedModule(config, t.module);
    // PEFT injects LoRA where the config selects (never into modules_to_save); its state dict is then
    // loaded with strict=False: LoRA keys go to injected modules, every other key to the parameter
    // of that name, if the model has one (else it is an "unexpected key").
    const injected = !saved && selects(t.module) &&
      (loraKeys.length > 0 || (config.targetModules !== null && weights.resolve(t.module) !== undefined));
    // An injected module keeps its own parameters under `base_layer`; a plain one under its name.
    const weightKey = injected ? t.baseWeight : t.fullWeight;
    const biasKey = injected ? t.baseBias : t.fullBias;
    unmatchedKeys.push(
      ...(injected ? [t.fullWeight, t.fullBias] : [t.baseWeight, t.baseBias, ...loraKeys])
        .filter((k): k is string => k !== undefined),
    );
    if (injected && loraKeys.length > 0) {
      const target = find(t.module, "the config targets it");
      if (![t.loraA, t.loraB, t.embeddingA, t.embeddingB].some((k) => k !== undefined)) {
        throw new AdapterMismatchError("has DoRA magnitude or lora_B.bias but no lora_A/lora_B", { key: t.module });
      }
      // The layer's own weight, which PEFT saves with an embedding LoRA (`save_embedding_layers`): its
      // strict=False load puts it into `base_layer.weight`, and the LoRA applies on top. Usually it is
      // the base's own weight, and loading it changes nothing.
      if (weightKey !== undefined) {
        const replace = planReplace({ module: t.module, fullWeight: weightKey }, target, shapeOf, config);
        if (!sameAsBase?.(weightKey, target)) patches.push(...replace);
      }
      // The trained bias first: a `lora_B.bias` then adds to the replaced value, as in PEFT's forward.
      if (biasKey !== undefined) {
        patches.push(...planReplace({ module: t.module, fullBias: biasKey }, target, shapeOf, config));
      }
      const lora = planLora(t, target, config, shapeOf, missingKeys, wrapped.get(t.module));
      if (lora) patches.push(lora);
      adapted.add(target.module);
      continue;
    }
    if (injected || (weightKey === undefined && biasKey === undefined)) {
      if (injected) unmatchedKeys.push(...[weightKey, biasKey].filter((k): k is string => k !== undefined));
      continue;
    }
    // A full parameter of a module the model has: PEFT loads it (modules_to_save, `bias: "all"`).
    // A norm's parameters (`bias: "all"` trains LayerNorm biases) are found apart from the LoRA targets.
    const target = weights.resolve(t.module) ?? weights.resolveNorm?.(t.module) ??
      (saved ? find(t.module, "it is in modules_to_save") : undefined);
    if (!target) {
      // The export shows the module but has no patchable weight for it (a norm's bias): it cannot be
      // applied, and applying the rest would be partial.
      if (weights.resolveScope(t.module)) find(t.module, "the adapter has its full parameters");
      unmatchedKeys.push(...[weightKey, biasKey].filter((k): k is string => k !== undefined));
      continue;
    }
    patches.push(
      ...planReplace(
        { module: t.module, fullWeight: weightKey, fullBias: biasKey },
        target,
        shapeOf,
        config,
        weights.scopes.find((s) => s.module === t.module)?.className,
      ),
    );
  }
  checkTokenModules(config, tokens, patches, (m) => config.targetModules !== null && selects(m));
  return { patches, tokens, unmatchedKeys, missingModules: missing(config, weights, adapted), missingKeys };
}

/**
 * PEFT's `set_additional_trainable_modules` wraps the token modules after
 * LoRA is injected and after `modules_to_save` is wrapped: a module that is
 * also in `modules_to_save` raises ValueError, one that LoRA targets (its
 * wrapper's `check_module` sees a LoRA layer) raises TypeError.
 */
function checkTokenModules(
  config: LoraConfig,
  tokens: readonly TokensPatch[],
  patches: ReadonlyArray<LoraPatch | ReplacePatch>,
  selects: (module: string) => boolean,
): void {
  const spec = config.trainableTokenIndices;
  if (spec === null) return;
  // PEFT compares the names as written (a list means the input embedding's full name) with modules_to_save.
  const names = Array.isArray(spec)
    ? tokens.filter((p) => !p.tokensAreOutputs).map((p) => p.module)
    : Object.keys(spec);
  const saved = names.find((n) => config.modulesToSave?.includes(n));
  if (saved !== undefined) {
    throw new AdapterConfigError(
      `${saved} is in modules_to_save and in trainable_token_indices; PEFT raises ValueError (the embedding ` +
        "layer is already marked to be trained fully: specify modules_to_save or trainable_token_indices, not both)",
      { key: "trainable_token_indices" },
    );
  }
  const named = (m: string) => !Array.isArray(spec) && names.some((n) => m === n || m.endsWith(`.${n}`));
  const lora = patches.filter((x): x is LoraPatch => x.kind === "lora");
  const clash =
    tokens.find((p) =>
      lora.some((x) => x.target.module === p.target.module) || (!savedModule(config, p.module) && selects(p.module))
    )?.module ?? lora.find((x) => x.target.kind === "embedding" && named(x.module))?.module;
  if (clash !== undefined) {
    throw new AdapterConfigError(
      `trainable_token_indices names ${clash}, which target_modules also adapts with LoRA; PEFT wraps it for ` +
        "the tokens after injecting the LoRA and raises TypeError: trainable_token_indices cannot be applied to " +
        "modules of type lora.Embedding (one module takes either)",
      { key: "trainable_token_indices" },
    );
  }
}

/**
 * PEFT's `_set_trainable` with `TrainableTokensWrapper`: a list of indices
 * applies to the input embedding, an object to the modules it names (a
 * `.`-suffix match); with tied embeddings the rows of `lm_head` follow.
 */
function planTokens(
  config: LoraConfig,
  module: string,
  key: string,
  shapeOf: ShapeOf,
  weights: WeightIndex,
  options: PlanOptions,
  find: (module: string, why: string) => WeightTarget,
): TokensPatch[] {
  const spec = config.trainableTokenIndices;
  const indices = spec === null
    ? undefined
    : Array.isArray(spec)
    ? spec
    : Object.entries(spec).find(([name]) => module === name || module.endsWith(`.${name}`))?.[1];
  if (indices === undefined) {
    throw new AdapterConfigError(
      `${key} holds trainable token rows, but trainable_token_indices does not name ${module}`,
      { key: "trainable_token_indices" },
    );
  }
  const target = find(module, "trainable_token_indices names it");
  if (target.kind !== "embedding") {
    throw new UnsupportedError(`trainable tokens on ${module}, which is not an embedding, are not supported`, {
      key: module,
    });
  }
  expectShape(module, key, shapeOf(key), [indices.length, target.outFeatures], target);
  const bad = indices.find((i: number) => !(i >= 0 && i < target.inFeatures));
  if (bad !== undefined) {
    throw new AdapterMismatchError(`token index ${bad} is outside the embedding (${target.inFeatures} rows)`, {
      key: "trainable_token_indices",
    });
  }
  const patches: TokensPatch[] = [{ kind: "tokens", module, target, key, indices, tokensAreOutputs: false }];
  if (options.tiedEmbeddings) {
    // _get_module_names_tied_with_embedding: the output embedding, exported as its own (transposed) copy.
    const head = weights.resolve("lm_head");
    if (head && head.kind === "linear" && head.outFeatures === target.inFeatures) {
      patches.push({ kind: "tokens", module: head.module, target: head, key, indices, tokensAreOutputs: true });
    }
  }
  return patches;
}

/**
 * Base modules the config targets that got no weights. Without explicit
 * `target_modules` (PEFT then picks them per architecture) this cannot be
 * known, and nothing is reported.
 */
function missing(config: LoraConfig, weights: WeightIndex, adapted: ReadonlySet<string>): string[] {
  if (config.targetModules === null) return [];
  const targeted = createTargetMatcher(config);
  return weights.modules.filter((m) => !adapted.has(m) && targeted(m));
}
