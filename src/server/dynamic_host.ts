/**
 * An {@linkcode AdapterHost} in dynamic mode: one `PeftModel` whose single
 * branched session serves the base and every adapter; a request picks its
 * adapter per run. An adapter costs only its own tensors, not a model copy.
 * @module
 */
import { type GenerateOptions, type GenerationConfig, stream, type TokenizerLike } from "../generate/mod.ts";
import type { BaseModel } from "../model/base_model.ts";
import { fromPretrained } from "../model/from_pretrained.ts";
import type { PeftModel } from "../model/peft_model.ts";
import { runQueue } from "../model/model_session.ts";
import type { AdapterHost, HostedAdapter } from "./host.ts";
import { openLocation } from "./open_location.ts";

/** An adapter loaded into the shared model under a host-chosen key. */
class DynamicAdapter implements HostedAdapter {
  constructor(
    readonly model: PeftModel,
    readonly key: string,
    readonly bytes: number,
    readonly release: () => Promise<void>,
  ) {}
}

/** Options of {@linkcode dynamicHost}. */
export interface DynamicHostOptions {
  /** Defaults for generation (usually the base's `generation_config.json`). */
  generationConfig?: GenerationConfig;
  /**
   * Modules given LoRA branches up front, so loading adapters never rewrites
   * the graph while requests run. Default `"all-linear"`.
   */
  prepareModules?: readonly string[] | "all-linear";
}

/**
 * A host that keeps every adapter unmerged in one shared model.
 *
 * @example
 * ```ts
 * import { dynamicHost } from "./dynamic_host.ts";
 * import { loadBaseModel } from "../model/base_model.ts";
 * import { loadTokenizer } from "../tokenizer/mod.ts";
 * const base = await loadBaseModel("examples/demo/byte-llama");
 * const host = dynamicHost(base, await loadTokenizer(base.source));
 * const python = await host.load({ kind: "local", path: "examples/demo/byte-llama-python-lora" }, { name: "python" });
 * ```
 */
export function dynamicHost(base: BaseModel, tokenizer: TokenizerLike, options: DynamicHostOptions = {}): AdapterHost {
  // The shared model is created by the first load; loads are serialized so two first loads cannot race.
  let model: PeftModel | undefined;
  let next = 0;
  const loads = runQueue();
  // Requests name their adapter on every run, so which one is "active" never matters; but the model
  // refuses to delete its active adapter, so hand that role to another first. The last one frees the
  // whole model; the next load builds a new one.
  const unload = async (owner: PeftModel, key: string) => {
    const others = owner.listAdapters().filter((name) => name !== key);
    if (others.length === 0) {
      if (model === owner) model = undefined;
      await owner.release();
      return;
    }
    if (owner.activeAdapter === key) owner.setAdapter(others[0]);
    await owner.deleteAdapter(key);
  };
  return {
    tokenizer,
    load(location, loadOptions) {
      return loads.push(async () => {
        const files = await openLocation(location, loadOptions);
        const key = `adapter-${next++}`;
        const common = { onWarning: loadOptions.onWarning ?? (() => {}) };
        if (model) {
          await model.loadAdapter(files, key, common);
        } else {
          model = await fromPretrained(base, files, {
            ...common,
            adapterName: key,
            mode: "dynamic",
            prepareModules: options.prepareModules ?? "all-linear",
          });
        }
        // float32 adapter tensors, plus their concatenated feed copies.
        const bytes = 2 * 4 * model.adapterParameters(key);
        const owner = model;
        return new DynamicAdapter(owner, key, bytes, () => loads.push(() => unload(owner, key)));
      });
    },
    stream(adapter, prompt, generateOptions: GenerateOptions) {
      if (adapter !== null && !(adapter instanceof DynamicAdapter)) {
        throw new TypeError("the adapter was not loaded by this host");
      }
      const lm = adapter?.model ?? model ?? base;
      return stream(lm, tokenizer, prompt, {
        generationConfig: options.generationConfig,
        ...generateOptions,
        // Every run names its adapter (or none): the shared model's active adapters never matter.
        adapter: adapter?.key ?? null,
      });
    },
  };
}
