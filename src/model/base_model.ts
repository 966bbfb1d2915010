/**
 * The base model: an ONNX decoder (plus its `config.json`) loaded once and
 * shared, read-only, by every adapter applied to it.
 * @module
 */
import type { GraphProto, ModelProto } from "../deps/onnx_proto.ts";
import type { InferenceSession, Tensor } from "../deps/ort.ts";
import type { ModelSession } from "./model_session.ts";
import { OnnxModelError, PeftEdgeError } from "../errors.ts";
import { externalBytes, externalDataFiles } from "../onnx/external_data.ts";
import { decodeGraphNodes, decodeModel, encodeModel } from "../onnx/model_file.ts";
import { fp32Variant, type ModelDtype, onnxFileForDtype } from "../onnx/model_variant.ts";
import { restoreQuantizedScopes, unscopedQuantizedNodes } from "../onnx/scope_recovery.ts";
import { localFs } from "../runtime/fs.ts";
import { elementCount, floatElementType, readFloatTensor } from "../onnx/tensor_data.ts";
import { indexWeights, type WeightIndex } from "../onnx/weight_index.ts";
import type { FileSource } from "../storage/file_source.ts";
import { externalDataPath } from "../storage/paths.ts";
import { readJsonObject } from "../storage/json_file.ts";
import { type PathOrSource, type ResolveOptions, resolveSource } from "../hub/resolve.ts";
import { createSession, type SessionChoice, type SessionSettings, sessionSettings } from "./session.ts";
import type { Device } from "../webgpu/device.ts";
import type { GenerateOptions, GenerationResult, Prompt } from "../generate/mod.ts";
import { generateText, loadTextSide, streamText, type TextSide } from "./text.ts";
import { createModelKernels, type ModelKernels } from "./kernel_choice.ts";

/**
 * Options of {@linkcode loadBaseModel}. `device` (`"auto"` default,
 * `"webgpu"`, `"wasm"`, `"native"`) picks where sessions run; explicit
 * `executionProviders` win over it (see {@linkcode SessionChoice}).
 */
export interface LoadBaseModelOptions extends ResolveOptions, SessionChoice {
  /** ONNX file inside the folder or repo; default `onnx/model.onnx`, else `model.onnx`. */
  file?: string;
  /** Weight variant as transformers.js picks it (`"q4"` -> `onnx/model_q4.onnx`); ignored when `file` is given. */
  dtype?: ModelDtype;
}

/** Feeds as onnxruntime-web's `InferenceSession.run` takes them: input name to tensor. */
export type Feeds = Record<string, Tensor>;
/** Outputs of a run, by output name. */
export type Outputs = InferenceSession.ReturnType;

/**
 * What a {@linkcode BaseModel} is made of; {@linkcode loadBaseModel} reads
 * them, `mergeAndUnload` derives them from another base.
 *
 * @example
 * ```ts
 * import { loadBaseModel, type BaseModelParts } from "./base_model.ts";
 * const base = await loadBaseModel("tests/fixtures/llama-tiny");
 * const parts: Pick<BaseModelParts, "file" | "config"> = { file: base.file, config: base.config };
 * ```
 */
export interface BaseModelParts {
  /** Where the model's files come from (also tokenizer files). */
  source: FileSource;
  /** The parsed `config.json`. */
  config: Readonly<Record<string, unknown>>;
  /** ONNX file name inside the source. */
  file: string;
  /**
   * The decoded ONNX model; never mutated after load (where a quantizer dropped module paths, the loader
   * restores them into the node metadata first).
   * @ignore internal: read by the adapter, generation and serving stages.
   */
  onnx: ModelProto;
  /** External data files by their location relative to the ONNX file. */
  externalData: ReadonlyMap<string, Uint8Array>;
  /**
   * Patchable weights by PyTorch module name.
   * @ignore internal: read by the adapter, generation and serving stages.
   */
  weights: WeightIndex;
  /**
   * Session settings, reused for adapter sessions.
   * @ignore internal: read by the adapter, generation and serving stages.
   */
  settings: SessionSettings;
  /**
   * The session running the unmodified base.
   * @ignore internal: read by the adapter, generation and serving stages.
   */
  session: ModelSession;
  /**
   * Tokenizer and generation defaults (from the same folder or repo).
   * @ignore internal: read by the adapter, generation and serving stages.
   */
  text: TextSide;
}

/**
 * A loaded ONNX base model. Create it with {@linkcode loadBaseModel}; free it
 * with `release()` or `await using`.
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "./base_model.ts";
 * await using base = await loadBaseModel("tests/fixtures/llama-tiny");
 * console.log(base.inputNames, base.config.model_type);
 * ```
 */
export class BaseModel implements AsyncDisposable {
  /** Where the model's files come from (also tokenizer files). */
  readonly source: FileSource;
  /** The parsed `config.json`. */
  readonly config: Readonly<Record<string, unknown>>;
  /** ONNX file name inside the source. */
  readonly file: string;
  /**
   * The decoded ONNX model; never mutated after load (where a quantizer dropped module paths, the loader
   * restores them into the node metadata first).
   * @ignore internal: read by the adapter, generation and serving stages.
   */
  readonly onnx: ModelProto;
  /** External data files by their location relative to the ONNX file. */
  readonly externalData: ReadonlyMap<string, Uint8Array>;
  /**
   * Patchable weights by PyTorch module name.
   * @ignore internal: read by the adapter, generation and serving stages.
   */
  readonly weights: WeightIndex;
  /**
   * Session settings, reused for adapter sessions.
   * @ignore internal: read by the adapter, generation and serving stages.
   */
  readonly settings: SessionSettings;
  /**
   * The session running the unmodified base.
   * @ignore internal: read by the adapter, generation and serving stages.
   */
  readonly session: ModelSession;
  /**
   * Tokenizer and generation defaults (from the same folder or repo).
   * @ignore internal: read by the adapter, generation and serving stages.
   */
  readonly text: TextSide;
  /** The kernels every adapter on this base shares; created on first need. */
  #kernels?: Promise<ModelKernels>;

  /** @internal Use {@linkcode loadBaseModel}. */
  constructor(parts: BaseModelParts) {
    this.source = parts.source;
    this.config = parts.config;
    this.file = parts.file;
    this.onnx = parts.onnx;
    this.externalData = parts.externalData;
    this.weights = parts.weights;
    this.settings = parts.settings;
    this.session = parts.session;
    this.text = parts.text;
  }

  /**
   * @internal The LoRA kernels (one wasm instance, and on WebGPU one device)
   * that every `fromPretrained` and `loadAdapter` on this base uses. Created
   * on the first call; a failed creation is retried on the next.
   *
   * @example
   * ```ts
   * import { loadBaseModel } from "./base_model.ts";
   * const base = await loadBaseModel("tests/fixtures/llama-tiny");
   * const { merger } = await base.kernels();
   * console.log(merger.backend, (await base.kernels()).merger === merger); // "wasm-simd" true
   * ```
   */
  kernels(): Promise<ModelKernels> {
    if (!this.#kernels) {
      const pending = createModelKernels(this.device, this.settings.runtime);
      this.#kernels = pending;
      pending.catch(() => this.#kernels === pending && (this.#kernels = undefined));
    }
    return this.#kernels;
  }

  /** Names of the model's inputs. */
  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  /** Where this model's sessions (and those of adapters applied to it) run. */
  get device(): Device {
    return this.settings.device ?? "wasm";
  }

  /** Names of the model's outputs. */
  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /** Runs the base model, exactly like `InferenceSession.run`. */
  run(feeds: Feeds, options?: InferenceSession.RunOptions): Promise<Outputs> {
    return this.session.run(feeds, options);
  }

  /**
   * Generates text with the base model (greedy unless `temperature` > 0).
   *
   * @example
   * ```ts
   * import { loadBaseModel } from "./base_model.ts";
   * const base = await loadBaseModel("examples/demo/byte-llama");
   * const { text } = await base.generate("The ", { maxNewTokens: 20 });
   * ```
   */
  generate(prompt: Prompt, options?: GenerateOptions): Promise<GenerationResult> {
    return generateText(this, this.text, prompt, options);
  }

  /** Streams generated text in pieces that never split a character. */
  stream(prompt: Prompt, options?: GenerateOptions): AsyncGenerator<string, GenerationResult, undefined> {
    return streamText(this, this.text, prompt, options);
  }

  /**
   * The model as ONNX bytes, with the external data files it refers to (by
   * their location relative to the ONNX file). For a base returned by
   * `mergeAndUnload`, the adapter is merged into these weights.
   *
   * @example
   * ```ts
   * import { loadBaseModel } from "./base_model.ts";
   * const base = await loadBaseModel("tests/fixtures/llama-tiny");
   * const { model, externalData } = base.toOnnx();
   * ```
   */
  toOnnx(): { model: Uint8Array; externalData: ReadonlyMap<string, Uint8Array> } {
    return { model: encodeModel(this.onnx), externalData: this.externalData };
  }

  /**
   * Writes the model to an ONNX file that onnxruntime loads (external data
   * files, if any, next to it under their own names).
   *
   * @example
   * ```ts
   * import { loadBaseModel } from "./base_model.ts";
   * const base = await loadBaseModel("tests/fixtures/llama-tiny");
   * await base.saveOnnx("/tmp/llama-tiny.onnx");
   * ```
   */
  async saveOnnx(path: string): Promise<void> {
    const fs = await localFs();
    const { model, externalData } = this.toOnnx();
    const folder = path.includes("/") ? path.slice(0, path.lastIndexOf("/") + 1) : "";
    if (folder) await fs.mkdirp(folder);
    for (const [location, bytes] of externalData) await fs.writeFile(folder + location, bytes);
    await fs.writeFile(path, model);
  }

  /** A fresh float32 copy of an initializer's values (inline or external). */
  readWeight(initializer: string): Float32Array {
    const tensor = this.onnx.graph!.initializer.find((t) => t.name === initializer);
    if (!tensor) throw new OnnxModelError(`no initializer named ${initializer}`, { file: this.file });
    return readFloatTensor(tensor, this.file, externalBytes(tensor, this.externalData, this.file));
  }

  /** Number of float parameters in the graph's initializers (PEFT's "all params" of the base). */
  numParameters(): number {
    return this.onnx.graph!.initializer
      .filter((t) => floatElementType(t.dataType))
      .reduce((n, t) => n + elementCount(t), 0);
  }

  /**
   * Frees the base session and the kernels (GPU device) adapters share.
   * Models built from this base keep their own sessions; kernels they need
   * later are created again.
   */
  async release(): Promise<void> {
    const kernels = this.#kernels;
    this.#kernels = undefined;
    await this.session.release();
    await kernels?.then((k) => k.release(), () => {});
  }

  /** Same as {@linkcode BaseModel.release}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

async function chooseOnnxFile(source: FileSource, file: string | undefined, dtype?: ModelDtype): Promise<string> {
  if (file) return file;
  if (dtype) return onnxFileForDtype(dtype);
  for (const candidate of ["onnx/model.onnx", "model.onnx"]) {
    if (await source.exists(candidate)) return candidate;
  }
  return "onnx/model.onnx"; // reading it raises the missing-file error
}

/**
 * Gives back the module paths onnxruntime's quantizers dropped from a dynamo
 * export, from the unquantized export beside the file (only its graph's
 * nodes are read, never its weights or external data). Returns, when some
 * stay unknown, why (for errors about modules not found).
 */
async function recoverModulePaths(source: FileSource, file: string, graph: GraphProto): Promise<string | undefined> {
  const nodes = unscopedQuantizedNodes(graph);
  if (nodes.length === 0) return undefined;
  const why = "onnxruntime's quantizers drop the node metadata in which a dynamo export keeps module paths";
  const fp32 = fp32Variant(file);
  if (fp32 === undefined) {
    return `${why}; load ${file} under a transformers.js variant name (onnx/model_q4.onnx) with the unquantized ` +
      "export it was made from beside it (onnx/model.onnx), where they are read from";
  }
  let unquantized: GraphProto;
  try {
    if (!(await source.exists(fp32))) {
      return `${why}; put the unquantized export ${file} was made from beside it as ${fp32} (only its graph is read)`;
    }
    unquantized = decodeGraphNodes(await source.read(fp32), fp32);
  } catch (err) {
    // The base itself loaded: it runs, and only adapters on the unnamed modules are refused, saying this.
    if (err instanceof PeftEdgeError) return `${why}; ${fp32} beside it could not be read (${err.message})`;
    throw err;
  }
  const recovery = restoreQuantizedScopes(nodes, unquantized, fp32);
  if ("untrusted" in recovery) return `${why}; ${recovery.untrusted}`;
  return recovery.restored < nodes.length ? `${why}; ${fp32} beside it does not name them all either` : undefined;
}

/**
 * Loads an ONNX base model from a folder, `file:` URL or Hub repo: its
 * `config.json`, the ONNX file and any external data files.
 *
 * @example
 * ```ts
 * import { loadBaseModel } from "./base_model.ts";
 * import { Tensor } from "../deps/ort.ts";
 * const base = await loadBaseModel("tests/fixtures/gpt2-tiny");
 * console.log(base.weights.modules.length, base.numParameters());
 * ```
 */
export async function loadBaseModel(pathOrId: PathOrSource, options: LoadBaseModelOptions = {}): Promise<BaseModel> {
  const source = await resolveSource(pathOrId, options);
  const config = await readJsonObject(source, "config.json", OnnxModelError);
  const file = await chooseOnnxFile(source, options.file, options.dtype);
  const bytes = await source.read(file);
  const onnx = decodeModel(bytes, file);
  const unscopedHint = await recoverModulePaths(source, file, onnx.graph!);
  const externalData = new Map<string, Uint8Array>();
  for (const location of externalDataFiles(onnx, file)) {
    const path = externalDataPath(file, location);
    if (path === undefined) {
      throw new OnnxModelError("external data location is the model file itself or leaves its folder", {
        file,
        key: location.slice(0, 200),
      });
    }
    externalData.set(location, await source.read(path));
  }
  const weights = indexWeights(onnx.graph!, file, { unscopedHint });
  const settings = await sessionSettings(options, onnx.graph!.output.map((o) => o.name));
  const text = await loadTextSide(source);
  const session = await createSession(bytes, externalData, settings, file);
  return new BaseModel({ source, config, file, onnx, externalData, weights, settings, session, text });
}
