/**
 * The {@linkcode AdapterHost} for merged mode: every adapter is merged into
 * a session of its own with `fromPretrained`, and generation runs on the
 * base or on that adapter's `PeftModel`. Switching the service to one model
 * holding many adapters means replacing this file only.
 * @module
 */
import { type GenerateOptions, type GenerationConfig, stream, type TokenizerLike } from "../generate/mod.ts";
import type { BaseModel } from "../model/base_model.ts";
import { fromPretrained } from "../model/from_pretrained.ts";
import type { PeftModel } from "../model/peft_model.ts";
import type { AdapterHost, HostedAdapter } from "./host.ts";
import { openLocation } from "./open_location.ts";

/** An adapter merged into its own session. */
class MergedAdapter implements HostedAdapter {
  constructor(readonly model: PeftModel, readonly bytes: number) {}

  release(): Promise<void> {
    return this.model.release();
  }
}

/**
 * Options of {@linkcode mergedHost}.
 *
 * @example
 * ```ts
 * import type { MergedHostOptions } from "./merged_host.ts";
 * const options: MergedHostOptions = { generationConfig: { maxNewTokens: 64 } };
 * ```
 */
export interface MergedHostOptions {
  /** Defaults for generation (usually the base's `generation_config.json`). */
  generationConfig?: GenerationConfig;
}

/**
 * A host that merges each adapter into a session of its own. An adapter
 * counts as 4 bytes per float parameter of the base plus the adapter's own
 * parameters: its session holds a full float32 copy of the model.
 *
 * @example
 * ```ts
 * import { mergedHost } from "./merged_host.ts";
 * import { loadBaseModel } from "../model/base_model.ts";
 * import { loadTokenizer } from "../tokenizer/mod.ts";
 * const base = await loadBaseModel("examples/demo/byte-llama");
 * const host = mergedHost(base, await loadTokenizer(base.source));
 * const python = await host.load({ kind: "local", path: "examples/demo/byte-llama-python-lora" }, { name: "python" });
 * ```
 */
export function mergedHost(base: BaseModel, tokenizer: TokenizerLike, options: MergedHostOptions = {}): AdapterHost {
  return {
    tokenizer,
    async load(location, loadOptions) {
      const files = await openLocation(location, loadOptions);
      const model = await fromPretrained(base, files, {
        adapterName: loadOptions.name,
        mode: "merged",
        onWarning: loadOptions.onWarning ?? (() => {}),
      });
      const [, parameters] = model.getNbTrainableParameters(); // the base's plus the adapter's
      return new MergedAdapter(model, 4 * parameters);
    },
    stream(adapter, prompt, generateOptions: GenerateOptions) {
      let model: BaseModel | PeftModel = base;
      if (adapter !== null) {
        if (!(adapter instanceof MergedAdapter)) throw new TypeError("the adapter was not loaded by this host");
        model = adapter.model;
      }
      return stream(model, tokenizer, prompt, {
        generationConfig: options.generationConfig,
        ...generateOptions,
      });
    },
  };
}
