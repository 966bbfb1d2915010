/**
 * One adapter being trained: its LoRA tensors (PEFT layout), the training
 * graph built from the base's dynamic-mode graph, and `lora_dropout` on the
 * branch inputs in training runs only (seeded masks, scaled by `1/(1-p)` as
 * `nn.Dropout`; DoRA's form of it in `dora_graph.ts`). Independent of the
 * model layer: the caller passes the graph, the plan and a session factory.
 * @module
 */
import { Tensor } from "../deps/ort.ts";
import type { ModelProto, ValueInfoProto } from "../deps/onnx_proto.ts";
import { GraphProtoSchema, ModelProtoSchema, NodeProtoSchema, TensorProto_DataType } from "../deps/onnx_proto.ts";
import { UnsupportedError } from "../errors.ts";
import { createRng } from "../generate/rng.ts";
import { loraPatches } from "../lora/dynamic_feeds.ts";
import type { AdapterPlan } from "../lora/plan.ts";
import type { AdapterTensorReader } from "../lora/readers.ts";
import { addLoraBranches } from "../onnx/lora_branches.ts";
import { addParamBranches } from "../onnx/param_branches.ts";
import { addTokenBranches } from "../onnx/token_branches.ts";
import { tokenSites } from "../lora/token_feeds.ts";
import { makeNode, tensorValueInfo, usedNames } from "../onnx/graph_parts.ts";
import { edited } from "../onnx/proto_edit.ts";
import type { WeightIndex } from "../onnx/weight_index.ts";
import { type BatchTensors, batchTensors, type TrainBatch } from "./batch.ts";
import { withDoraDropout } from "./dora_graph.ts";
import { type BiasParameter, type DoraNorms, LoraParameters } from "./lora_params.ts";
import { type SiteParameter, SiteParameters } from "./site_params.ts";
import { TokenParameters } from "./token_params.ts";
import type { TensorInput } from "../safetensors/mod.ts";
import { LABEL_WEIGHTS_INPUT, LABELS_INPUT, type SessionFactory, TrainingGraph } from "./training_graph.ts";

/**
 * What a trainable adapter is built from.
 *
 * @example
 * ```ts
 * import type { TrainableParts } from "./trainable.ts";
 * const extraInputs = (rows: number): TrainableParts["extraInputs"] => () => ({});
 * ```
 */
export interface TrainableParts {
  /** The base graph (not branched). */
  onnx: ModelProto;
  weights: WeightIndex;
  plan: AdapterPlan;
  tensor: AdapterTensorReader;
  factory: SessionFactory;
  /** Decoder inputs besides ids, mask and positions (an empty KV cache), for a batch of `rows`. */
  extraInputs: (rows: number) => Record<string, Tensor>;
  inputNames: readonly string[];
  vocabSize?: number;
  /** `lora_dropout`. */
  dropout: number;
  /** Projection biases trained in full (`bias: "all"` / `"lora_only"`), each on its branch's bias input. */
  biases?: readonly BiasParameter[];
  /** Norm biases (`bias: "all"`) and whole modules (`modules_to_save`) trained through parameter sites. */
  siteParameters?: readonly SiteParameter[];
  /** Reads a base initializer as float32 (the base values of fed modules). */
  readWeight: (initializer: string) => Float32Array;
  /** The config's `fan_in_fan_out` (how PyTorch stores a fed Linear's weight). */
  fanInFanOut?: boolean;
  /** DoRA's weight norms for a module's current A and B (needed when the plan has DoRA patches). */
  doraNorms?: DoraNorms;
  /** Tensors `savePretrained` writes besides the trained ones (PEFT's embedding base layers). */
  savedExtras?: Record<string, TensorInput>;
  /** The adapter config as `savePretrained` writes it (snake_case JSON). */
  config: Readonly<Record<string, unknown>>;
}

/**
 * Gradients of one forward/backward run.
 *
 * @example
 * ```ts
 * import type { RunGradients } from "./trainable.ts";
 * const mean = (r: RunGradients) => r.lossSum / r.labelTokens;
 * ```
 */
export interface RunGradients {
  /** Loss summed over the batch's kept label tokens. */
  lossSum: number;
  labelTokens: number;
  /** d lossSum / d tensor, per trained tensor (PEFT layout, {@linkcode LoraParameters.tensors} order). */
  grads: Float32Array[];
}

const dropoutInput = (module: string) => `train.dropout.${module}`;

/**
 * A LoRA adapter with its training graph.
 *
 * @example
 * ```ts
 * import { TrainableAdapter } from "./trainable.ts";
 * declare const parts: import("./trainable.ts").TrainableParts;
 * const trainable = new TrainableAdapter(parts);
 * const { lossSum, labelTokens } = await trainable.forwardBackward({ inputIds: [[1, 2, 3]] }, 0);
 * ```
 */
export class TrainableAdapter {
  readonly params: LoraParameters;
  readonly #graph: TrainingGraph;
  readonly #parts: TrainableParts;
  /** Branch input (x) shape per module, for dropout masks: module -> [in features]. */
  readonly #dropped: { module: string; inFeatures: number }[] = [];
  /** Bumped by every change of the tensors, so inference copies know when to refresh. */
  version = 0;

  constructor(parts: TrainableParts) {
    this.#parts = parts;
    const patches = loraPatches(parts.plan);
    const dora = new Set(patches.filter((p) => p.magnitude).map((p) => p.module));
    const withLoraBias = patches.find((p) => p.magnitude && p.bias);
    if (withLoraBias) {
      // PEFT refuses lora_bias with DoRA (LoraConfig: "not supported for DoRA"): there is no forward to follow.
      throw new UnsupportedError("lora_bias on a DoRA module is not supported (PEFT refuses it)", {
        key: withLoraBias.module,
      });
    }
    const biases = parts.biases ?? [];
    const siteParams = parts.siteParameters ?? [];
    const biased = [...patches.filter((p) => p.bias).map((p) => p.module), ...biases.map((b) => b.module)];
    const modules = [...new Set([...patches.map((p) => p.module), ...biased])];
    // Projections reading one activation (q/k/v) share one x @ A, and so one A gradient product; not under dropout
    // (each module drops its own mask) nor with a bias-only branch among them.
    const shareA = parts.dropout === 0 && modules.every((m) => patches.some((p) => p.module === m));
    const branched = addLoraBranches(parts.onnx, parts.weights, modules, { dora, bias: new Set(biased), shareA });
    const { branches } = branched;
    const model = branched.model;
    // Norm biases (a delta on the norm's output) and whole modules (their parameters fed) on parameter sites.
    const fed = siteParams.filter((p) => p.param === "weight").map((p) => p.module);
    const deltas = siteParams.filter((p) => !fed.includes(p.module)).map((p) => p.module);
    const sited = siteParams.length > 0
      ? addParamBranches(model, parts.weights, { deltas, fed }, parts.readWeight)
      : { model, sites: new Map() };
    const onSites = new SiteParameters(sited.sites, siteParams, parts.tensor, parts.fanInFanOut ?? false);
    // Trainable tokens on their own branch after the embedding.
    const tokened = parts.plan.tokens.length > 0
      ? addTokenBranches(sited.model, parts.onnx, tokenSites(parts.plan))
      : { model: sited.model, branches: new Map() };
    const tokens = new TokenParameters(parts.plan.tokens, tokened.branches, parts.tensor);
    this.params = new LoraParameters(patches, branches, parts.tensor, parts.doraNorms, biases, onSites, tokens);
    let graph = tokened.model;
    if (parts.dropout > 0) {
      const lora = [...branches.values()].filter((b) =>
        b.kind !== "embedding" && patches.some((p) => p.module === b.module)
      );
      graph = this.#withDropout(graph, lora);
      // PEFT's DoRA also runs the dropped input through the base weight.
      const doraBranches = lora.filter((b) => dora.has(b.module));
      if (doraBranches.length > 0) graph = withDoraDropout(graph, doraBranches);
    }
    this.#graph = new TrainingGraph(graph, "logits", this.params.inputs, parts.factory);
  }

  /** Inserts `x * mask` before each branch's A product (PEFT's `lora_A(dropout(x))`). */
  #withDropout(model: ModelProto, branches: { module: string; a: string; inFeatures: number }[]): ModelProto {
    const g = model.graph!;
    const byA = new Map(branches.map((b) => [b.a, b]));
    const taken = usedNames(g);
    const inputs: ValueInfoProto[] = [];
    const node = g.node.flatMap((n) => {
      const b = n.opType === "MatMul" ? byA.get(n.input[1]) : undefined;
      if (!b) return [n];
      const mask = dropoutInput(b.module);
      let dropped = `${n.input[0]}_lora_dropout`;
      for (let i = 1; taken.has(dropped); i++) dropped = `${n.input[0]}_lora_dropout_${i}`;
      taken.add(dropped);
      // Fed flat and reshaped to x's own shape ([batch, seq, in], or [batch * seq, in] before a Gemm).
      inputs.push(tensorValueInfo(mask, TensorProto_DataType.FLOAT, ["positions_x_in"]));
      this.#dropped.push({ module: b.module, inFeatures: b.inFeatures });
      const [shape, shaped] = [`${dropped}_shape`, `${dropped}_mask`];
      taken.add(shape);
      taken.add(shaped);
      return [
        makeNode("Shape", [n.input[0]], [shape], `${n.name}_dropout_Shape`),
        makeNode("Reshape", [mask, shape], [shaped], `${n.name}_dropout_Reshape`),
        makeNode("Mul", [n.input[0], shaped], [dropped], `${n.name}_dropout`),
        edited(NodeProtoSchema, n, { input: [dropped, n.input[1]] }),
      ];
    });
    const graph = edited(GraphProtoSchema, g, { node, input: [...g.input, ...inputs] });
    return edited(ModelProtoSchema, model, { graph });
  }

  #feeds(b: BatchTensors, dropoutSeed: number | undefined): Record<string, Tensor> {
    const feeds: Record<string, Tensor> = {
      ...this.#parts.extraInputs(b.rows),
      input_ids: b.inputIds,
      [LABELS_INPUT]: b.labels,
      [LABEL_WEIGHTS_INPUT]: b.labelWeights,
      ...this.params.feeds(b.rows),
    };
    if (this.#parts.inputNames.includes("attention_mask")) feeds.attention_mask = b.attentionMask;
    if (this.#parts.inputNames.includes("position_ids")) feeds.position_ids = b.positionIds;
    const p = this.#parts.dropout;
    const rng = dropoutSeed === undefined ? undefined : createRng(dropoutSeed);
    for (const { module, inFeatures } of this.#dropped) {
      const n = b.rows * b.length * inFeatures;
      const mask = new Float32Array(n);
      if (!rng) mask.fill(1);
      else for (let i = 0; i < n; i++) mask[i] = rng.uniform() >= p ? 1 / (1 - p) : 0;
      feeds[dropoutInput(module)] = new Tensor("float32", mask, [n]);
    }
    return feeds;
  }

  /**
   * Forward and backward on one batch. `dropoutSeed` seeds this run's
   * dropout masks (training); without it dropout is off.
   */
  async forwardBackward(batch: TrainBatch, dropoutSeed?: number): Promise<RunGradients> {
    const b = batchTensors(batch, this.#parts.vocabSize);
    const { lossSum, grads } = await this.#graph.run(this.#feeds(b, dropoutSeed));
    return { lossSum, labelTokens: b.labelTokens, grads: this.params.gradients(grads) };
  }

  /** The loss of a batch without dropout or update: HF's mean over kept label tokens. */
  async loss(batch: TrainBatch): Promise<{ lossSum: number; labelTokens: number }> {
    const b = batchTensors(batch, this.#parts.vocabSize);
    return { lossSum: await this.#graph.lossSum(this.#feeds(b, undefined)), labelTokens: b.labelTokens };
  }

  /** The config `savePretrained` and checkpoints write. */
  get config(): Readonly<Record<string, unknown>> {
    return this.#parts.config;
  }

  /** Tensors written beside the trained ones (see {@linkcode TrainableParts.savedExtras}). */
  get savedExtras(): Record<string, TensorInput> {
    return this.#parts.savedExtras ?? {};
  }

  /** Frees the training sessions. */
  release(): Promise<void> {
    return this.#graph.release();
  }
}
