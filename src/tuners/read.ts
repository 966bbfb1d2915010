/**
 * Reading a non-LoRA adapter for a base: its config by `peft_type`, its
 * tensors grouped by module, and the merged weight of every module it
 * changes, as `ReplacePatch`es that the LoRA merged path applies (so
 * patching, shared-initializer copies and `mergeAndUnload` are one code
 * path for every method). Nothing of the base is changed.
 * @module
 */
import { createTargetMatcher } from "../config/mod.ts";
import { AdapterMismatchError, UnsupportedError } from "../errors.ts";
import type { ModelProto } from "../deps/onnx_proto.ts";
import {
  type AdapterPlan,
  type LoraPatch,
  ModuleNotInExportError,
  planReplace,
  type ReplacePatch,
  type ScalePatch,
} from "../lora/plan.ts";
import type { WeightIndex, WeightTarget } from "../onnx/weight_target.ts";
import { parseSafetensors, type Safetensors, serializeSafetensors, type TensorInput } from "../safetensors/mod.ts";
import type { TunerConfig, TunerType } from "./config.ts";
import type { ModuleUpdate, SavedTensor, TunerMethod } from "./method.ts";
import { TUNER_METHODS } from "./methods.ts";

const PREFIX = "base_model.model.";
const SHARED_PREFIX = "base_model.";
// transformers' Conv1D (weights [in, out]) in the models that use it; exports without class names need this.
const CONV1D_MODEL_TYPES = new Set(["gpt2", "openai-gpt", "imagegpt", "decision_transformer"]);
const CONV1D_NAMES = /(^|\.)(c_attn|c_proj|c_fc|q_attn)$/;

function isConv1D(base: TunedBase, module: string): boolean {
  const className = base.weights.resolveScope(module)?.className;
  // Dynamo exports record the qualified name (`transformers.pytorch_utils.Conv1D`).
  if (className) return className === "Conv1D" || className.endsWith(".Conv1D");
  return CONV1D_MODEL_TYPES.has(String(base.config.model_type)) && CONV1D_NAMES.test(module);
}

function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = m[r * cols + c];
  return out;
}

interface Grouped {
  modules: Map<string, Map<string, string>>;
  shared: Map<string, string>;
  unknown: string[];
}

/** Keys as PEFT saves them: `base_model.model.<module>.<param>`, shared ones `base_model.<name>`. */
function groupKeys(keys: readonly string[], method: TunerMethod): Grouped {
  const modules = new Map<string, Map<string, string>>();
  const shared = new Map<string, string>();
  const unknown: string[] = [];
  for (const key of keys) {
    const sharedName = (method.shared ?? []).find((s) => key === `${SHARED_PREFIX}${s}`);
    if (sharedName) {
      shared.set(sharedName, key);
      continue;
    }
    const rest = key.startsWith(PREFIX) ? key.slice(PREFIX.length) : key;
    const param = method.params.find((p) => rest.endsWith(`.${p}`));
    if (!param) {
      unknown.push(key);
      continue;
    }
    const module = rest.slice(0, -param.length - 1);
    if (!modules.has(module)) modules.set(module, new Map());
    modules.get(module)!.set(param, key);
  }
  return { modules, shared, unknown };
}

function refuseConv1D(method: TunerMethod, peftType: TunerType, module: string): never {
  throw new UnsupportedError(
    `Target module ${module} (Conv1D) is not supported by ${peftType}: ${method.conv1DRefusal} (as PEFT says)`,
    { key: module },
  );
}

function checkTarget(base: TunedBase, module: string, target: WeightTarget | undefined, exportFile: string) {
  if (!target) {
    throw new ModuleNotInExportError(module, exportFile, "no weight found for it");
  }
  if (target.kind !== "linear") {
    throw new UnsupportedError(`${target.nodeName} is an embedding; this method adapts linear modules only`, {
      key: module,
    });
  }
  if (target.quantized) {
    throw new UnsupportedError(
      `cannot apply this method to a quantized weight (${target.nodeName}) in either mode; load a float export of ${base.file}`,
      { key: module },
    );
  }
}

/**
 * What the tuners read of a base model (a `BaseModel` is one).
 *
 * @example
 * ```ts
 * import type { TunedBase } from "./read.ts";
 * const exportName = (b: TunedBase) => b.weights.file ?? b.file;
 * ```
 */
export interface TunedBase {
  readonly weights: WeightIndex;
  readonly onnx: ModelProto;
  /** The base's `config.json` (its `model_type` tells Conv1D models apart where the export has no class names). */
  readonly config: Readonly<Record<string, unknown>>;
  readonly file: string;
  readWeight(initializer: string): Float32Array;
}

/**
 * A non-LoRA adapter read and planned against one base: its config, its
 * plan (full-parameter replacements) and the tensors the plan names.
 *
 * @example
 * ```ts
 * import type { TunedAdapter } from "./read.ts";
 * const count = (a: TunedAdapter) => a.plan.patches.length;
 * ```
 */
export interface TunedAdapter {
  config: TunerConfig;
  plan: AdapterPlan;
  /** The merged parameters, by the keys the plan's patches name. */
  weights: Safetensors;
  /** Number of parameters in the saved tensors. */
  parameters: number;
  /**
   * The saved file, for methods merged module by module: merging it after another adapter of its method
   * (`compose.ts`) starts from that one's result, not from the base.
   */
  saved?: Safetensors;
}

/**
 * Patches that replace a module's own parameters (LN tuning's norms), on the
 * norm as the norm index finds it by module scope (`norm_index.ts`, either
 * exporter; a parameter shared with other norms is copied for this one when
 * patched), checked as `modules_to_save` replacements are.
 */
function replaced(
  base: TunedBase,
  module: string,
  params: ReadonlyMap<string, string>,
  replaces: Readonly<Record<string, "weight" | "bias">>,
  tensor: (key: string) => SavedTensor,
  outputs: Map<string, TensorInput>,
  config: TunerConfig,
  exportFile: string,
): ReplacePatch[] {
  const target = base.weights.resolveNorm?.(module);
  if (!target) throw new ModuleNotInExportError(module, exportFile, "no normalization layer found for it");
  const keys = { module, fullWeight: undefined as string | undefined, fullBias: undefined as string | undefined };
  for (const [param, key] of params) {
    if (replaces[param] === "weight") keys.fullWeight = key;
    else keys.fullBias = key;
  }
  const patches = planReplace(keys, target, (key) => tensor(key).shape, config.selection);
  for (const p of patches) outputs.set(p.key, { dtype: "F32", shape: tensor(p.key).shape, data: tensor(p.key).values });
  return patches;
}

/**
 * A module's parameters as a merge starts from them when not the base's (an
 * earlier adapter merged into them): the weight `[out, in]`, and the bias.
 *
 * @example
 * ```ts
 * import type { ModuleParams } from "./read.ts";
 * const identity: ModuleParams = { weight: new Float32Array([1, 0, 0, 1]) };
 * ```
 */
export interface ModuleParams {
  weight: Float32Array;
  bias?: Float32Array;
}

/**
 * One module an adapter changes, as its method reads it: the module (as
 * PEFT names it), its target in the export, its saved tensors by PEFT
 * name and the tensors the method saves once for all modules.
 *
 * @example
 * ```ts
 * import type { SavedModule } from "./read.ts";
 * const rows = (m: SavedModule) => m.target.outFeatures;
 * ```
 */
export interface SavedModule {
  module: string;
  target: WeightTarget;
  tensor: (param: string) => SavedTensor | undefined;
  shared: (name: string) => SavedTensor | undefined;
}

/** One targeted module as the merge reads it (see {@linkcode ModuleUpdate}), from the base's parameters or `from`. */
function moduleUpdate(
  base: TunedBase,
  { module, target, tensor, shared }: SavedModule,
  from?: ModuleParams,
): ModuleUpdate {
  const { outFeatures: out, inFeatures: inn } = target;
  return {
    module,
    outFeatures: out,
    inFeatures: inn,
    tensor,
    shared,
    weight: () => {
      if (from) return from.weight.slice();
      const w = base.readWeight(target.initializer);
      return target.layout === "out_in" ? w : transpose(w, inn, out);
    },
    bias: () => from ? from.bias?.slice() : target.bias ? base.readWeight(target.bias.initializer) : undefined,
  };
}

/**
 * One module's parameters after a method's merge into `from` (the base's
 * parameters when absent): PyTorch's layouts, a parameter the merge leaves
 * unchanged as it was; `biasMerged` when the merge changed the bias.
 *
 * @example
 * ```ts
 * import { mergeModuleParams } from "./read.ts";
 * // const after = mergeModuleParams(base, TUNER_METHODS.OFT, config, { module, target, tensor, shared }, before);
 * ```
 */
export function mergeModuleParams(
  base: TunedBase,
  method: TunerMethod,
  config: TunerConfig,
  saved: SavedModule,
  from?: ModuleParams,
): ModuleParams & { biasMerged: boolean } {
  const update = moduleUpdate(base, saved, from);
  const result = method.merge(update, config);
  return { weight: result.weight ?? update.weight(), bias: result.bias ?? update.bias(), biasMerged: !!result.bias };
}

/**
 * A saved adapter file's tensors by module, as a method names them
 * (`base_model.model.<module>.<param>`), and its shared tensors.
 *
 * @example
 * ```ts
 * import { savedTensors } from "./read.ts";
 * // const { module, shared } = savedTensors(file, TUNER_METHODS.LOHA);
 * // module("model.layers.0.self_attn.q_proj")("hada_w1_a");
 * ```
 */
export function savedTensors(file: Safetensors, method: TunerMethod): {
  module: (module: string) => (param: string) => SavedTensor | undefined;
  shared: (name: string) => SavedTensor | undefined;
} {
  const grouped = groupKeys(file.names(), method);
  const tensor = (key: string | undefined): SavedTensor | undefined =>
    key === undefined ? undefined : { values: file.toFloat32(key), shape: file.info(key).shape };
  return {
    module: (module) => (param) => tensor(grouped.modules.get(module)?.get(param)),
    shared: (name) => tensor(grouped.shared.get(name)),
  };
}

/**
 * The parameters PEFT's layers of this method hold, as
 * `get_nb_trainable_parameters` counts them: the saved per-module tensors
 * (factors, not the weight they make), shared tensors unless they are
 * buffers, and per-module parameters PEFT does not save.
 *
 * @example
 * ```ts
 * import { parameterCount } from "./read.ts";
 * // parameterCount(file, TUNER_METHODS.VERA); // the lambdas only: vera_A/vera_B are buffers
 * ```
 */
export function parameterCount(file: Safetensors, method: TunerMethod): number {
  const grouped = groupKeys(file.names(), method);
  const size = (key: string) => file.info(key).shape.reduce((n, d) => n * d, 1);
  const perModule = [...grouped.modules.values()].reduce(
    (n, params) => n + [...params.values()].reduce((m, key) => m + size(key), method.unsavedPerModule ?? 0),
    0,
  );
  const shared = method.sharedAreBuffers ? 0 : [...grouped.shared.values()].reduce((n, key) => n + size(key), 0);
  return perModule + shared + grouped.unknown.reduce((n, key) => n + size(key), 0);
}

/**
 * Merges one module by its method's math into full replacements of its
 * weight (and bias), added to `outputs` under `<module>.weight` / `.bias`.
 *
 * @example
 * ```ts
 * import { mergeModule } from "./read.ts";
 * // mergeModule(base, TUNER_METHODS.IA3, config, { module: "model.layers.0.mlp.down_proj", target, tensor, shared }, outputs);
 * ```
 */
export function mergeModule(
  base: TunedBase,
  method: TunerMethod,
  config: TunerConfig,
  saved: SavedModule,
  outputs: Map<string, TensorInput>,
): ReplacePatch[] {
  const { module, target } = saved;
  const { outFeatures: out, inFeatures: inn } = target;
  const result = method.merge(moduleUpdate(base, saved), config);
  const patches: ReplacePatch[] = [];
  if (result.weight) {
    // merge.ts reads replaced weights in PyTorch's layout: [in, out] under fan_in_fan_out.
    const data = config.fanInFanOut ? transpose(result.weight, out, inn) : result.weight;
    const key = `${module}.weight`;
    outputs.set(key, { dtype: "F32", shape: config.fanInFanOut ? [inn, out] : [out, inn], data });
    patches.push({ kind: "replace", module, target, param: "weight", key });
  }
  if (result.bias) {
    if (!target.bias) throw new AdapterMismatchError("the base module has no bias to change", { key: module });
    const key = `${module}.bias`;
    outputs.set(key, { dtype: "F32", shape: [out], data: result.bias });
    patches.push({ kind: "replace", module, target, param: "bias", key });
  }
  return patches;
}

/**
 * Reads a non-LoRA adapter (`peft_type` one of `TUNER_METHODS`) and merges
 * it into new values of the weights it changes; returns it planned as
 * full-parameter replacements. In `mode` `"dynamic"`, a per-channel scale
 * method (IA³) is planned as `scales` instead, and a low-rank one (AdaLoRA,
 * VeRA) as LoRA patches whose A/B are its per-module pair; neither merges anything.
 * The other methods' replacements serve both modes (dynamic mode feeds them whole).
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "../model/base_model.ts";
 * import { resolveSource } from "../hub/resolve.ts";
 * import { parseSafetensors } from "../safetensors/mod.ts";
 * import { readTunedAdapter } from "./read.ts";
 * const base = await loadBaseModel("tests/fixtures/real/bases/llama-torchscript");
 * const dir = "tests/fixtures/tuners/llama-loha";
 * const source = await resolveSource(dir);
 * const config = JSON.parse(new TextDecoder().decode(await source.read("adapter_config.json")));
 * const read = async () => parseSafetensors(await source.read("adapter_model.safetensors"));
 * const adapter = await readTunedAdapter(base, read, config, dir, console.warn);
 * adapter.plan.patches.length; // 8
 * ```
 */
export async function readTunedAdapter(
  base: TunedBase,
  readFile: () => Promise<Safetensors>,
  values: Readonly<Record<string, unknown>>,
  location: string,
  warn: (message: string) => void,
  mode: "merged" | "dynamic" = "merged",
): Promise<TunedAdapter> {
  const peftType = values.peft_type as TunerType;
  const method = TUNER_METHODS[peftType];
  const config = method.parse(values, "adapter_config.json");
  if ((config.selection.modulesToSave ?? []).length > 0) {
    throw new UnsupportedError(`modules_to_save is not supported for ${peftType} yet`, { key: "modules_to_save" });
  }
  const selects = config.targetModules === null ? () => true : createTargetMatcher(config.selection);
  if (method.conv1DRefusal) {
    const conv = base.weights.modules.find((m) => selects(m) && isConv1D(base, m));
    if (conv) refuseConv1D(method, peftType, conv);
  }
  // Read after the config checks: PEFT's refusals (Conv1D) come before any weight is needed.
  const file = await readFile();
  const grouped = groupKeys(file.names(), method);
  const tensor = (key: string): SavedTensor => ({ values: file.toFloat32(key), shape: file.info(key).shape });
  const shared = (n: string) => grouped.shared.has(n) ? tensor(grouped.shared.get(n)!) : undefined;
  if (grouped.unknown.length > 0) {
    // Not a tensor of this method's linear form (an embedding's, a trained bias): applying the rest would be partial.
    throw new UnsupportedError(
      `${grouped.unknown.length} tensor(s) are not ${peftType} tensors of a linear module that peft-edge merges ` +
        `(${grouped.unknown.slice(0, 3).join(", ")}); nothing of the adapter was applied`,
      { file: "adapter_model.safetensors", key: grouped.unknown[0] },
    );
  }
  const unmatched: string[] = [];
  const exportFile = base.weights.file ?? base.file;
  const chosen: Array<[string, Map<string, string>, WeightTarget]> = [];
  const outputs = new Map<string, TensorInput>();
  const patches: Array<LoraPatch | ReplacePatch> = [];
  for (const [module, params] of grouped.modules) {
    if (!selects(module)) {
      unmatched.push(...params.values());
      continue;
    }
    if (method.replaces) {
      patches.push(...replaced(base, module, params, method.replaces, tensor, outputs, config, exportFile));
      continue;
    }
    const target = base.weights.resolve(module);
    checkTarget(base, module, target, exportFile);
    if (method.conv1DRefusal && isConv1D(base, module)) refuseConv1D(method, peftType, module);
    chosen.push([module, params, target!]);
  }
  if (chosen.length === 0 && patches.length === 0) {
    throw new AdapterMismatchError(`no tensor of the adapter changes a module the config targets`, {
      file: "adapter_model.safetensors",
    });
  }
  method.check?.(config, shared);
  const scales: ScalePatch[] = [];
  for (const [module, params, target] of chosen) {
    const own = (p: string) => params.has(p) ? tensor(params.get(p)!) : undefined;
    const saved: SavedModule = { module, target, tensor: own, shared };
    if (mode === "dynamic" && method.scale) {
      // Fed per run: the saved vector is kept as saved, and merged only if mergeAndUnload asks.
      const { param, input } = method.scale(moduleUpdate(base, saved), config);
      const key = params.get(param)!;
      const vector = tensor(key);
      outputs.set(key, { dtype: "F32", shape: vector.shape, data: vector.values });
      scales.push({ kind: "scale", module, target, key, input });
      continue;
    }
    if (mode === "dynamic" && method.lowRank) {
      // Run as a LoRA branch of the module: its A' and B' are the adapter's tensors the branch is fed.
      const delta = method.lowRank(moduleUpdate(base, saved), config);
      if (!delta) continue; // a rank pruned to 0: the module stays as the base has it
      const { rank, scale } = delta;
      const a = `${module}.lora_A`;
      const b = `${module}.lora_B`;
      outputs.set(a, { dtype: "F32", shape: [rank, target.inFeatures], data: delta.a });
      outputs.set(b, { dtype: "F32", shape: [target.outFeatures, rank], data: delta.b });
      patches.push({ kind: "lora", module, target, rank, scale, a, b });
      continue;
    }
    patches.push(...mergeModule(base, method, config, saved, outputs));
  }
  if (unmatched.length > 0) {
    warn(
      `${location}: ${unmatched.length} adapter key(s) match no module of the base and were not applied: ${
        unmatched.slice(0, 5).join(", ")
      }`,
    );
  }
  const adapted = new Set(chosen.map(([m]) => base.weights.resolve(m)!.module));
  const missingModules = config.targetModules === null || method.replaces
    ? []
    : base.weights.modules.filter((m) => !adapted.has(m) && selects(m) && base.weights.get(m)!.kind === "linear");
  if (missingModules.length > 0) {
    warn(
      `${location}: the config targets ${missingModules.length} base module(s) that have no adapter weights (missing keys): ${
        missingModules.slice(0, 5).join(", ")
      }`,
    );
  }
  const merged: Safetensors = parseSafetensors(serializeSafetensors(outputs), `${peftType} merged weights`);
  const parameters = file.names().reduce((n, k) => n + file.info(k).shape.reduce((a, b) => a * b, 1), 0);
  return {
    config,
    plan: {
      patches,
      unmatchedKeys: unmatched,
      missingModules,
      missingKeys: [],
      tokens: [],
      ...(scales.length > 0 ? { scales } : {}),
    },
    weights: merged,
    parameters,
    ...(method.replaces ? {} : { saved: file }),
  };
}
