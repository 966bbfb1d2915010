/**
 * `PeftModel`: a base model with a LoRA adapter applied, the edge
 * counterpart of PEFT's `PeftModel`.
 * @module
 */
import type { LoraConfig } from "../config/mod.ts";
import type { InferenceSession } from "../deps/ort.ts";
import type { GenerateOptions, GenerationResult, Prompt } from "../generate/mod.ts";
import type { BaseModel, Feeds, Outputs } from "./base_model.ts";
import { generateText, streamText } from "./text.ts";

/** How an adapter is applied: merged into the weights of its own session. */
export type AdapterMode = "merged";

/**
 * A base model with an adapter applied. Create it with `fromPretrained`
 * (or its alias `PeftModel.fromPretrained`).
 *
 * @example
 * ```ts
 * import { fromPretrained, loadBaseModel } from "../../mod.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const model = await fromPretrained(base, "tests/fixtures/llama-tiny-lora-qv");
 * model.printTrainableParameters();
 * await model.release();
 * ```
 */
export class PeftModel {
  /**
   * Loads an adapter onto a base model; see `fromPretrained`. Assigned by
   * the `from_pretrained` module to keep this class free of loading code.
   */
  static fromPretrained: (
    base: BaseModel,
    adapter: string | import("../storage/file_source.ts").FileSource,
    options?: import("./from_pretrained.ts").FromPretrainedOptions,
  ) => Promise<PeftModel>;

  /** @internal Use `fromPretrained`. */
  constructor(
    /** The base model the adapter was applied to; unchanged by it. */
    readonly base: BaseModel,
    /** How the adapter is applied. */
    readonly mode: AdapterMode,
    /** Parsed PEFT config of each adapter, by adapter name. */
    readonly peftConfig: Readonly<Record<string, LoraConfig>>,
    /** Name of the adapter in use. */
    readonly activeAdapter: string,
    /** Number of parameters in the adapter's tensors. */
    readonly adapterParameters: number,
    /** Adapter keys that matched no module of the base (PEFT's unexpected keys). */
    readonly unmatchedKeys: readonly string[],
    /** Warnings raised while loading (also passed to `onWarning`). */
    readonly warnings: readonly string[],
    /** @internal The session running the merged weights. */
    readonly session: InferenceSession,
  ) {}

  /** Names of the model's inputs. */
  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  /** Names of the model's outputs. */
  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /** The base's parsed `config.json`. */
  get config(): Readonly<Record<string, unknown>> {
    return this.base.config;
  }

  /**
   * Generates text with the adapter applied, using the base's tokenizer and
   * generation defaults (greedy unless `temperature` > 0).
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
    return generateText(this, this.base.text, prompt, options);
  }

  /** Streams generated text in pieces that never split a character. */
  stream(prompt: Prompt, options?: GenerateOptions): AsyncGenerator<string, GenerationResult, undefined> {
    return streamText(this, this.base.text, prompt, options);
  }

  /** Runs the adapted model, exactly like `InferenceSession.run`. */
  run(feeds: Feeds, options?: InferenceSession.RunOptions): Promise<Outputs> {
    return this.session.run(feeds, options);
  }

  /**
   * PEFT's `get_nb_trainable_parameters()`: `[trainable, all]`. As in PEFT,
   * an adapter loaded for inference (`isTrainable: false`) is frozen, so
   * trainable is 0; all counts the base's float parameters plus the adapter's.
   */
  getNbTrainableParameters(): [trainable: number, all: number] {
    return [0, this.base.numParameters() + this.adapterParameters];
  }

  /** PEFT's `print_trainable_parameters()`, same numbers and format. */
  printTrainableParameters(): void {
    const [trainable, all] = this.getNbTrainableParameters();
    const n = (v: number) => v.toLocaleString("en-US");
    console.log(
      `trainable params: ${n(trainable)} || all params: ${n(all)} || trainable%: ${(100 * trainable / all).toFixed(4)}`,
    );
  }

  /** Frees this model's session. The base stays usable. */
  async release(): Promise<void> {
    await this.session.release();
  }
}
