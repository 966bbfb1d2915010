/**
 * {@linkcode SharedModel}: the one `PeftModel` that holds every adapter of a
 * pool, in either mode (dynamic: one branched session shared by all;
 * merged: one merged session per adapter). `PeftModel` needs an adapter to
 * be created with, so the model is created by the
 * first load and released with the last adapter; the next load makes a new
 * one. Adapters get model-unique keys, so a name can be loaded again while
 * a deleted adapter of that name still finishes a request.
 * @module
 */
import type { BaseModel } from "../model/base_model.ts";
import { fromPretrained } from "../model/from_pretrained.ts";
import { runQueue } from "../model/model_session.ts";
import { isPromptLearning } from "../tuners/prompt_learning/config.ts";
import type { AdapterMode, PeftModel } from "../model/peft_model.ts";
import type { FileSource } from "../storage/file_source.ts";

/**
 * An adapter loaded into the shared model.
 *
 * @example
 * ```ts
 * import type { ModelAdapter } from "./shared_model.ts";
 * declare const adapter: ModelAdapter;
 * await adapter.model.generate("def ", { adapter: adapter.key, maxNewTokens: 8 });
 * ```
 */
export interface ModelAdapter {
  /** The model holding it. */
  readonly model: PeftModel;
  /** Its name inside the model (`adapter` option of runs). */
  readonly key: string;
  /** Memory it holds, in bytes, as counted against a pool's byte limit. */
  readonly bytes: number;
}

/**
 * Options of {@linkcode SharedModel}.
 *
 * @example
 * ```ts
 * import type { SharedModelOptions } from "./shared_model.ts";
 * const options: SharedModelOptions = { mode: "merged" };
 * ```
 */
export interface SharedModelOptions {
  /** `"dynamic"` (default) or `"merged"`; see `AdapterMode`. */
  mode?: AdapterMode;
  /**
   * Dynamic mode: modules given LoRA branches up front, so loading adapters
   * never rewrites the graph while requests run. Default `"all-linear"`.
   */
  prepareModules?: readonly string[] | "all-linear";
}

/**
 * Many adapters on one base, in one `PeftModel`; loads and unloads run one
 * at a time.
 *
 * @example
 * ```ts
 * import { SharedModel } from "./shared_model.ts";
 * import { loadBaseModel } from "../model/base_model.ts";
 * import { localSource } from "../storage/local.ts";
 * const base = await loadBaseModel("examples/demo/byte-llama");
 * const shared = new SharedModel(base);
 * const python = await shared.load(localSource("examples/demo/byte-llama-python-lora"));
 * await shared.unload(python);
 * ```
 */
export class SharedModel {
  /** How adapters are applied. */
  readonly mode: AdapterMode;
  readonly #base: BaseModel;
  readonly #prepareModules: readonly string[] | "all-linear";
  readonly #changes = runQueue();
  #model?: PeftModel;
  #next = 0;

  /** A shared model over `base`; nothing is built until the first load. */
  constructor(base: BaseModel, options: SharedModelOptions = {}) {
    this.#base = base;
    this.mode = options.mode ?? "dynamic";
    this.#prepareModules = options.prepareModules ?? "all-linear";
  }

  /** The model holding the adapters now (undefined until the first load and after the last unload). */
  get current(): PeftModel | undefined {
    return this.#model;
  }

  /** Loads an adapter's files. A failure leaves the model and every loaded adapter as they were. */
  load(files: FileSource, onWarning: (message: string) => void = () => {}): Promise<ModelAdapter> {
    return this.#changes.push(async () => {
      const key = `adapter-${this.#next++}`;
      if (this.#model) {
        await this.#model.loadAdapter(files, key, { onWarning });
      } else {
        this.#model = await fromPretrained(this.#base, files, {
          onWarning,
          adapterName: key,
          mode: this.mode,
          prepareModules: this.#prepareModules,
        });
      }
      const model = this.#model;
      const parameters = model.adapterParameters(key);
      // Dynamic: float32 adapter tensors plus their concatenated feed copies. Merged: a float32 copy of the
      // base's parameters in the adapter's own session, plus the adapter's. A prompt-learning adapter is fed in
      // either mode (its prompt and the per-run copy), never merged.
      const fed = this.mode === "dynamic" || isPromptLearning(model.peftConfig[key]);
      const bytes = fed ? 2 * 4 * parameters : 4 * (this.#base.numParameters() + parameters);
      return { model, key, bytes };
    });
  }

  /** Removes an adapter no request uses any more; the last one frees the whole model. */
  unload(adapter: ModelAdapter): Promise<void> {
    return this.#changes.push(async () => {
      const { model, key } = adapter;
      const others = model.listAdapters().filter((name) => name !== key);
      if (others.length === 0) {
        if (this.#model === model) this.#model = undefined;
        await model.release();
        return;
      }
      // Every run names its adapter, so which one is active never matters; activating another first spares
      // deleteAdapter's "active adapter deleted" warning.
      if (model.activeAdapters.includes(key)) model.setAdapter(others[0]);
      await model.deleteAdapter(key);
    });
  }
}
