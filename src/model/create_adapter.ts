/**
 * `createAdapter`: PEFT's `get_peft_model(model, LoraConfig(...))` for an
 * ONNX base: a new, trainable LoRA adapter on the modules the config
 * targets, initialised as PEFT does (see `initLora`).
 * @module
 */
import { createTargetMatcher, expandAllLinear, parseLoraConfig, rankFor } from "../config/mod.ts";
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
  if (config.modulesToSave || config.bias !== "none" || config.useDora || config.targetParameters?.length) {
    throw new UnsupportedError(
      "createAdapter covers LoRA without modules_to_save, bias, use_dora or target_parameters",
      {
        key: "loraConfig",
      },
    );
  }
  const matches = createTargetMatcher(config);
  const modules = base.weights.modules.filter(matches);
  if (modules.length === 0) {
    throw new AdapterConfigError("target_modules matches no module of the base", { key: "target_modules" });
  }
  const tensors: Record<string, TensorInput> = {};
  const seed = options.seed ?? 0;
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
