/**
 * The base model: an ONNX decoder (plus its `config.json`) loaded once and
 * shared, read-only, by every adapter applied to it.
 * @module
 */
import type { GraphProto, ModelProto } from "../deps/onnx_proto.ts";
import type { InferenceSession, Tensor } from "../deps/ort.ts";
import { type ModelSession, ReleasedSessionError } from "./model_session.ts";
import { OnnxModelError, PeftEdgeError } from "../errors.ts";
import { externalBytes, externalDataFiles, externalLocation } from "../onnx/external_data.ts";
import {
  inlineWeights,
  readModelWithoutWeights,
  splitInlineWeights,
  splitPlacedWeights,
} from "../onnx/weight_split.ts";
import { WeightStore } from "./weight_store.ts";
import { decodeGraphNodes, decodeModel, encodeModel } from "../onnx/model_file.ts";
import { readGraphNodes } from "../onnx/ranged_graph.ts";
import { fp32Variant, type ModelDtype, onnxFileForDtype } from "../onnx/model_variant.ts";
import { restoreQuantizedScopes, unscopedQuantizedNodes } from "../onnx/scope_recovery.ts";
import { localFs } from "../runtime/fs.ts";
import { elementCount, floatElementType, readFloatTensor } from "../onnx/tensor_data.ts";
import { indexWeights, type WeightIndex } from "../onnx/weight_index.ts";
import type { FileSource } from "../storage/file_source.ts";
import { externalDataPath } from "../storage/paths.ts";
import { readJsonObject } from "../storage/json_file.ts";
import { rangeBytes, wholeBytes } from "../storage/range_bytes.ts";
import { type PathOrSource, type ResolveOptions, resolveSource } from "../hub/resolve.ts";
import {
  commitRuntimeSettings,
  createSession,
  type SessionChoice,
  type SessionSettings,
  sessionSettings,
} from "./session.ts";
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
   * Reads `externalData` again from the model's files; without it the bytes are kept for the model's lifetime.
   * @ignore internal: set by the loader.
   */
  reloadWeights?: () => Promise<ReadonlyMap<string, Uint8Array>>;
  /**
   * The external data location that stands for the ONNX file's own bytes (its weights were inline).
   * @ignore internal: set by the loader.
   */
  inlineLocation?: string;
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
   * A session already running the unmodified base; without one it is created on first use.
   * @ignore internal: read by the adapter, generation and serving stages.
   */
  session?: ModelSession;
  /**
   * Tokenizer and generation defaults (from the same folder or repo).
   * @ignore internal: read by the adapter, generation and serving stages.
   */
  text: TextSide;
}

/**
 * A session that runs the base for now: a dynamic adapter engine's branched
 * graph with every branch off (rank 0), so the base and its dynamic adapters
 * share one copy of the weights.
 *
 * @example
 * ```ts
 * import type { BaseRoute } from "./base_model.ts";
 * declare const route: BaseRoute;
 * console.log(route.session.inputNames);
 * ```
 */
export interface BaseRoute {
  session: ModelSession;
  /** Feeds that turn every branch off. */
  feeds: Feeds | Promise<Feeds>;
  /** Adds inputs computed from the run's own feeds (an activated LoRA's mask). */
  prepare?(feeds: Feeds): Feeds;
}

/** The graph's inputs that are not initializers, in order (what onnxruntime's `inputNames` lists). */
function graphInputNames(graph: GraphProto): string[] {
  const initializers = new Set(graph.initializer.map((t) => t.name));
  return graph.input.map((i) => i.name).filter((name) => !initializers.has(name));
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
   * Runs the unmodified base: on a dynamic engine's branched session with
   * every branch off while one exists (one copy of the weights for the base
   * and its dynamic adapters), else on a session of its own, created on first
   * use and released when a branched session takes over.
   * @ignore internal: read by the adapter, generation and serving stages.
   */
  readonly session: ModelSession;
  /**
   * Tokenizer and generation defaults (from the same folder or repo).
   * @ignore internal: read by the adapter, generation and serving stages.
   */
  readonly text: TextSide;
  /**
   * The external data location that stands for the ONNX file's own bytes (its weights were inline).
   * @ignore internal: read by the adapter stages.
   */
  readonly inlineLocation?: string;
  /** The kernels every adapter on this base shares; created on first need. */
  #kernels?: Promise<ModelKernels>;
  readonly #store: WeightStore;
  /** The base's own session, while it has one. */
  #own?: Promise<ModelSession>;
  /** Branched sessions that can run the base; the latest serves. */
  #routes: readonly BaseRoute[] = [];

  /** @internal Use {@linkcode loadBaseModel}. */
  constructor(parts: BaseModelParts) {
    this.source = parts.source;
    this.config = parts.config;
    this.file = parts.file;
    this.onnx = parts.onnx;
    this.weights = parts.weights;
    this.settings = parts.settings;
    this.text = parts.text;
    this.#store = new WeightStore(parts.externalData, parts.reloadWeights);
    this.inlineLocation = parts.inlineLocation;
    if (parts.session) {
      this.#own = Promise.resolve(parts.session);
      this.#store.handed();
    }
    const graph = parts.onnx.graph!;
    this.session = {
      inputNames: graphInputNames(graph),
      outputNames: graph.output.map((o) => o.name),
      run: (feeds, options) => this.#run(feeds, options),
      release: () => this.#releaseOwn(),
    };
  }

  /**
   * External data files by their location relative to the ONNX file (a
   * model whose weights were inline has them under a location of its own).
   * Once a session holds the weights they are read only inside
   * {@linkcode BaseModel.withWeights}.
   * @ignore internal: read by the adapter stages.
   */
  get externalData(): ReadonlyMap<string, Uint8Array> {
    return this.#store.data;
  }

  /**
   * @internal Runs `task` with the weight bytes in memory (read again from
   * the model's files when a session took them), for building sessions and
   * reading weights; they are dropped again afterwards.
   *
   * @example
   * ```ts
   * import { loadBaseModel } from "./base_model.ts";
   * const base = await loadBaseModel("tests/fixtures/llama-tiny");
   * const w = await base.withWeights(async () => base.readWeight(base.weights.get(base.weights.modules[0])!.initializer));
   * ```
   */
  withWeights<T>(task: () => T | Promise<T>): Promise<T> {
    return this.#store.hold(task);
  }

  /** @internal Keeps the weight bytes in memory from now on (a model that reads them at any time: training). */
  pinWeights(): void {
    this.#store.pin();
  }

  /**
   * @internal Creates a session from this base's weights (inside a hold) and
   * lets the JavaScript copy go once it holds them.
   */
  createSessionFromWeights(model: ModelProto): Promise<ModelSession> {
    return this.#store.hold(async () => {
      const session = await createSession(model, this.#store.data, this.settings, this.file);
      this.#store.handed();
      return session;
    });
  }

  /**
   * @internal Lets a branched session with every branch off run the base
   * (and frees the base's own session); returns the function that takes it
   * back, to call before that session is released.
   */
  routeThrough(route: BaseRoute): () => void {
    this.#routes = [...this.#routes, route];
    void this.#releaseOwn();
    return () => (this.#routes = this.#routes.filter((r) => r !== route));
  }

  /** @internal Creates the base's own session now, where it is not there yet. */
  async openSession(): Promise<void> {
    if (this.#routes.length === 0) await this.#ownSession();
  }

  /** @internal Frees the base's own session (a branched session is about to take its place). */
  releaseOwnSession(): Promise<void> {
    return this.#releaseOwn();
  }

  async #releaseOwn(): Promise<void> {
    const own = this.#own;
    this.#own = undefined;
    await own?.then((s) => s.release(), () => {});
  }

  #ownSession(): Promise<ModelSession> {
    if (!this.#own) {
      const pending = this.createSessionFromWeights(this.onnx);
      this.#own = pending;
      pending.catch(() => this.#own === pending && (this.#own = undefined));
    }
    return this.#own;
  }

  async #run(feeds: Feeds, options?: InferenceSession.RunOptions): Promise<Outputs> {
    for (let attempt = 0;; attempt++) {
      const route = this.#routes.at(-1);
      const own = route ? undefined : this.#ownSession();
      const { session, feeds: extra, prepare } = route ?? { session: await own!, feeds: {} };
      try {
        return await session.run({ ...(prepare ? prepare(feeds) : feeds), ...await extra }, options);
      } catch (error) {
        // The session was released meanwhile: whatever serves the base now runs it.
        const moved = route ? !this.#routes.includes(route) : this.#own !== own || this.#routes.length > 0;
        if (error instanceof ReleasedSessionError && moved && attempt < 3) continue;
        throw error;
      }
    }
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
   * const { model, externalData } = await base.toOnnx();
   * ```
   */
  toOnnx(): Promise<{ model: Uint8Array; externalData: ReadonlyMap<string, Uint8Array> }> {
    return this.#store.hold(() => {
      const data = this.#store.data;
      const location = this.inlineLocation;
      // Files read range by range are read whole here: callers write them out.
      const files = new Map([...data].filter(([l]) => l !== location).map(([l, bytes]) => [l, wholeBytes(bytes)]));
      if (location === undefined) return { model: encodeModel(this.onnx), externalData: files };
      // Weights that were inline in the file are written inline again.
      return { model: encodeModel(inlineWeights(this.onnx, location, data, this.file)), externalData: files };
    });
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
    const { model, externalData } = await this.toOnnx();
    const folder = path.includes("/") ? path.slice(0, path.lastIndexOf("/") + 1) : "";
    if (folder) await fs.mkdirp(folder);
    for (const [location, bytes] of externalData) await fs.writeFile(folder + location, bytes);
    await fs.writeFile(path, model);
  }

  /**
   * A fresh float32 copy of an initializer's values (inline or external; an
   * external one inside {@linkcode BaseModel.withWeights} once a session
   * holds the weights).
   */
  readWeight(initializer: string): Float32Array {
    const tensor = this.onnx.graph!.initializer.find((t) => t.name === initializer);
    if (!tensor) throw new OnnxModelError(`no initializer named ${initializer}`, { file: this.file });
    const external = externalLocation(tensor, this.file)
      ? externalBytes(tensor, this.externalData, this.file)
      : undefined;
    return readFloatTensor(tensor, this.file, external);
  }

  /** Number of float parameters in the graph's initializers (PEFT's "all params" of the base). */
  numParameters(): number {
    return this.onnx.graph!.initializer
      .filter((t) => floatElementType(t.dataType))
      .reduce((n, t) => n + elementCount(t), 0);
  }

  /**
   * Frees the base's own session and the kernels (GPU device) adapters share.
   * Models built from this base keep their own sessions; kernels (and a
   * base session) they need later are created again.
   */
  async release(): Promise<void> {
    const kernels = this.#kernels;
    this.#kernels = undefined;
    await this.#releaseOwn();
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
    // Read range by range where the source can: an fp32 export with its weights inline is the whole model's size.
    const ranges = await source.openRanges?.(fp32);
    unquantized = ranges ? readGraphNodes(ranges, fp32) : decodeGraphNodes(await source.read(fp32), fp32);
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
  // A local (or disk-cached Hub) file is read without its large inline weights; a session reads them range by
  // range when it takes them, so JavaScript never holds them beside onnxruntime's copy.
  const ranges = await source.openRanges?.(file);
  const bytes = ranges ? undefined : await source.read(file);
  const read = ranges ? readModelWithoutWeights(ranges, file) : undefined;
  const decoded = read?.model ?? decodeModel(bytes!, file);
  const unscopedHint = await recoverModulePaths(source, file, decoded.graph!);
  const paths = new Map<string, string>();
  for (const location of externalDataFiles(decoded, file)) {
    const path = externalDataPath(file, location);
    if (path === undefined) {
      throw new OnnxModelError("external data location is the model file itself or leaves its folder", {
        file,
        key: location.slice(0, 200),
      });
    }
    paths.set(location, path);
  }
  const externalData = new Map<string, Uint8Array>();
  for (const [location, path] of paths) {
    const opened = ranges && await source.openRanges!(path);
    externalData.set(location, opened ? rangeBytes(opened, path) : await source.read(path));
  }
  // Inline weights become references into the file's bytes: the graph alone is small to rewrite and re-encode.
  const { model: onnx, location: inlineLocation } = read
    ? splitPlacedWeights(decoded, read.placed, file)
    : splitInlineWeights(bytes!, decoded, file);
  if (inlineLocation !== undefined) externalData.set(inlineLocation, ranges ? rangeBytes(ranges, file) : bytes!);
  const weights = indexWeights(onnx.graph!, file, { unscopedHint });
  const settings = await sessionSettings(options, onnx.graph!.output.map((o) => o.name));
  await commitRuntimeSettings(settings);
  const text = await loadTextSide(source);
  // Bytes read from the files when asked cost nothing to keep; others are dropped and read again.
  const reloadWeights = ranges ? undefined : weightReloader(source, file, paths, inlineLocation, externalData);
  const base = new BaseModel({
    source,
    config,
    file,
    onnx,
    externalData,
    reloadWeights,
    inlineLocation,
    weights,
    settings,
    text,
  });
  // On WebGPU the first session sets up onnxruntime's device, which feeds uploaded to the GPU must share.
  if (settings.device === "webgpu") await base.openSession();
  return base;
}

/**
 * The length and a hash of 16 bytes in every 64 KiB (and the last 16) of a file: tells a file replaced since it was
 * loaded (another export, a new download) without hashing every byte.
 */
function fingerprint(bytes: Uint8Array): string {
  let hash = 2166136261;
  const mix = (from: number) => {
    for (let i = from; i < Math.min(from + 16, bytes.length); i++) hash = Math.imul(hash ^ bytes[i], 16777619);
  };
  for (let at = 0; at < bytes.length; at += 65536) mix(at);
  mix(Math.max(0, bytes.length - 16));
  return `${bytes.length}:${hash >>> 0}`;
}

/**
 * Reads the weight files again (the ONNX file itself for weights that were inline), refusing files that changed
 * since the load: the graph's offsets would point at other bytes.
 */
function weightReloader(
  source: FileSource,
  file: string,
  paths: ReadonlyMap<string, string>,
  inlineLocation: string | undefined,
  loaded: ReadonlyMap<string, Uint8Array>,
): () => Promise<ReadonlyMap<string, Uint8Array>> {
  const files = new Map(paths);
  if (inlineLocation !== undefined) files.set(inlineLocation, file);
  const prints = new Map([...loaded].map(([location, bytes]) => [location, fingerprint(bytes)]));
  return async () => {
    const data = new Map<string, Uint8Array>();
    for (const [location, path] of files) {
      const bytes = await source.read(path);
      if (fingerprint(bytes) !== prints.get(location)) {
        throw new OnnxModelError("changed since the model was loaded; load the model again", { file: path });
      }
      data.set(location, bytes);
    }
    return data;
  };
}
