/**
 * `createAdapter`: PEFT's `get_peft_model(model, LoraConfig(...))` for an
 * ONNX base: a new, trainable LoRA adapter on the modules the config
 * targets, initialised as PEFT does (see `initLora`), with the full
 * parameters PEFT trains besides (`modules_to_save`, `bias`) copied from the base.
 * @module
 */
import {
  createTargetMatcher,
  expandAllLinear,
  type LoraConfig,
  parseLoraConfig,
  rankFor,
  scalingFor,
} from "../config/mod.ts";
import { modulesToSaveRegex } from "../config/regex.ts";
import { externalBytes } from "../onnx/external_data.ts";
import { readTargetWeight } from "../onnx/quantized_weights.ts";
import type { WeightTarget } from "../onnx/weight_index.ts";
import { transposed } from "../train/trained_tensor.ts";
import { AdapterConfigError, UnsupportedError } from "../errors.ts";
import { serializeSafetensors, type TensorInput } from "../safetensors/mod.ts";
import { memorySource } from "../storage/memory.ts";
import { initLora, initLoraBias, PEFT_LORA_DEFAULTS } from "../train/lora_init.ts";
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from "../train/peft_format.ts";
import type { BaseModel } from "./base_model.ts";
import { fromPretrained } from "./from_pretrained.ts";
import type { PeftModel } from "./peft_model.ts";

/**
 * Options of {@linkcode createAdapter}.
 *
 * @example
 * ```ts
 * import type { CreateAdapterOptions } from "./create_adapter.ts";
 * const options: CreateAdapterOptions = { adapterName: "default", seed: 42 };
 * ```
 */
export interface CreateAdapterOptions {
  /** PEFT's `adapter_name` (default `"default"`). */
  adapterName?: string;
  /** Seed of the random init (default 0). */
  seed?: number;
}

/**
 * A new trainable adapter on `base` from a PEFT LoRA config object
 * (`adapter_config.json`'s snake_case fields; PEFT's defaults fill the
 * rest), like `get_peft_model`. `savePretrained` writes it as PEFT would.
 *
 * @throws {AdapterConfigError} when the config targets no module of the base.
 * `modules_to_save` and `bias` start from copies of the base's values and
 * `use_dora`'s magnitude from the weight norms, as PEFT initialises them.
 *
 * @throws {UnsupportedError} for init schemes or features training does not cover.
 * @example
 * ```ts
 * import { createAdapter, loadBaseModel } from "../../mod.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const model = await createAdapter(base, { r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj"] });
 * console.log(model.getNbTrainableParameters().trainable); // 1536
 * ```
 */
export async function createAdapter(
  base: BaseModel,
  loraConfig: Readonly<Record<string, unknown>>,
  options: CreateAdapterOptions = {},
): Promise<PeftModel> {
  const raw: Record<string, unknown> = { ...PEFT_LORA_DEFAULTS, ...loraConfig, inference_mode: false };
  const arch = Array.isArray(base.config.architectures) ? base.config.architectures[0] : undefined;
  const type = base.config.model_type;
  if (raw.task_type === null && raw.auto_mapping === null && typeof arch === "string" && typeof type === "string") {
    // What PEFT records when the config names no task type.
    raw.auto_mapping = { base_model_class: arch, parent_library: `transformers.models.${type}.modeling_${type}` };
  }
  const linear = base.weights.modules.filter((m) => base.weights.get(m)!.kind === "linear");
  const config = expandAllLinear(parseLoraConfig(raw, { file: "loraConfig", onWarning: () => {} }), linear);
  if (config.targetParameters?.length) {
    throw new UnsupportedError("createAdapter does not create target_parameters adapters", { key: "loraConfig" });
  }
  const matches = createTargetMatcher(config);
  const modules = base.weights.modules.filter(matches);
  if (modules.length === 0) {
    throw new AdapterConfigError("target_modules matches no module of the base", { key: "target_modules" });
  }
  const tensors: Record<string, TensorInput> = {};
  const seed = options.seed ?? 0;
  const weightOf = (target: WeightTarget) =>
    readTargetWeight(base.onnx.graph!, target, base.file, (t) => externalBytes(t, base.externalData, base.file));
  const { cpu } = await base.kernels();
  modules.forEach((module, i) => {
    const target = base.weights.get(module)!;
    const r = rankFor(config, module);
    const kind = target.kind === "embedding" ? "embedding" : "linear";
    const { a, b } = initLora(kind, r, target.inFeatures, target.outFeatures, config.initLoraWeights, seed + i);
    const prefix = `base_model.model.${module}`;
    const [keyA, keyB] = kind === "embedding"
      ? [`${prefix}.lora_embedding_A`, `${prefix}.lora_embedding_B`]
      : [`${prefix}.lora_A.weight`, `${prefix}.lora_B.weight`];
    tensors[keyA] = { dtype: "F32", shape: [r, target.inFeatures], data: a };
    tensors[keyB] = { dtype: "F32", shape: [target.outFeatures, r], data: b };
    if (config.useDora) {
      if (kind === "embedding") {
        throw new UnsupportedError("createAdapter: DoRA on an embedding is not supported", { key: module });
      }
      // PEFT's DoraLinearLayer.update_layer: the magnitude starts at the row norms of W + s·B·A.
      const dims = { outFeatures: target.outFeatures, inFeatures: target.inFeatures, rank: r };
      const m = cpu.doraNorms(weightOf(target), a, b, dims, scalingFor(config, module), target.layout);
      tensors[`${prefix}.lora_magnitude_vector`] = { dtype: "F32", shape: [target.outFeatures], data: m };
    }
    if (config.loraBias) {
      if (kind === "embedding") {
        throw new UnsupportedError("createAdapter: lora_bias on an embedding is not supported", { key: module });
      }
      tensors[`${prefix}.lora_B.bias`] = {
        dtype: "F32",
        shape: [target.outFeatures],
        data: initLoraBias(r, target.outFeatures, config.initLoraWeights, seed + i),
      };
    }
  });
  Object.assign(tensors, trainedBaseCopies(base, config, new Set(modules), weightOf));
  const source = memorySource("createAdapter", {
    [ADAPTER_CONFIG_FILE]: new TextEncoder().encode(JSON.stringify(raw)),
    [ADAPTER_WEIGHTS_FILE]: serializeSafetensors(tensors, { format: "pt" }),
  });
  return await fromPretrained(base, source, {
    isTrainable: true,
    adapterName: options.adapterName,
    onWarning: () => {},
  });
}

/**
 * The full parameters `get_peft_model` makes trainable besides the LoRA
 * tensors, as copies of the base's values under the keys PEFT's save writes:
 * `modules_to_save` modules (`<module>.weight` in PyTorch's layout, and
 * `.bias`), and the biases of `bias: "lora_only"` (LoRA modules',
 * `<module>.base_layer.bias`) or `"all"` (every module's and norm's).
 *
 * @throws {UnsupportedError} for a norm in modules_to_save (not trainable here) or one that is also a LoRA target.
 */
function trainedBaseCopies(
  base: BaseModel,
  config: LoraConfig,
  lora: ReadonlySet<string>,
  weightOf: (target: WeightTarget) => Float32Array,
): Record<string, TensorInput> {
  const out: Record<string, TensorInput> = {};
  const copy = (key: string, shape: number[], data: Float32Array) => {
    out[`base_model.model.${key}`] = { dtype: "F32", shape, data: Float32Array.from(data) };
  };
  const saved = (config.modulesToSave ?? []).map((m) => modulesToSaveRegex(m, { key: "modules_to_save" }));
  const whole = new Set<string>();
  for (const scope of saved.length > 0 ? base.weights.scopes : []) {
    const module = scope.module;
    if (!saved.some((re) => re.test(module))) continue;
    const t = base.weights.get(module);
    if (!t) {
      if (base.weights.resolveNorm?.(module)) {
        throw new UnsupportedError("createAdapter: a norm in modules_to_save is not supported", { key: module });
      }
      continue;
    }
    whole.add(module);
    if (t.kind === "embedding") {
      copy(`${module}.weight`, [t.inFeatures, t.outFeatures], weightOf(t));
      continue;
    }
    // PyTorch's layout: Linear [out, in], Conv1D [in, out] (the recorded class, else fan_in_fan_out but for lm_head,
    // a Linear in the Conv1D models too).
    const cls = scope.className?.slice(scope.className.lastIndexOf(".") + 1);
    const inOut = cls ? cls === "Conv1D" : config.fanInFanOut && !module.endsWith("lm_head");
    const w = weightOf(t);
    const stored = t.layout === "in_out" ? [t.inFeatures, t.outFeatures] : [t.outFeatures, t.inFeatures];
    const wanted = inOut ? [t.inFeatures, t.outFeatures] : [t.outFeatures, t.inFeatures];
    copy(`${module}.weight`, wanted, wanted[0] === stored[0] ? w : transposed(w, stored[0], stored[1]));
    if (t.bias) copy(`${module}.bias`, [t.outFeatures], base.readWeight(t.bias.initializer));
  }
  if (config.bias === "none") return out;
  for (const module of base.weights.modules) {
    const t = base.weights.get(module)!;
    if (!t.bias || whole.has(module) || (config.bias === "lora_only" && !lora.has(module))) continue;
    copy(
      `${module}${lora.has(module) ? ".base_layer" : ""}.bias`,
      [t.outFeatures],
      base.readWeight(t.bias.initializer),
    );
  }
  if (config.bias === "all") {
    for (const { module } of base.weights.scopes) {
      const norm = base.weights.resolveNorm?.(module);
      if (norm?.kind === "norm" && norm.bias && norm.module === module) {
        copy(`${module}.bias`, [norm.outFeatures], base.readWeight(norm.bias.initializer));
      }
    }
  }
  return out;
}
