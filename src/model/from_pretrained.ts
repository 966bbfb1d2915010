/**
 * `fromPretrained`: resolve an adapter's files, parse and validate them,
 * plan the patches, merge them into copies of the base weights, and build a
 * session. Every check runs before anything is built, and nothing shared
 * with the base is mutated, so a failure leaves every model as it was.
 * @module
 */
import { type LoraConfig, parseLoraConfig } from "../config/mod.ts";
import { AdapterConfigError, AdapterMismatchError, FileNotFoundError, UnsupportedError } from "../errors.ts";
import { loadKernels } from "../kernels/kernels.ts";
import { groupAdapterKeys } from "../lora/adapter_weights.ts";
import { mergePatches } from "../lora/merge.ts";
import { planAdapter } from "../lora/plan.ts";
import { patchModel } from "../onnx/patch.ts";
import { parseSafetensors, type Safetensors } from "../safetensors/mod.ts";
import type { FileSource } from "../storage/file_source.ts";
import { type PathOrSource, type ResolveOptions, resolveSource } from "../storage/resolve.ts";
import type { BaseModel } from "./base_model.ts";
import { type AdapterMode, PeftModel } from "./peft_model.ts";
import { createSession } from "./session.ts";

/** Options of {@linkcode fromPretrained}, PEFT's `from_pretrained` arguments in camelCase. */
export interface FromPretrainedOptions extends ResolveOptions {
  /** Name the adapter is registered under (PEFT's `adapter_name`). Default `"default"`. */
  adapterName?: string;
  /** Training is not supported: `true` raises. Default `false`. */
  isTrainable?: boolean;
  /** A PEFT config (snake_case JSON as in `adapter_config.json`) used instead of the file. */
  config?: Record<string, unknown>;
  /**
   * PEFT upcasts F16/BF16 adapter weights to F32 when true (the default).
   * peft-edge always merges in float32, which is what `true` means; `false`
   * is accepted and gives the same float32 merge.
   */
  autocastAdapterDtype?: boolean;
  /** Accepted for PEFT compatibility; loading is always single-copy here. */
  lowCpuMemUsage?: boolean;
  /** `"merged"`: merge the adapter into a session of its own. */
  mode?: AdapterMode;
  /** Receives warnings (missing/unexpected keys, unknown config fields). Default `console.warn`. */
  onWarning?: (message: string) => void;
}

const ADAPTER_WEIGHTS = "adapter_model.safetensors";
const ADAPTER_CONFIG = "adapter_config.json";
const FLOAT_DTYPES = new Set(["F64", "F32", "F16", "BF16"]);

function checkOptions(options: FromPretrainedOptions): AdapterMode {
  if (options.isTrainable) {
    throw new UnsupportedError("isTrainable: true is not supported yet: peft-edge loads adapters for inference only");
  }
  const mode = options.mode ?? "merged";
  if (mode !== "merged") {
    throw new UnsupportedError(`mode ${JSON.stringify(mode)} is not supported; supported modes: "merged"`);
  }
  const name = options.adapterName ?? "default";
  if (typeof name !== "string" || name.length === 0) {
    throw new AdapterConfigError("adapterName must be a non-empty string", { key: "adapterName" });
  }
  return mode;
}

async function readConfig(source: FileSource, options: FromPretrainedOptions, warn: (m: string) => void): Promise<LoraConfig> {
  if (options.config) return parseLoraConfig(options.config, { file: "config option", onWarning: warn });
  // The text, not parsed JSON: rank/alpha pattern keys keep their file order (first match wins in PEFT).
  const text = new TextDecoder().decode(await source.read(ADAPTER_CONFIG));
  return parseLoraConfig(text, { file: ADAPTER_CONFIG, onWarning: warn });
}

async function readWeights(source: FileSource): Promise<Safetensors> {
  if (!await source.exists(ADAPTER_WEIGHTS) && await source.exists("adapter_model.bin")) {
    throw new FileNotFoundError(
      `${source.location} has only adapter_model.bin (a pickle file); peft-edge loads only adapter_model.safetensors and never runs pickle. ` +
        "Convert it with PEFT: PeftModel.from_pretrained(...).save_pretrained(dir, safe_serialization=True)",
      { file: ADAPTER_WEIGHTS },
    );
  }
  const weights = parseSafetensors(await source.read(ADAPTER_WEIGHTS), ADAPTER_WEIGHTS);
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
 * Applies a PEFT LoRA adapter (a folder, `file:` URL or Hub repo with
 * `adapter_config.json` and `adapter_model.safetensors`) to a base model,
 * like PEFT's `PeftModel.from_pretrained(model, model_id)`.
 *
 * @example
 * ```ts
 * import { fromPretrained, loadBaseModel, Tensor } from "../../mod.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const model = await fromPretrained(base, "tests/fixtures/llama-tiny-lora-qv", { adapterName: "default" });
 * console.log(model.peftConfig.default.r, model.inputNames);
 * ```
 */
export async function fromPretrained(
  base: BaseModel,
  adapter: PathOrSource,
  options: FromPretrainedOptions = {},
): Promise<PeftModel> {
  const mode = checkOptions(options);
  const adapterName = options.adapterName ?? "default";
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    (options.onWarning ?? console.warn)(message);
  };

  // resolve -> parse
  const source = await resolveSource(adapter, options);
  const config = await readConfig(source, options, warn);
  const weights = await readWeights(source);

  // plan: every check, nothing changed yet
  const plan = planAdapter(config, groupAdapterKeys(weights.names()), (k) => weights.info(k).shape, base.weights);
  if (plan.unmatchedKeys.length > 0) {
    warn(`${source.location}: ${plan.unmatchedKeys.length} adapter key(s) match no module of the base and were not applied: ${plan.unmatchedKeys.slice(0, 5).join(", ")}`);
  }
  if (plan.missingModules.length > 0) {
    warn(`${source.location}: the config targets ${plan.missingModules.length} base module(s) that have no adapter weights (missing keys): ${plan.missingModules.slice(0, 5).join(", ")}`);
  }

  // apply: merged copies of the targeted weights, then a new session
  const kernels = await loadKernels();
  const merged = mergePatches(plan.patches, { read: (name) => base.readWeight(name) }, (k) => weights.toFloat32(k), kernels, config.fanInFanOut);
  const patched = patchModel(base.onnx, base.weights, merged);
  const session = await createSession(patched, base.externalData, base.settings, base.file);

  const adapterParameters = weights.names().reduce((n, k) => n + weights.info(k).shape.reduce((a, b) => a * b, 1), 0);
  return new PeftModel(base, mode, { [adapterName]: config }, adapterName, adapterParameters, plan.unmatchedKeys, warnings, session);
}

PeftModel.fromPretrained = fromPretrained;
