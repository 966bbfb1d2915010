/**
 * Reading one adapter for a base: resolve its files, parse the config and
 * weights, and plan it against the base's weights. Shared by
 * `fromPretrained` and `PeftModel.loadAdapter`; nothing here changes a model.
 * @module
 */
import { expandAllLinear, type LoraConfig, parseLoraConfig } from "../config/mod.ts";
import { AdapterConfigError, AdapterMismatchError, UnsupportedError } from "../errors.ts";
import { targetParametersOf, wrapParamTargets } from "../lora/param_targets.ts";
import { type AdapterPlan, planAdapter } from "../lora/plan.ts";
import { parseSafetensors, type Safetensors } from "../safetensors/mod.ts";
import { safetensorsOnlyError } from "../storage/bin_only.ts";
import type { FileSource } from "../storage/file_source.ts";
import { rangeBytes } from "../storage/range_bytes.ts";
import { type PathOrSource, type ResolveOptions, resolveSource } from "../hub/resolve.ts";
import type { WeightIndex } from "../onnx/weight_index.ts";
import type { WeightTarget } from "../onnx/weight_target.ts";
import type { ModelProto, TensorProto } from "../deps/onnx_proto.ts";
import { externalBytes } from "../onnx/external_data.ts";
import { storesWeight } from "../onnx/requantize.ts";
import { sameWeightValues, torchWeightToTarget } from "../lora/merge.ts";
import type { TunerConfig } from "../tuners/config.ts";
import type { PromptLearningConfig } from "../tuners/prompt_learning/config.ts";

/** Options for reading an adapter (PEFT's `load_adapter` arguments, camelCase). */
export interface AdapterOptions extends ResolveOptions {
  /** A PEFT config (snake_case JSON as in `adapter_config.json`) used instead of the file. */
  config?: Record<string, unknown>;
  /**
   * PEFT upcasts F16/BF16 adapter weights to F32 when true (the default).
   * peft-edge always computes in float32, which is what `true` means; `false`
   * is accepted and gives the same float32 result.
   */
  autocastAdapterDtype?: boolean;
  /** Accepted for PEFT compatibility; adapters are always read once, without extra copies. */
  lowCpuMemUsage?: boolean;
  /**
   * Loads the adapter for training (`fromPretrained` in mode "dynamic"; `loadAdapter` refuses it).
   * Default `false`.
   */
  isTrainable?: boolean;
  /** Receives warnings (missing/unexpected keys, unknown config fields). Default `console.warn`. */
  onWarning?: (message: string) => void;
}

/** What reading an adapter may use of the base beyond its weight index (a `BaseModel` has both). */
export interface BaseValues {
  /** An initializer's values as float32. */
  readWeight(initializer: string): Float32Array;
  /** The graph, its file and external data (a `BaseModel` has them): quantized weights are read from it. */
  readonly onnx?: ModelProto;
  readonly file?: string;
  readonly externalData?: ReadonlyMap<string, Uint8Array>;
  /** The base's config.json. */
  readonly config: Readonly<Record<string, unknown>>;
}

/** An adapter read and planned against one base. Immutable. */
export interface LoadedAdapter {
  name: string;
  /** Where it came from, for messages. */
  location: string;
  /** LoRA's config, a non-LoRA method's (`src/tuners`), or a prompt-learning one. */
  config: LoraConfig | TunerConfig | PromptLearningConfig;
  plan: AdapterPlan;
  /**
   * Its tensors. Those of a local adapter not loaded for training are read
   * from its file each time they are asked for (`readAdapterWeights`):
   * readers take what they need once rather than holding them.
   */
  weights: Safetensors;
  /** Number of parameters in its tensors. */
  parameters: number;
  warnings: readonly string[];
  /**
   * Saved full weights (`base_layer.weight`) of quantized targets that the file was quantized from, by
   * module, in the target's layout. Not applied (the file stores them already), but merging starts from
   * them: PEFT loads them over the layer and merges into the loaded float weight.
   */
  quantizedBaseWeights?: ReadonlyMap<string, Float32Array>;
  /**
   * A non-LoRA method's saved file (`src/tuners`, methods merged module by module): merging it after another
   * adapter of its method starts from that one's result (`tuners/compose.ts`), not from the base.
   */
  saved?: Safetensors;
}

/**
 * The adapter's LoRA config, or an error saying that `what` (training, weighting)
 * needs a LoRA adapter (and not an activated one).
 *
 * @example
 * ```ts
 * import { loraConfigOf, type LoadedAdapter } from "./adapter.ts";
 * declare const adapter: LoadedAdapter;
 * console.log(loraConfigOf(adapter, "training").r);
 * ```
 */
export function loraConfigOf(adapter: LoadedAdapter, what: string): LoraConfig {
  const config = adapter.config;
  if (config.peftType === "LORA" && (config as LoraConfig).aloraInvocationTokens !== null) {
    // Its training graph and weighted combinations would need the invocation mask, which they do not carry.
    throw new UnsupportedError(`${what} of an activated LoRA (aLoRA, ${adapter.name}) is not supported`, {
      key: "alora_invocation_tokens",
    });
  }
  if (targetParametersOf(config) !== null) {
    // Its factors are the parameters' (some transposed into the module's form), which the trainer would save wrongly.
    throw new UnsupportedError(
      `${what} of a LoRA on parameters (target_parameters, ${adapter.name}) is not supported`,
      {
        key: "target_parameters",
      },
    );
  }
  if (config.peftType === "LORA") return config as LoraConfig;
  throw new UnsupportedError(`${what} needs a LoRA adapter; ${adapter.name} is ${config.peftType}`, {
    key: adapter.name,
  });
}

const ADAPTER_WEIGHTS = "adapter_model.safetensors";
const ADAPTER_CONFIG = "adapter_config.json";
const FLOAT_DTYPES = new Set(["F64", "F32", "F16", "BF16"]);

/**
 * Checks an adapter name (PEFT uses it as a module key, so it must be a
 * plain non-empty string).
 *
 * @example
 * ```ts
 * import { checkAdapterName } from "./adapter.ts";
 * checkAdapterName("python"); // "python"
 * ```
 */
export function checkAdapterName(name: unknown): string {
  if (typeof name !== "string" || !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(name)) {
    throw new AdapterConfigError(
      `adapter name ${
        JSON.stringify(name)
      } must be 1-128 letters, digits, "_", "-" or ".", not starting with "." or "-"`,
      { key: "adapterName" },
    );
  }
  return name;
}

async function readConfig(source: FileSource, options: AdapterOptions, warn: (m: string) => void): Promise<LoraConfig> {
  if (options.config) return parseLoraConfig(options.config, { file: "config option", onWarning: warn });
  // The text, not parsed JSON: rank/alpha pattern keys keep their file order (first match wins in PEFT).
  const text = new TextDecoder().decode(await source.read(ADAPTER_CONFIG));
  return parseLoraConfig(text, { file: ADAPTER_CONFIG, onWarning: warn, requirePeftType: true });
}

/**
 * Options of {@linkcode readAdapterWeights}.
 *
 * @example
 * ```ts
 * import { type AdapterWeightsOptions, readAdapterWeights } from "./adapter.ts";
 * import { localSource } from "../storage/local.ts";
 * const options: AdapterWeightsOptions = { whole: true };
 * const weights = await readAdapterWeights(localSource("tests/fixtures/llama-tiny-lora-qv"), options);
 * ```
 */
export interface AdapterWeightsOptions {
  /**
   * Holds the file's bytes in memory even where the source reads ranges
   * (a trainable adapter: training may save over the file it came from).
   */
  whole?: boolean;
}

/**
 * Reads `adapter_model.safetensors` (refusing pickle-only adapters and
 * non-float tensors). A source that reads ranges (a local folder) gives
 * weights read from the file tensor by tensor whenever they are asked for,
 * so the file's bytes are not held beside what is built from them (the
 * branch feeds, merged weights); such a read of a file that changed since
 * throws `FileAccessError` naming it. Other sources are read whole.
 *
 * @example
 * ```ts
 * import { readAdapterWeights } from "./adapter.ts";
 * import { resolveSource } from "../hub/resolve.ts";
 * const weights = await readAdapterWeights(await resolveSource("tests/fixtures/llama-tiny-lora-qv"));
 * ```
 */
export async function readAdapterWeights(
  source: FileSource,
  options: AdapterWeightsOptions = {},
): Promise<Safetensors> {
  if (!await source.exists(ADAPTER_WEIGHTS)) {
    const pickleOnly = await safetensorsOnlyError(source, ADAPTER_WEIGHTS);
    if (pickleOnly) throw pickleOnly;
  }
  const ranges = options.whole ? undefined : await source.openRanges?.(ADAPTER_WEIGHTS);
  const bytes = ranges ? rangeBytes(ranges, ADAPTER_WEIGHTS) : await source.read(ADAPTER_WEIGHTS);
  const weights = parseSafetensors(bytes, ADAPTER_WEIGHTS);
  for (const name of weights.names()) {
    const { dtype } = weights.info(name);
    if (!FLOAT_DTYPES.has(dtype)) {
      throw new AdapterMismatchError(`adapter tensor has dtype ${dtype}; LoRA weights must be F32, F16, BF16 or F64`, {
        file: ADAPTER_WEIGHTS,
        key: name,
      });
    }
  }
  return weights;
}

/**
 * Resolves, parses and plans an adapter against a base's weights; `base`
 * (its values and config.json) lets a saved full weight that equals the
 * base's be recognised as a no-op, and tells whether embeddings are tied.
 *
 * @example
 * ```ts
 * import { readAdapter } from "./adapter.ts";
 * import { loadBaseModel } from "./base_model.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const adapter = await readAdapter(base.weights, "tests/fixtures/llama-tiny-lora-qv", "default");
 * adapter.plan.patches.length; // 4
 * ```
 */
export async function readAdapter(
  weightsOfBase: WeightIndex,
  pathOrSource: PathOrSource,
  name: string,
  options: AdapterOptions = {},
  base?: BaseValues,
): Promise<LoadedAdapter> {
  checkAdapterName(name);
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    (options.onWarning ?? console.warn)(message);
  };
  const source = await resolveSource(pathOrSource, options);
  // "all-linear" is expanded against this base, as PEFT expands it against the model.
  const linear = weightsOfBase.modules.filter((m) => weightsOfBase.get(m)!.kind === "linear");
  const config = expandAllLinear(await readConfig(source, options, warn), linear);
  const file = await readAdapterWeights(source, { whole: options.isTrainable });
  // Wrapped parameters (target_parameters) become LoRAs of their modules, some factors transposed.
  const modelType = base?.config.model_type;
  const { layout, weights, wrapped, targets } = wrapParamTargets(
    config,
    file,
    weightsOfBase,
    typeof modelType === "string" ? modelType : undefined,
    base?.onnx?.graph,
  );
  // A saved full weight equal to the base's is a no-op (needs the base's values; without them it is applied).
  const quantizedBaseWeights = new Map<string, Float32Array>();
  const sameAsBase = base &&
    ((key: string, target: WeightTarget) => {
      const saved = torchWeightToTarget(weights.toFloat32(key), target, config.fanInFanOut);
      // A quantized base stores the weight quantized: the same if quantizing the saved one gives its bytes.
      if (!target.quantized) return sameWeightValues(saved, base.readWeight(target.initializer));
      const file = base.file ?? "model.onnx";
      const external = (t: TensorProto) => externalBytes(t, base.externalData ?? new Map(), file);
      const same = base.onnx !== undefined && storesWeight(base.onnx.graph!, target, saved, file, external);
      if (same) quantizedBaseWeights.set(target.module, saved);
      return same;
    });
  // transformers' PretrainedConfig default is tie_word_embeddings=True, and config.json leaves defaults out.
  const tiedEmbeddings = base !== undefined && (base.config["tie_word_embeddings"] ?? true) === true;
  const plan = planAdapter(config, layout, (k) => weights.info(k).shape, weightsOfBase, {
    sameAsBase,
    tiedEmbeddings,
    wrapped,
    targets,
  });
  if (plan.unmatchedKeys.length > 0) {
    warn(
      `${source.location}: ${plan.unmatchedKeys.length} adapter key(s) match no module of the base and were not applied: ${
        plan.unmatchedKeys.slice(0, 5).join(", ")
      }`,
    );
  }
  if (plan.missingModules.length > 0) {
    warn(
      `${source.location}: the config targets ${plan.missingModules.length} base module(s) that have no adapter weights (missing keys): ${
        plan.missingModules.slice(0, 5).join(", ")
      }`,
    );
  }
  if (plan.missingKeys.length > 0) {
    // PEFT's words; these tensors stay at PEFT's init (a zero LoRA factor, the base weight's norms).
    warn(
      `${source.location}: Found missing adapter keys while loading the checkpoint: [${
        plan.missingKeys.map((k) => `'${k}'`).join(", ")
      }]`,
    );
  }
  const parameters = file.names().reduce((n, k) => n + file.info(k).shape.reduce((a, b) => a * b, 1), 0);
  return { name, location: source.location, config, plan, weights, parameters, warnings, quantizedBaseWeights };
}
