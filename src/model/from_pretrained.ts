/**
 * `fromPretrained`: PEFT's `PeftModel.from_pretrained` for ONNX bases.
 * Reading and planning the adapter runs every check before anything is
 * built, and nothing shared with the base is mutated, so a failure leaves
 * every model as it was.
 * @module
 */
import { UnsupportedError } from "../errors.ts";
import type { PathOrSource } from "../storage/resolve.ts";
import { type AdapterOptions, readAdapter } from "./adapter.ts";
import type { BaseModel } from "./base_model.ts";
import { kernelsFor } from "./kernel_choice.ts";
import { mergedEngine } from "./merged_engine.ts";
import { type AdapterMode, PeftModel } from "./peft_model.ts";

/** Options of {@linkcode fromPretrained}, PEFT's `from_pretrained` arguments in camelCase. */
export interface FromPretrainedOptions extends AdapterOptions {
  /** Name the adapter is registered under (PEFT's `adapter_name`). Default `"default"`. */
  adapterName?: string;
  /** `"merged"`: merge each adapter into a session of its own. */
  mode?: AdapterMode;
}

const MODES: readonly AdapterMode[] = ["merged"];

/**
 * Applies a PEFT LoRA adapter (a folder, `file:` URL or Hub repo with
 * `adapter_config.json` and `adapter_model.safetensors`) to a base model,
 * like PEFT's `PeftModel.from_pretrained(model, model_id)`.
 *
 * @example
 * ```ts
 * import { fromPretrained, loadBaseModel } from "../../mod.ts";
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
  if (options.isTrainable) {
    throw new UnsupportedError("isTrainable: true is not supported yet: peft-edge loads adapters for inference only");
  }
  const mode = options.mode ?? "merged";
  if (!MODES.includes(mode)) {
    throw new UnsupportedError(`mode ${JSON.stringify(mode)} is not supported; supported modes: ${MODES.map((m) => `"${m}"`).join(", ")}`);
  }
  const loaded = await readAdapter(base.weights, adapter, options.adapterName ?? "default", options);
  const kernels = await kernelsFor(base);
  try {
    const engine = await mergedEngine(base, kernels.merger).add(loaded);
    return new PeftModel(base, mode, engine, loaded, kernels);
  } catch (error) {
    kernels.release();
    throw error;
  }
}

PeftModel.fromPretrained = fromPretrained;
