/**
 * LoRA on `nn.Parameter`s (`target_parameters`, PEFT's `ParamWrapper`): PEFT
 * wraps the module holding each matched parameter and adds `s · B @ A`
 * (`lora_B` `[shape[0], r]`, `lora_A` `[r, shape[1]]`) to the parameter
 * itself, in the parameter's own layout. On a 2-D weight the export computes
 * with (a Linear's `[out, in]`, a Conv1D's or an Embedding's `[in, out]`) that
 * is a module LoRA of that module, with the factors as PEFT saves them
 * (Linear) or swapped and transposed (`A' = B^T`, `B' = A^T`: Conv1D, and an
 * Embedding's `lora_embedding_A`/`_B`). This module finds the wrapped
 * parameters among the adapter's keys, applies PEFT's refusals, and rewrites
 * the adapter as those module LoRAs, so planning, both modes and merging are
 * LoRA's. A 3-D expert stack (`[experts, out, in]`, PEFT's per-expert delta
 * `s · B_e @ A_e` with `A` `[r·E, in]` read as `(E, r, in)` and `B` `[out, r·E]`
 * as `(out, r, E)`) that the export keeps as an initializer of its name is a
 * target of its own (`WeightTarget.experts`), merged whole. Parameters the
 * export has no such weight for are refused, naming the parameter.
 * @module
 */
import { createTargetMatcher, type LoraConfig, rankFor } from "../config/mod.ts";
import { AdapterConfigError, AdapterMismatchError, UnsupportedError } from "../errors.ts";
import { parseSafetensors, type Safetensors, serializeSafetensors, type TensorInput } from "../safetensors/mod.ts";
import type { GraphProto } from "../deps/onnx_proto.ts";
import { expertStacks, stackLayout, stackTarget } from "./expert_stacks.ts";
import type { WeightIndex, WeightTarget } from "../onnx/weight_target.ts";
import { type AdapterLayout, groupAdapterKeys, type ModuleTensors } from "./adapter_weights.ts";

/**
 * An adapter with its wrapped parameters rewritten as module LoRAs.
 *
 * @example
 * ```ts
 * import type { ParamTargets } from "./param_targets.ts";
 * const patternKeyOf = (p: ParamTargets, module: string) => p.wrapped.get(module) ?? module;
 * ```
 */
export interface ParamTargets {
  /** The adapter's keys by module, each wrapped parameter's factors as a LoRA of the module holding it. */
  layout: AdapterLayout;
  /** The file's tensors, plus the transposed factors of parameters stored `[in, out]` (under `<key>.T`). */
  weights: Safetensors;
  /**
   * Each module holding a wrapped parameter -> the key PEFT matches `rank_pattern`/`alpha_pattern` against
   * for it (`<module>.<parameter>`, e.g. `model.layers.0.self_attn.q_proj.weight`). A 3-D expert stack is its own
   * entry, under its parameter key.
   */
  wrapped: ReadonlyMap<string, string>;
  /** The targets of wrapped 3-D expert stacks (`WeightTarget.experts`), by parameter key: merged mode only. */
  targets: ReadonlyMap<string, WeightTarget>;
}

const NEST = ".base_layer";

/** PEFT's match of a parameter key (`<module>.<param>`) against a `target_parameters` entry. */
const matches = (key: string, entry: string) => key === entry || key.endsWith(`.${entry}`);

/** The parameter names of `module` that the entries target. */
function targetedParams(module: string, entries: readonly string[]): string[] {
  const names = entries.map((e) => e.slice(e.lastIndexOf(".") + 1));
  return [...new Set(names.filter((p) => entries.some((e) => matches(`${module}.${p}`, e))))];
}

/** ParamWrapper.__init__ / update_layer: the settings PEFT refuses for a wrapped parameter (ValueError). */
function checkWrapperConfig(config: LoraConfig): void {
  const refuse = (key: string, what: string): never => {
    throw new AdapterConfigError(`lora.ParamWrapper does not work with ${what} (as PEFT says)`, { key });
  };
  if (config.loraDropout) refuse("lora_dropout", "lora_dropout != 0.");
  if (config.fanInFanOut) refuse("fan_in_fan_out", "fan_in_fan_out.");
  if (config.loraBias) refuse("lora_bias", "lora_bias=True.");
  if (config.useDora) refuse("use_dora", "use_dora=True.");
}

/** PEFT's `_get_in_out_features`: a wrapped parameter must be 2-D or 3-D. */
function oneDimensional(param: string): AdapterConfigError {
  return new AdapterConfigError(
    "lora.ParamWrapper was initialized with 1 dimensional Parameter, but only 2d and 3d are supported " +
      "(as PEFT says)",
    { key: param },
  );
}

/**
 * Parameters the entries name that the export shows as 1-D (a norm's weight or bias, a linear's bias), which
 * PEFT refuses when it wraps them, before any key is read.
 */
function checkOneDimensional(entries: readonly string[], index: WeightIndex): void {
  const modules = new Set([...index.modules, ...index.scopes.map((s) => s.module)]);
  for (const module of modules) {
    for (const param of targetedParams(module, entries)) {
      const linear = index.get(module);
      const norm = linear ? undefined : index.resolveNorm?.(module);
      if ((norm && (param === "weight" || param === "bias")) || (linear && param === "bias" && linear.bias)) {
        throw oneDimensional(`${module}.${param}`);
      }
    }
  }
}

function transposed(m: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = m[r * cols + c];
  return out;
}

// transformers' Conv1D (weights [in, out]) and the models that use it, for exports that record no class names.
const CONV1D_MODEL_TYPES = new Set(["gpt2", "openai-gpt", "imagegpt", "decision_transformer"]);
const CONV1D_NAMES = /(^|\.)(c_attn|c_proj|c_fc|q_attn)$/;

/**
 * Whether the module's class stores its weight `[in, out]` (transformers' Conv1D): as the export names the class
 * (dynamo), else as the base's `model_type` and the module's name say; undefined when neither is known.
 */
function conv1DClass(index: WeightIndex, module: string, modelType: string | undefined): boolean | undefined {
  const cls = index.resolveScope(module)?.className;
  if (cls) return cls === "Conv1D" || cls.endsWith(".Conv1D");
  if (modelType === undefined) return undefined;
  return CONV1D_MODEL_TYPES.has(modelType) && CONV1D_NAMES.test(module);
}

/** How one wrapped 2-D weight maps onto its module's LoRA: factors as saved, or swapped and transposed. */
function weightLayout(
  key: string,
  module: string,
  target: WeightTarget,
  shape: readonly number[],
  index: WeightIndex,
  modelType: string | undefined,
): "out_in" | "in_out" {
  const [rows, cols] = shape;
  if (target.kind === "embedding") {
    if (rows === target.inFeatures && cols === target.outFeatures) return "in_out";
  } else {
    const asLinear = rows === target.outFeatures && cols === target.inFeatures;
    const asConv1D = rows === target.inFeatures && cols === target.outFeatures;
    if (asLinear && asConv1D) {
      const conv1D = conv1DClass(index, module, modelType);
      if (conv1D === undefined) {
        throw new UnsupportedError(
          `cannot tell whether the parameter ${key} is stored [out, in] (nn.Linear) or [in, out] (Conv1D): it is ` +
            "square, and neither the export nor a model_type names its module's class",
          { key },
        );
      }
      return conv1D ? "in_out" : "out_in";
    }
    if (asLinear) return "out_in";
    if (asConv1D) return "in_out";
  }
  throw new AdapterMismatchError(
    `the LoRA of parameter ${key} is for a [${shape.join(", ")}] parameter, but the export's weight ` +
      `(${target.initializer}) is ${target.inFeatures} in x ${target.outFeatures} out`,
    { key },
  );
}

/**
 * Finds the adapter's wrapped parameters (`target_parameters`) and rewrites
 * them as LoRAs of the modules holding them (see the module doc). Without
 * `target_parameters` the layout is the file's and nothing is wrapped.
 *
 * `modelType` (the base's `config.json` `model_type`) tells a square Conv1D weight from a Linear's where the
 * export records no class names (TorchScript).
 *
 * @throws {AdapterConfigError} for PEFT's refusals: `lora_dropout`, `fan_in_fan_out`, `lora_bias` or `use_dora`
 *   with a wrapped parameter, a 1-D parameter, a module both in `target_modules` and holding a wrapped parameter.
 * @throws {UnsupportedError} for a parameter the export has no MatMul/Gemm/Gather weight or 3-D initializer for,
 *   or nested wrappers whose parameters the stacks' shapes do not tell apart.
 * @example
 * ```ts
 * import { wrapParamTargets } from "./param_targets.ts";
 * import { parseLoraConfig } from "../config/mod.ts";
 * import type { Safetensors } from "../safetensors/mod.ts";
 * import type { WeightIndex } from "../onnx/weight_target.ts";
 * declare const weights: Safetensors, index: WeightIndex;
 * const config = parseLoraConfig({ target_modules: [], target_parameters: ["q_proj.weight"] });
 * const { layout, wrapped } = wrapParamTargets(config, weights, index);
 * console.log([...wrapped.values()], layout.modules.size);
 * ```
 */
export function wrapParamTargets(
  config: LoraConfig,
  weights: Safetensors,
  index: WeightIndex,
  modelType?: string,
  graph?: GraphProto,
): ParamTargets {
  const layout = groupAdapterKeys(weights.names());
  const entries = config.targetParameters ?? [];
  if (entries.length === 0) return { layout, weights, wrapped: new Map(), targets: new Map() };
  checkOneDimensional(entries, index);
  const selects = config.targetModules === null ? () => false : createTargetMatcher(config);
  const modules = new Map<string, ModuleTensors>();
  const wrapped = new Map<string, string>();
  const added = new Map<string, TensorInput>();
  const targets = new Map<string, WeightTarget>();
  const stacks = expertStacks(graph, index);
  const taken = new Set<string>();
  for (const t of layout.modules.values()) {
    const module = t.module.split(NEST).join("");
    const params = t.loraA !== undefined || t.loraB !== undefined ? targetedParams(module, entries) : [];
    if (params.length === 0) {
      modules.set(t.module, t);
      continue;
    }
    checkWrapperConfig(config);
    if (selects(module)) {
      // _inject_parameters: the module is a LoRA layer already when target_modules matched it.
      throw new AdapterConfigError(
        `Trying to wrap an \`nn.Parameter\` of layer '${module}', which is not a valid target: it is also ` +
          "targeted with `target_modules` (as PEFT says)",
        { key: "target_parameters" },
      );
    }
    if (t.loraA === undefined || t.loraB === undefined) {
      throw new AdapterMismatchError(`has ${t.loraA ? "A" : "B"} but no ${t.loraA ? "B" : "A"} matrix`, {
        key: t.module,
      });
    }
    const aShape = weights.info(t.loraA).shape, bShape = weights.info(t.loraB).shape;
    const [rank, cols] = aShape;
    const [rows, rankB] = bShape;
    // Nested wrappers (several parameters of one module): which LoRA is which parameter's, by the stacks' shapes.
    const fitting = params.filter((p) => {
      const stack = stacks.find(`${module}.${p}`);
      return stack !== undefined && stackLayout(stack.dims, aShape, bShape, rankFor(config, `${module}.${p}`));
    });
    const param = params.length === 1 && module === t.module ? params[0] : fitting.length === 1 ? fitting[0] : "";
    if (param === "" || taken.has(`${module}.${param}`)) {
      throw new UnsupportedError(
        `cannot tell which of the parameters ${params.map((p) => `${module}.${p}`).join(", ")} the LoRA ` +
          `${t.loraA} is for (nested ParamWrappers whose parameters the export does not tell apart by shape)`,
        { key: module },
      );
    }
    const key = `${module}.${param}`;
    taken.add(key);
    const r = rankFor(config, key);
    if (rank !== rankB || rank % r !== 0) {
      throw new AdapterMismatchError(
        `lora_A [${aShape.join(", ")}] and lora_B [${bShape.join(", ")}] do not fit rank ${r}`,
        { key },
      );
    }
    const stack = stacks.find(key);
    if (stack) {
      const target = stackTarget(key, stack, aShape, bShape, r, graph!);
      modules.set(key, { module: key, loraA: t.loraA, loraB: t.loraB });
      targets.set(key, target);
      wrapped.set(key, key);
      continue;
    }
    const target = param === "weight" ? index.resolve(module) : undefined;
    if (rank !== r || !target || target.kind === "norm") {
      const what = rank !== r
        ? `a 3-D parameter (${rank / r} experts, rank ${r}) the export has no initializer of that name for`
        : "the export has no MatMul, Gemm or Gather weight for it";
      throw new UnsupportedError(`LoRA on the parameter ${key} (target_parameters) is not supported: ${what}`, {
        key,
      });
    }
    const layoutOf = weightLayout(key, module, target, [rows, cols], index, modelType);
    let a = t.loraA, b = t.loraB;
    if (layoutOf === "in_out") {
      // PEFT's B @ A is [in, out]; the module LoRA's B' @ A' is its transpose: A' = B^T [r, in], B' = A^T [out, r].
      a = `${t.loraB}.T`;
      b = `${t.loraA}.T`;
      added.set(a, { dtype: "F32", shape: [rank, rows], data: transposed(weights.toFloat32(t.loraB), rows, rank) });
      added.set(b, { dtype: "F32", shape: [cols, rank], data: transposed(weights.toFloat32(t.loraA), rank, cols) });
    }
    const { loraA: _a, loraB: _b, ...rest } = t;
    modules.set(
      module,
      target.kind === "embedding" ? { ...rest, embeddingA: a, embeddingB: b } : { ...rest, loraA: a, loraB: b },
    );
    wrapped.set(module, key);
  }
  if (wrapped.size === 0) return { layout, weights, wrapped, targets };
  const derived = added.size === 0 ? weights : withTensors(weights, added);
  return { layout: { modules, unknownKeys: layout.unknownKeys }, weights: derived, wrapped, targets };
}

/** The file's tensors as they are, plus `extra`. */
function withTensors(weights: Safetensors, extra: ReadonlyMap<string, TensorInput>): Safetensors {
  const all = new Map<string, TensorInput>();
  for (const name of weights.names()) {
    const { dtype, shape, bytes } = weights.get(name);
    all.set(name, { dtype, shape, data: bytes });
  }
  for (const [name, t] of extra) all.set(name, t);
  return parseSafetensors(serializeSafetensors(all), weights.file);
}

/**
 * PEFT's `_check_new_adapter_config`: adapters that use `target_parameters`
 * must all target the same set of parameters (their nesting encodes which
 * parameter a LoRA belongs to).
 *
 * @throws {AdapterConfigError} naming the other adapter.
 * @example
 * ```ts
 * import { checkSameTargetParameters } from "./param_targets.ts";
 * checkSameTargetParameters(["q_proj.weight"], [["other", ["q_proj.weight"]]]); // passes
 * ```
 */
export function checkSameTargetParameters(
  added: readonly string[] | null,
  others: Iterable<readonly [name: string, targetParameters: readonly string[] | null]>,
): void {
  if (!added || added.length === 0) return;
  const set = [...new Set(added)].sort();
  for (const [name, other] of others) {
    if (!other || other.length === 0) continue;
    const otherSet = [...new Set(other)].sort();
    if (otherSet.length !== set.length || otherSet.some((p, i) => p !== set[i])) {
      throw new AdapterConfigError(
        "When using multiple adapters with `target_parameters`, all adapters must target the same set of " +
          `parameters, but got ${JSON.stringify(set)} for the new adapter and ${JSON.stringify(otherSet)} for ` +
          `adapter '${name}' (as PEFT says).`,
        { key: "target_parameters" },
      );
    }
  }
}

/**
 * The `target_parameters` of a LoRA config, or `null` for any other config
 * (or a LoRA that wraps no parameter).
 *
 * @example
 * ```ts
 * import { targetParametersOf } from "./param_targets.ts";
 * console.log(targetParametersOf({ peftType: "LORA", targetParameters: ["q_proj.weight"] })); // ["q_proj.weight"]
 * console.log(targetParametersOf({ peftType: "IA3" })); // null
 * ```
 */
export function targetParametersOf(
  config: { peftType: string; targetParameters?: readonly string[] | null },
): readonly string[] | null {
  const entries = config.peftType === "LORA" ? config.targetParameters ?? null : null;
  return entries && entries.length > 0 ? entries : null;
}
