/**
 * `fromPretrained`: PEFT's `PeftModel.from_pretrained` for ONNX bases.
 * Reading and planning the adapter runs every check before anything is
 * built, and nothing shared with the base is mutated, so a failure leaves
 * every model as it was.
 * @module
 */
import { UnsupportedError } from "../errors.ts";
import type { PathOrSource } from "../hub/resolve.ts";
import { readAdapterFor } from "./any_adapter.ts";
import type { AdapterOptions } from "./adapter.ts";
import type { BaseModel } from "./base_model.ts";
import { dynamicEngine } from "./dynamic_engine.ts";
import { mergedEngine } from "./merged.ts";
import { withPromptLearning } from "./prompt_engine.ts";
import { trainableAdapter } from "./training.ts";
import { type AdapterMode, PeftModel } from "./peft_model.ts";

/** Options of {@linkcode fromPretrained}, PEFT's `from_pretrained` arguments in camelCase. */
export interface FromPretrainedOptions extends AdapterOptions {
  /** Name the adapter is registered under (PEFT's `adapter_name`). Default `"default"`. */
  adapterName?: string;
  /**
   * `"dynamic"` (default, as PEFT keeps adapters unmerged): one session with
   * LoRA side branches serves every adapter, chosen per run. `"merged"`:
   * each adapter merged into a session of its own (exact, fastest to run,
   * a full weight copy per adapter; needed for `modules_to_save`, trained
   * biases and `lora_bias`).
   */
  mode?: AdapterMode;
  /**
   * Dynamic mode: modules to give LoRA branches up front (e.g. every linear
   * module, so a server never rewrites the graph when new adapters arrive).
   * `"all-linear"` means every linear module except the output layer.
   */
  prepareModules?: readonly string[] | "all-linear";
}

const MODES: readonly AdapterMode[] = ["dynamic", "merged"];

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
 * console.log(model.peftConfig.default.peftType, model.inputNames);
 * ```
 */
export async function fromPretrained(
  base: BaseModel,
  adapter: PathOrSource,
  options: FromPretrainedOptions = {},
): Promise<PeftModel> {
  const mode = options.mode ?? "dynamic";
  if (options.isTrainable && mode !== "dynamic") {
    throw new UnsupportedError(`isTrainable: true trains unmerged adapters; use mode "dynamic", not "${mode}"`, {
      key: "mode",
    });
  }
  if (!MODES.includes(mode)) {
    throw new UnsupportedError(
      `mode ${JSON.stringify(mode)} is not supported; supported modes: ${MODES.map((m) => `"${m}"`).join(", ")}`,
    );
  }
  // Reading the adapter and building sessions may read base weights: they are in memory for this call only.
  return await base.withWeights(async () => {
    const loaded = await readAdapterFor(base, adapter, options.adapterName ?? "default", options, mode);
    // The base's kernels, created by its first adapter and shared by the rest.
    const { merger } = await base.kernels();
    const empty = withPromptLearning(
      base,
      mode === "merged"
        ? mergedEngine(base)
        : await dynamicEngine(base, { prepareModules: preparedModules(base, options.prepareModules) }),
    );
    const engine = await empty.add(loaded);
    const trainable = options.isTrainable ? await trainableAdapter(base, loaded) : undefined;
    return new PeftModel(base, mode, engine, loaded, merger.backend, trainable);
  });
}

function preparedModules(base: BaseModel, wanted: FromPretrainedOptions["prepareModules"]): readonly string[] {
  if (wanted !== "all-linear") return wanted ?? [];
  // PEFT's "all-linear" leaves out the output layer.
  return base.weights.modules.filter((m) =>
    base.weights.get(m)!.kind === "linear" && m !== "lm_head" && !m.endsWith(".lm_head")
  );
}
