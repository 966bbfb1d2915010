/**
 * `PeftModel`: a base model with LoRA adapters, the edge counterpart of
 * PEFT's `PeftModel`. Holds any number of adapters, runs with the active
 * ones (or the ones a run names), and merges on request.
 * @module
 */
import type { LoraConfig } from "../config/mod.ts";
import type { TunerConfig } from "../tuners/config.ts";
import { isPromptLearning, type PromptLearningConfig } from "../tuners/prompt_learning/config.ts";
import type { InferenceSession } from "../deps/ort.ts";
import { AdapterConfigError, UnsupportedError } from "../errors.ts";
import type { BatchGenerateOptions, GenerateOptions, GenerationResult, Prompt } from "../generate/mod.ts";
import type { FileSource } from "../storage/file_source.ts";
import { type AdapterOptions, checkAdapterName, type LoadedAdapter, loraConfigOf } from "./adapter.ts";
import { readAdapterFor } from "./any_adapter.ts";
import type { BaseModel, Feeds, Outputs } from "./base_model.ts";
import type { AdapterEngine, WeightedAdapter } from "./engine.ts";
import { mergedBase } from "./merged.ts";
import { runQueue } from "./model_session.ts";
import { generateText, generateTextBatch, streamText } from "./text.ts";
import type { Device } from "../webgpu/device.ts";
import { localFs } from "../runtime/fs.ts";
import { parseSafetensors } from "../safetensors/mod.ts";
import type { TrainBatch } from "../train/batch.ts";
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  adapterConfigText,
  adapterWeightsBytes,
} from "../train/peft_format.ts";
import type { TrainableAdapter } from "../train/trainable.ts";
import { resolveTrainerOptions, Trainer, type TrainerOptions } from "../train/trainer.ts";
import { checkTokensBesideLora } from "../lora/token_rules.ts";
import { checkSameTargetParameters, targetParametersOf } from "../lora/param_targets.ts";
import { baseTargetWeight } from "./base_weight.ts";
import { isTunerType, TUNER_METHODS } from "../tuners/methods.ts";
import { parameterCount } from "../tuners/read.ts";
import { weightedAdapter, type WeightedAdapterOptions } from "../lora/weighted.ts";
import { serializeSafetensors } from "../safetensors/write.ts";
import { memorySource } from "../storage/memory.ts";

/**
 * How adapters are applied. `"dynamic"` (the default, as in PEFT) keeps them
 * unmerged beside the base weights, so many adapters share one session and a
 * run picks any of them; `"merged"` merges each adapter into a session of its own.
 */
export type AdapterMode = "merged" | "dynamic";

/** A run's options: onnxruntime's `RunOptions` plus the adapter(s) to use. */
export interface PeftRunOptions extends InferenceSession.RunOptions {
  /**
   * Adapter name, names (their deltas add up), or `null` for the base alone.
   * Default: the active adapters (none while `disableAdapter()` is in effect).
   */
  adapter?: string | readonly string[] | null;
  /**
   * A mixed batch (PEFT's `adapter_names`): one adapter name per batch row,
   * {@linkcode BASE_ADAPTER} for a row without adapters. Not with `adapter`.
   */
  adapterNames?: readonly string[];
  /**
   * The token ids of the generation's prompt per row, where the run is one
   * step of a generation: activated LoRA finds its invocation there (PEFT's
   * `generate` computes `alora_offsets` once from the prompt), not in the
   * step's `input_ids`.
   */
  promptIds?: readonly (readonly number[])[];
}

/** The row name that runs a row of a mixed batch without adapters (PEFT's `"__base__"`). */
export const BASE_ADAPTER = "__base__";

/** Options of `mergeAndUnload` (PEFT's `merge_and_unload`). */
export interface MergeOptions {
  /** Adapters to merge; default the active ones. */
  adapterNames?: readonly string[];
  /** Check merged weights for NaN/infinity before returning (PEFT's `safe_merge`). */
  safeMerge?: boolean;
}

/** Loaded adapters by name (each one adapter with weight 1; several names run together add up). */
type Registry = ReadonlyMap<string, readonly WeightedAdapter[]>;

/**
 * A base model with adapters. Create it with `fromPretrained`; free it with
 * `release()` or `await using`.
 *
 * @example
 * ```ts
 * import { fromPretrained, loadBaseModel } from "../../mod.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const model = await fromPretrained(base, "tests/fixtures/llama-tiny-lora-qv");
 * await model.loadAdapter("tests/fixtures/llama-tiny-lora-mlp-b", "mlp");
 * model.setAdapter(["default", "mlp"]);
 * model.printTrainableParameters();
 * await model.release();
 * ```
 */
export class PeftModel implements AsyncDisposable {
  #engine: AdapterEngine;
  #registry: Registry;
  #active: readonly string[];
  #disabled = 0;
  readonly #mergeBackend: string;
  /** The adapter being trained (loaded with `isTrainable: true`). */
  readonly #trainable?: { adapter: TrainableAdapter; name: string; config: Readonly<Record<string, unknown>> };
  /** The trainable adapter's version the inference engine runs. */
  #servedVersion = 0;
  /** Loads and deletes run one at a time: each builds on the engine the previous one committed. */
  readonly #changes = runQueue();

  /** @internal Use `fromPretrained`. */
  constructor(
    /** The base model; adapters never change it. */
    readonly base: BaseModel,
    /** How adapters are applied. */
    readonly mode: AdapterMode,
    engine: AdapterEngine,
    first: LoadedAdapter,
    /** The base's merge kernels' backend (see {@linkcode PeftModel.mergeBackend}). */
    mergeBackend: string,
    /** The first adapter's trainable tensors, when loaded with `isTrainable: true`. */
    trainable?: TrainableAdapter,
  ) {
    this.#engine = engine;
    this.#registry = new Map([[first.name, [{ adapter: first, weight: 1 }]]]);
    this.#active = [first.name];
    this.#mergeBackend = mergeBackend;
    if (trainable) this.#trainable = { adapter: trainable, name: first.name, config: trainable.config };
  }

  /** Names of the model's inputs (the base's). */
  get inputNames(): readonly string[] {
    return this.base.inputNames;
  }

  /** Where this model runs (the base's device). */
  get device(): Device {
    return this.base.device;
  }

  /** Which kernels merge this model's weights: `"wasm-simd"`, `"js"` or `"webgpu"`. */
  get mergeBackend(): string {
    return this.#mergeBackend;
  }

  /** Names of the model's outputs (the base's). */
  get outputNames(): readonly string[] {
    return this.base.outputNames;
  }

  /** The base's parsed `config.json`. */
  get config(): Readonly<Record<string, unknown>> {
    return this.base.config;
  }

  /** Parsed PEFT config of each loaded adapter, by name. */
  get peftConfig(): Readonly<Record<string, LoraConfig | TunerConfig | PromptLearningConfig>> {
    return Object.fromEntries([...this.#loaded()].map((a) => [a.name, a.config]));
  }

  /** The first active adapter's name (PEFT's `active_adapter`). */
  get activeAdapter(): string {
    return this.#active[0];
  }

  /** Every active adapter's name (PEFT's `active_adapters`). */
  get activeAdapters(): readonly string[] {
    return this.#active;
  }

  /** Adapter keys that matched no module of the base, over all loaded adapters (PEFT's unexpected keys). */
  get unmatchedKeys(): readonly string[] {
    return [...this.#loaded()].flatMap((a) => a.plan.unmatchedKeys);
  }

  /** Warnings raised while loading adapters (also passed to `onWarning`). */
  get warnings(): readonly string[] {
    return [...this.#loaded()].flatMap((a) => a.warnings);
  }

  /** Number of parameters in a loaded adapter's tensors. */
  adapterParameters(name: string): number {
    const parts = this.#registry.get(name);
    if (!parts) {
      throw new AdapterConfigError(`no adapter named ${name}; loaded: ${this.listAdapters().join(", ")}`, {
        key: name,
      });
    }
    return parts.reduce((n, p) => n + p.adapter.parameters, 0);
  }

  /** Names of loaded adapters and weighted combinations. */
  listAdapters(): string[] {
    return [...this.#registry.keys()];
  }

  /**
   * Runs the model exactly like `InferenceSession.run`, with the active
   * adapters or those named in `options.adapter`. Each run reads the model's
   * state once, so concurrent runs with different adapters do not interfere.
   * With a prompt-learning adapter the feeds hold the real tokens only, as in
   * PEFT: an empty past gets the prompt (prompt/P-tuning: its logits come
   * first in `logits`) or the prefix; a non-empty past is a decode step.
   */
  async run(feeds: Feeds, options: PeftRunOptions = {}): Promise<Outputs> {
    const { adapter, adapterNames, promptIds, ...runOptions } = options;
    const { session, feeds: extra, prepare } = adapterNames === undefined
      ? this.#engine.runnable(this.#resolve(adapter))
      : this.#rowsRunnable(feeds, adapterNames, adapter);
    return await session.run({ ...(prepare ? prepare(feeds, promptIds) : feeds), ...await extra }, runOptions);
  }

  /**
   * Generates for several prompts in one batch (left-padded), each row with
   * its own adapter (`options.adapterNames`, one per prompt, `"__base__"` for
   * none) or all with `options.adapter`; each row stops on its own eos, stop
   * string or length. Greedy results equal each prompt generated alone.
   *
   * @example
   * ```ts
   * import { fromPretrained, loadBaseModel } from "../../mod.ts";
   * const base = await loadBaseModel("examples/demo/byte-llama");
   * const model = await fromPretrained(base, "examples/demo/byte-llama-python-lora");
   * const [a, b] = await model.generateBatch(["def ", "The "], { maxNewTokens: 20, adapterNames: ["default", "__base__"] });
   * ```
   */
  generateBatch(prompts: readonly Prompt[], options?: BatchGenerateOptions): Promise<GenerationResult[]> {
    return generateTextBatch(this, this.base.text, prompts, this.#pinAdapter(options));
  }

  #rowsRunnable(feeds: Feeds, names: readonly string[], adapter: PeftRunOptions["adapter"]) {
    if (adapter !== undefined) {
      throw new AdapterConfigError("give either adapter or adapterNames, not both", { key: "adapterNames" });
    }
    const rows = feeds.input_ids?.dims[0] ?? Object.values(feeds)[0]?.dims[0];
    if (!Array.isArray(names) || names.length === 0 || (rows !== undefined && names.length !== rows)) {
      throw new AdapterConfigError(
        `adapterNames needs one name per batch row (${rows ?? "?"} rows), got ${
          Array.isArray(names) ? names.length : names
        }`,
        { key: "adapterNames" },
      );
    }
    const sets = names.map((name) => name === BASE_ADAPTER ? [] : this.#components([name]));
    if (names.every((n) => n === names[0])) return this.#engine.runnable(sets[0]);
    const wrapper = sets.flat().find(({ adapter }) => targetParametersOf(adapter.config) !== null);
    if (wrapper) {
      // ParamWrapper._check_forward_args: PEFT changes the parameter itself, for every row alike.
      throw new UnsupportedError(
        `lora.ParamWrapper does not support mixed adapter batches yet (as PEFT says; ${wrapper.adapter.name} ` +
          "uses target_parameters): run its rows in a batch of their own",
        { key: "adapterNames" },
      );
    }
    if (!this.#engine.rowsRunnable) {
      throw new UnsupportedError(
        'mixed-adapter batches need mode "dynamic" (merged mode runs one adapter per session)',
        {
          key: "adapterNames",
        },
      );
    }
    return this.#engine.rowsRunnable(sets);
  }

  /**
   * Generates text with the active adapters (or `options.adapter`), using the
   * base's tokenizer and generation defaults.
   *
   * @example
   * ```ts
   * import { fromPretrained, loadBaseModel } from "../../mod.ts";
   * const base = await loadBaseModel("examples/demo/byte-llama");
   * const model = await fromPretrained(base, "examples/demo/byte-llama-python-lora");
   * const { text } = await model.generate("def ", { maxNewTokens: 40 });
   * ```
   */
  generate(prompt: Prompt, options?: GenerateOptions): Promise<GenerationResult> {
    return generateText(this, this.base.text, prompt, this.#pinAdapter(options));
  }

  /** Streams generated text in pieces that never split a character. */
  stream(prompt: Prompt, options?: GenerateOptions): AsyncGenerator<string, GenerationResult, undefined> {
    return streamText(this, this.base.text, prompt, this.#pinAdapter(options));
  }

  /**
   * Loads another adapter under `adapterName` without activating it (as in
   * PEFT). A failed load leaves the model exactly as it was.
   */
  loadAdapter(adapter: string | FileSource, adapterName: string, options: AdapterOptions = {}): Promise<void> {
    return this.#changes.push(() => this.#loadAdapter(adapter, adapterName, options));
  }

  async #loadAdapter(adapter: string | FileSource, adapterName: string, options: AdapterOptions): Promise<void> {
    checkAdapterName(adapterName);
    if (this.#registry.has(adapterName)) {
      throw new AdapterConfigError(`an adapter named ${adapterName} is already loaded; delete it first`, {
        key: "adapterName",
      });
    }
    if (options.isTrainable) {
      throw new UnsupportedError("isTrainable: true is not supported yet: adapters load for inference only");
    }
    const previous = this.#engine;
    const { loaded, engine } = await this.base.withWeights(async () => {
      const loaded = await readAdapterFor(this.base, adapter, adapterName, options, this.mode);
      checkTokensBesideLora(this.#loaded(), loaded);
      checkSameTargetParameters(
        targetParametersOf(loaded.config),
        [...this.#loaded()].map((a) => [a.name, targetParametersOf(a.config)] as const),
      );
      return { loaded, engine: await previous.add(loaded) };
    });
    // Commit only after everything succeeded.
    this.#engine = engine;
    this.#registry = new Map([...this.#registry, [adapterName, [{ adapter: loaded, weight: 1 }]]]);
    // A session the new engine dropped (graph rewritten) is freed once its queued runs finish.
    const kept = new Set(engine.sessions());
    await Promise.all(previous.sessions().filter((s) => !kept.has(s)).map((s) => s.release()));
  }

  /** Makes these adapters the active ones (PEFT's `set_adapter`); several add up. */
  setAdapter(names: string | readonly string[]): void {
    const list = typeof names === "string" ? [names] : [...names];
    if (list.length === 0) {
      throw new AdapterConfigError("setAdapter needs at least one adapter name", { key: "adapter" });
    }
    this.#engine.runnable(this.#components(list)); // validates (e.g. merged mode takes one) before committing
    this.#active = list;
  }

  /**
   * Turns adapters off until the returned handle is disposed (PEFT's
   * `disable_adapter()` context manager); usable with `using`.
   *
   * @example
   * ```ts
   * // { using _off = model.disableAdapter(); await model.run(feeds); } // base outputs
   * ```
   */
  disableAdapter(): Disposable & { enable(): void } {
    this.#disabled++;
    let done = false;
    const enable = () => {
      if (!done) {
        done = true;
        this.#disabled--;
      }
    };
    return { enable, [Symbol.dispose]: enable };
  }

  /**
   * Removes an adapter (PEFT's `delete_adapter`). Deleting an active adapter
   * does what PEFT does: the other active ones stay active; if none is left,
   * the first remaining adapter by name becomes active (with a warning), and
   * with no adapter left the model runs the base. Weighted adapters are
   * adapters of their own, so their sources can be deleted.
   */
  deleteAdapter(name: string): Promise<void> {
    return this.#changes.push(async () => {
      if (!this.#registry.has(name)) {
        throw new AdapterConfigError(`no adapter named ${name}; loaded: ${this.listAdapters().join(", ")}`, {
          key: name,
        });
      }
      const registry = new Map(this.#registry);
      registry.delete(name);
      let active = this.#active.filter((a) => a !== name);
      if (active.length === 0 && this.#active.includes(name)) {
        // BaseTunerLayer.delete_adapter: `sorted(remaining adapter names)[0]`.
        const remaining = [...registry.keys()].sort();
        active = remaining.slice(0, 1);
        if (remaining.length > 0) {
          console.warn(`Adapter ${name} was active which is now deleted. Setting active adapter to ${remaining[0]}.`);
        }
      }
      const { engine, retired } = this.#engine.remove(name);
      this.#engine = engine;
      this.#registry = registry;
      this.#active = active;
      await Promise.all(retired.map((s) => s.release()));
    });
  }

  /**
   * Adds a new adapter made from loaded ones (PEFT's `add_weighted_adapter`,
   * same combination types and defaults: `"svd"` unless `combinationType`
   * says otherwise; see {@linkcode WeightedAdapterOptions}). The result is
   * an ordinary adapter, usable in both modes, and independent of its
   * sources (they can be deleted). It is not activated.
   *
   * @example
   * ```ts
   * import { fromPretrained, loadBaseModel } from "../../mod.ts";
   * const base = await loadBaseModel("tests/fixtures/llama-tiny");
   * const model = await fromPretrained(base, "tests/fixtures/llama-tiny-lora-qv");
   * await model.loadAdapter("tests/fixtures/llama-tiny-lora-mlp-b", "mlp");
   * await model.addWeightedAdapter(["default", "mlp"], [0.7, 0.3], "mix", { combinationType: "cat" });
   * model.setAdapter("mix");
   * ```
   */
  addWeightedAdapter(
    adapters: readonly string[],
    weights: readonly number[],
    adapterName: string,
    options: WeightedAdapterOptions = {},
  ): Promise<void> {
    return this.#changes.push(async () => {
      checkAdapterName(adapterName);
      if (adapters.length === 0 || adapters.length !== weights.length || !weights.every(Number.isFinite)) {
        throw new AdapterConfigError(
          "adapters and weights must be non-empty lists of equal length with finite weights",
          { key: "weights" },
        );
      }
      if (this.#registry.has(adapterName)) {
        throw new AdapterConfigError(`an adapter named ${adapterName} is already loaded`, { key: "adapterName" });
      }
      const sources = adapters.map((name) => {
        const parts = this.#components([name]);
        if (parts.length !== 1 || parts[0].weight !== 1) throw new Error(`internal: ${name} is not one adapter`);
        const { adapter } = parts[0];
        return {
          name,
          config: loraConfigOf(adapter, "addWeightedAdapter"),
          patches: adapter.plan.patches,
          tokens: adapter.plan.tokens,
          read: (key: string) => adapter.weights.toFloat32(key),
        };
      });
      const result = await this.base.withWeights(() =>
        weightedAdapter(sources, weights, options, (target) => baseTargetWeight(this.base, target))
      );
      const files = {
        "adapter_config.json": new TextEncoder().encode(JSON.stringify(result.config)),
        "adapter_model.safetensors": serializeSafetensors(result.tensors, { format: "pt" }),
      };
      const location = `add_weighted_adapter(${adapters.join(", ")}; ${result.combinationType})`;
      // Modules of the union of targets that no source adapts get no tensors: PEFT's zero factors there.
      await this.#loadAdapter(memorySource(location, files), adapterName, { onWarning: () => {} });
    });
  }

  /**
   * Merges adapters into a new base model (PEFT's `merge_and_unload`); this
   * model and its base stay usable. Into a quantized base, the merged weights
   * are quantized again in the file's own format (as PEFT merges into
   * bitsandbytes layers), so the new base is quantized the same way.
   */
  async mergeAndUnload(options: MergeOptions = {}): Promise<BaseModel> {
    const components = this.#components(options.adapterNames ?? this.#active);
    if (components.length === 0) {
      throw new AdapterConfigError("no adapter to merge: none is active and none was named", { key: "adapterNames" });
    }
    return await mergedBase(this.base, components, { safeMerge: options.safeMerge });
  }

  /** The base model without adapters (PEFT's `unload`); this model stays usable. */
  unload(): BaseModel {
    return this.base;
  }

  /**
   * PEFT's `get_nb_trainable_parameters()`: `[trainable, all]`. As in PEFT,
   * adapters loaded for inference are frozen, so trainable is 0; all counts
   * the base's float parameters plus every loaded adapter's.
   */
  getNbTrainableParameters(): [trainable: number, all: number] & { trainable: number; all: number } {
    // Tensors the plan applies (PEFT's parameters), not copies of base weights saved beside them.
    const size = (a: LoadedAdapter, key: string) => a.weights.info(key).shape.reduce((x, y) => x * y, 1);
    const adapters = [...this.#loaded()].reduce(
      (n, a) =>
        n + (a.saved && isTunerType(a.config.peftType)
          // A non-LoRA method's parameters are its layers' (factors, not the weights they make).
          ? parameterCount(a.saved, TUNER_METHODS[a.config.peftType])
          // A prompt-learning adapter's parameters are its prompt encoder's embedding (what PEFT counts).
          : (isPromptLearning(a.config) ? a.parameters : 0) +
            (a.plan.scales ?? []).reduce((m, s) => m + size(a, s.key), 0) +
            // Trainable tokens' delta rows (a tied lm_head shares the embedding's).
            [...new Set(a.plan.tokens.map((t) => t.key))].reduce((m, key) => m + size(a, key), 0) +
            a.plan.patches.reduce((m, p) =>
              m + (p.kind === "replace"
                ? size(a, p.key)
                : [p.a, p.b, p.bias, p.magnitudeFromBase ? undefined : p.magnitude].reduce((k, key) =>
                  k + (key ? size(a, key) : 0), p.magnitudeFromBase ? p.target.outFeatures : 0)), 0)),
      0,
    );
    const trainable = this.#trainable?.adapter.params.tensors.reduce((n, t) => n + t.data.length, 0) ?? 0;
    const all = this.base.numParameters() + adapters;
    return Object.assign([trainable, all] as [number, number], { trainable, all });
  }

  /** Whether this model was loaded with `isTrainable: true`. */
  get isTrainable(): boolean {
    return this.#trainable !== undefined;
  }

  #trained(what: string): TrainableAdapter {
    if (!this.#trainable) {
      throw new UnsupportedError(`${what} needs a model loaded with isTrainable: true (or made by createAdapter)`, {
        key: "isTrainable",
      });
    }
    return this.#trainable.adapter;
  }

  /**
   * A trainer for the trainable adapter (HF Trainer semantics; see
   * {@linkcode TrainerOptions}). After each update, runs and generation
   * use the new weights.
   *
   * @example
   * ```ts
   * import { fromPretrained, loadBaseModel } from "../../mod.ts";
   * const base = await loadBaseModel("tests/fixtures/llama-tiny");
   * const model = await fromPretrained(base, "tests/fixtures/llama-tiny-lora-qv", { isTrainable: true });
   * const trainer = model.trainer({ optimizer: "sgd", learningRate: 0.1 });
   * const { loss, gradNorm } = await trainer.step({ inputIds: [[1, 72, 105, 33, 2]] });
   * ```
   */
  trainer(options: TrainerOptions = {}): Trainer {
    const adapter = this.#trained("trainer()");
    const resolved = { ...resolveTrainerOptions(options), resumeFrom: options.resumeFrom };
    return new Trainer(
      adapter,
      resolved,
      this.#trainable!.config,
      () => this.#changes.push(() => this.#serveTrained()),
    );
  }

  /**
   * HF's causal-LM loss of a batch with the trainable adapter's current
   * weights (labels default to the ids, shifted inside, -100 ignored; mean
   * over kept tokens), without dropout or update.
   */
  async loss(batch: TrainBatch): Promise<number> {
    const { lossSum, labelTokens } = await this.#trained("loss()").loss(batch);
    return lossSum / labelTokens;
  }

  /**
   * Writes the trainable adapter as PEFT's `save_pretrained` does
   * (`adapter_config.json` and `adapter_model.safetensors`), loadable by
   * Python's `PeftModel.from_pretrained` and by {@linkcode fromPretrained}.
   */
  async savePretrained(dir: string): Promise<void> {
    const adapter = this.#trained("savePretrained()");
    const fs = await localFs();
    await fs.mkdirp(dir);
    const folder = dir.replace(/\/+$/, "");
    await fs.writeFile(
      `${folder}/${ADAPTER_WEIGHTS_FILE}`,
      adapterWeightsBytes(adapter.params.tensors, adapter.savedExtras),
    );
    await fs.writeFile(`${folder}/${ADAPTER_CONFIG_FILE}`, adapterConfigText(this.#trainable!.config));
  }

  /** Swaps the trained tensors into the inference engine (runs queued before keep the old ones). */
  async #serveTrained(): Promise<void> {
    const { adapter, name } = this.#trainable!;
    if (adapter.version === this.#servedVersion) return;
    const version = adapter.version;
    const old = [...this.#loaded()].find((a) => a.name === name)!;
    const weights = parseSafetensors(
      adapterWeightsBytes(adapter.params.tensors, adapter.savedExtras),
      ADAPTER_WEIGHTS_FILE,
    );
    const next: LoadedAdapter = { ...old, weights };
    const engine = await this.#engine.remove(name).engine.add(next);
    this.#engine = engine;
    this.#registry = new Map(
      [...this.#registry].map(([k, parts]) => [k, parts.map((p) => (p.adapter === old ? { ...p, adapter: next } : p))]),
    );
    this.#servedVersion = version;
  }

  /** PEFT's `print_trainable_parameters()`, same numbers and format. */
  printTrainableParameters(): void {
    const [trainable, all] = this.getNbTrainableParameters();
    const n = (v: number) => v.toLocaleString("en-US");
    console.log(
      `trainable params: ${n(trainable)} || all params: ${n(all)} || trainable%: ${(100 * trainable / all).toFixed(4)}`,
    );
  }

  /**
   * Frees the sessions this model made. The base, and the kernels (GPU
   * device) it shares with every model on it, stay usable.
   */
  async release(): Promise<void> {
    await Promise.all(this.#engine.sessions().map((s) => s.release()));
    await this.#trainable?.adapter.release();
  }

  /** Same as {@linkcode PeftModel.release}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }

  /** Distinct loaded adapters. */
  *#loaded(): Iterable<LoadedAdapter> {
    const seen = new Set<string>();
    for (const parts of this.#registry.values()) {
      for (const { adapter } of parts) {
        if (!seen.has(adapter.name)) {
          seen.add(adapter.name);
          yield adapter;
        }
      }
    }
  }

  #components(names: readonly string[]): WeightedAdapter[] {
    return names.flatMap((name) => {
      const parts = this.#registry.get(name);
      if (!parts) {
        throw new AdapterConfigError(`no adapter named ${name}; loaded: ${this.listAdapters().join(", ")}`, {
          key: "adapter",
        });
      }
      return parts;
    });
  }

  #resolve(adapter: PeftRunOptions["adapter"]): WeightedAdapter[] {
    if (adapter === null) return [];
    if (adapter !== undefined) return this.#components(typeof adapter === "string" ? [adapter] : adapter);
    return this.#disabled > 0 ? [] : this.#components(this.#active);
  }

  /** Generation runs many steps: fix the adapters at the start so a concurrent setAdapter cannot change them midway. */
  #pinAdapter<T extends GenerateOptions & { adapterNames?: readonly string[] }>(options: T = {} as T): T {
    if (options.adapter !== undefined || options.adapterNames !== undefined) return options;
    return { ...options, adapter: this.#disabled > 0 ? null : [...this.#active] };
  }
}
