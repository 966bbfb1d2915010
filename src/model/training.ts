/**
 * Wiring a loaded adapter to the training code: the base's graph, weights
 * and decoder interface become a {@linkcode TrainableAdapter}, whose
 * sessions run on the base's device with its session options.
 * @module
 */
import { Tensor } from "../deps/ort.ts";
import { UnsupportedError } from "../errors.ts";
import { describeDecoder } from "../generate/decoder_layout.ts";
import { TrainableAdapter } from "../train/trainable.ts";
import type { BiasParameter } from "../train/lora_params.ts";
import { transposed } from "../train/trained_tensor.ts";
import type { SiteParameter } from "../train/site_params.ts";
import { externalBytes } from "../onnx/external_data.ts";
import { readTargetWeight } from "../onnx/quantized_weights.ts";
import type { WeightTarget } from "../onnx/weight_index.ts";
import type { TensorInput } from "../safetensors/mod.ts";
import { type LoadedAdapter, loraConfigOf } from "./adapter.ts";
import type { BaseModel } from "./base_model.ts";
import { createSession } from "./session.ts";

/**
 * A trainable copy of an adapter's tensors on a base.
 *
 * @throws {UnsupportedError} for bases or adapters training does not cover (merged decoders, DoRA, float16).
 * @example
 * ```ts
 * import { loadBaseModel } from "./base_model.ts";
 * import { readAdapter } from "./adapter.ts";
 * import { trainableAdapter } from "./training.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const adapter = await readAdapter(base.weights, "tests/fixtures/llama-tiny-lora-qv", "default");
 * const trainable = await trainableAdapter(base, adapter);
 * console.log(trainable.params.tensors.length); // 8
 * ```
 */
export async function trainableAdapter(base: BaseModel, adapter: LoadedAdapter): Promise<TrainableAdapter> {
  const layout = describeDecoder(base);
  if (layout.useCacheBranch) {
    throw new UnsupportedError("training a merged decoder (use_cache_branch) is not supported; export without it", {
      key: "use_cache_branch",
    });
  }
  const { cpu } = await base.kernels();
  // Training reads base weights and builds sessions at any step: their bytes stay in memory.
  base.pinWeights();
  const weightOf = (target: WeightTarget) =>
    readTargetWeight(base.onnx.graph!, target, base.file, (t) => externalBytes(t, base.externalData, base.file));
  const config = loraConfigOf(adapter, "training");
  const trained = trainedParameters(adapter, (name) => base.readWeight(name));
  const settings = {
    device: base.device,
    executionProviders: base.settings.executionProviders,
    sessionOptions: { ...base.settings.sessionOptions, preferredOutputLocation: undefined },
    // Native sessions take their thread count per session (onnxruntime-web's is process-wide).
    runtime: base.settings.runtime,
  };
  return new TrainableAdapter({
    onnx: base.onnx,
    weights: base.weights,
    plan: adapter.plan,
    tensor: (key) => adapter.weights.toFloat32(key),
    factory: (model) => createSession(model, base.externalData, settings, base.file),
    extraInputs: (rows) => {
      const dims = [rows, ...layout.emptyPastDims.slice(1)];
      return Object.fromEntries(layout.cache.map((c) => [c.input, new Tensor("float32", new Float32Array(0), dims)]));
    },
    inputNames: base.inputNames,
    vocabSize: layout.vocabSize,
    dropout: config.loraDropout,
    biases: trained.biases,
    siteParameters: trained.sites,
    readWeight: (name) => base.readWeight(name),
    fanInFanOut: config.fanInFanOut,
    doraNorms: (patch, a, b) => {
      const { target } = patch;
      const dims = { outFeatures: target.outFeatures, inFeatures: target.inFeatures, rank: patch.rank };
      return cpu.doraNorms(weightOf(target), a, b, dims, patch.scale, target.layout);
    },
    savedExtras: embeddingBaseLayers(adapter, weightOf),
    config: savedConfig(adapter),
  });
}

/**
 * The full parameters PEFT trains besides the LoRA tensors, as the adapter
 * holds them (PEFT's save writes each one): biases under `bias: "lora_only"` /
 * `"all"` (a projection's on its LoRA branch, a norm's on a parameter site,
 * each with the base's own value, zeros where the exporter dropped an
 * all-zero bias) and `modules_to_save` modules (fed whole on parameter sites).
 *
 * @throws {UnsupportedError} for a norm in modules_to_save, a replaced weight under a LoRA, or a missing bias PEFT trains.
 */
function trainedParameters(
  adapter: LoadedAdapter,
  read: (initializer: string) => Float32Array,
): { biases: BiasParameter[]; sites: SiteParameter[] } {
  const biases: BiasParameter[] = [];
  const sites: SiteParameter[] = [];
  const config = loraConfigOf(adapter, "training");
  const lora = new Set(adapter.plan.patches.filter((p) => p.kind === "lora").map((p) => p.module));
  const whole = new Set<string>();
  for (const p of adapter.plan.patches) {
    if (p.kind !== "replace" || p.param !== "weight") continue;
    if (p.target.kind === "norm") {
      throw new UnsupportedError("training a norm in modules_to_save is not supported", { key: p.module });
    }
    if (lora.has(p.module)) {
      throw new UnsupportedError("training a module's weight under its own LoRA (base_layer.weight) is not supported", {
        key: p.module,
      });
    }
    whole.add(p.module);
    sites.push({ module: p.module, key: p.key, param: "weight", torchInOut: p.torchInOut });
  }
  for (const p of adapter.plan.patches) {
    if (p.kind !== "replace" || p.param !== "bias") continue;
    const t = p.target;
    if (whole.has(p.module)) {
      sites.push({ module: p.module, key: p.key, param: "bias" });
      continue;
    }
    const base = t.bias ? read(t.bias.initializer) : new Float32Array(t.outFeatures);
    if (t.kind === "norm") sites.push({ module: p.module, key: p.key, param: "bias", base });
    else biases.push({ module: p.module, key: p.key, base });
  }
  if (config.bias !== "none") {
    // PEFT trains the bias of every LoRA module that has one, saved or not: training without it would differ.
    const trained = new Set(biases.map((b) => b.module));
    const lacking = adapter.plan.patches.find((p) => p.kind === "lora" && p.target.bias && !trained.has(p.module));
    if (lacking) {
      throw new UnsupportedError(
        `bias is "${config.bias}" but the adapter lacks this module's bias, which PEFT trains`,
        {
          key: lacking.module,
        },
      );
    }
  }
  return { biases, sites };
}

/**
 * The config as PEFT saves it: as read, except that `"all-linear"` is
 * written as the full names of the modules it matched (PEFT 0.21 replaces it by that set).
 */
function savedConfig(adapter: LoadedAdapter): Readonly<Record<string, unknown>> {
  const raw = loraConfigOf(adapter, "training").raw;
  if (raw.target_modules !== "all-linear") return raw;
  return { ...raw, target_modules: [...new Set(adapter.plan.patches.map((p) => p.module))].sort() };
}

/** PEFT's `EMBEDDING_LAYER_NAMES`. */
const EMBEDDING_LAYERS = ["embed_tokens", "lm_head"];

/**
 * What PEFT's `save_pretrained` adds for `save_embedding_layers="auto"`:
 * when `target_modules` names an embedding layer, each LoRA-wrapped
 * embedding layer's base weight (`<module>.base_layer.weight`, PyTorch layout).
 */
function embeddingBaseLayers(
  adapter: LoadedAdapter,
  weightOf: (target: WeightTarget) => Float32Array,
): Record<string, TensorInput> {
  const targets = loraConfigOf(adapter, "training").raw.target_modules;
  const named = Array.isArray(targets)
    ? EMBEDDING_LAYERS.some((k) => targets.includes(k))
    : typeof targets === "string" && EMBEDDING_LAYERS.some((k) => targets.includes(k));
  const extras: Record<string, TensorInput> = {};
  if (!named) return extras;
  for (const p of adapter.plan.patches) {
    const last = p.module.slice(p.module.lastIndexOf(".") + 1);
    const isInput = p.target.kind === "embedding";
    if (!isInput && last !== "lm_head") continue;
    const t = p.target;
    let data = weightOf(t);
    // Linear weights stored [in, out] are transposed back to PyTorch's [out, in].
    if (!isInput && t.layout === "in_out") data = transposed(data, t.inFeatures, t.outFeatures);
    const shape = isInput ? [t.inFeatures, t.outFeatures] : [t.outFeatures, t.inFeatures];
    extras[`base_model.model.${p.module}.base_layer.weight`] = { dtype: "F32", shape, data };
  }
  return extras;
}
