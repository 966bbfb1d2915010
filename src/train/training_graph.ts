/**
 * The training graph: the dynamic-mode forward graph (LoRA matrices as
 * inputs), HF's causal-LM loss summed over the kept label tokens, and its
 * reverse-mode gradients with respect to the trained inputs, in one ONNX
 * model. Shapes are probed once per batch shape (one forward run of a probe
 * graph), then a session for that shape is built and reused; the frozen
 * base weights live in the session, never fed or copied per step.
 * @module
 */
import type { Tensor } from "../deps/ort.ts";
import {
  GraphProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  type NodeProto,
  type TensorProto,
  TensorProto_DataLocation,
  TensorProto_DataType,
  type ValueInfoProto,
} from "../deps/onnx_proto.ts";
import { readFloatTensor } from "../onnx/tensor_data.ts";
import { OnnxModelError } from "../errors.ts";
import { tensorValueInfo, usedNames } from "../onnx/graph_parts.ts";
import { edited } from "../onnx/proto_edit.ts";
import { differentiate, type GradientRegion, gradientRegion, type Probed } from "./differentiate.ts";
import { GradGraph } from "./grad_graph.ts";

/** Graph input: per position the index of its (shifted) label, `[batch, seq, 1]` int64 (0 where ignored). */
export const LABELS_INPUT = "train.labels";
/** Graph input: per position 1 where its label counts, 0 where ignored, `[batch, seq, 1]` float32. */
export const LABEL_WEIGHTS_INPUT = "train.label_weights";
/** Graph output: the loss summed over kept label tokens (a float32 scalar). */
export const LOSS_SUM_OUTPUT = "train.loss_sum";
const gradOutput = (param: string) => `train.grad.${param}`;
/** Training sessions kept (one per batch shape). */
const MAX_SESSIONS = 4;

/**
 * What the training graph needs of a session (an onnxruntime session, or the model layer's serialised one).
 *
 * @example
 * ```ts
 * import type { GraphSession } from "./training_graph.ts";
 * const free = (s: GraphSession) => s.release();
 * ```
 */
export interface GraphSession {
  run(feeds: Record<string, Tensor>, options?: object): Promise<Record<string, Tensor>>;
  release(): Promise<void>;
}

/** Builds sessions from models (the caller decides device and options). */
export type SessionFactory = (model: ModelProto) => Promise<GraphSession>;

function opsetOf(model: ModelProto): number {
  const entry = model.opsetImport.find((o) => o.domain === "" || o.domain === "ai.onnx");
  return entry ? Number(entry.version) : 17;
}

/** The forward graph with the loss appended (nodes in topological order). */
function withLoss(model: ModelProto, logits: string, taken: Set<string>): NodeProto[] {
  const g = new GradGraph(taken, "/train/loss", opsetOf(model));
  const logp = g.op("LogSoftmax", [logits], { axis: -1 });
  const picked = g.op("GatherElements", [logp, LABELS_INPUT], { axis: 2 });
  const kept = g.op("Mul", [picked, LABEL_WEIGHTS_INPUT]);
  const sum = g.op("ReduceSum", [kept], { keepdims: 0 });
  g.named("Neg", [sum], [LOSS_SUM_OUTPUT]);
  return [...model.graph!.node, ...g.nodes];
}

/** The graph's one-element float32 constants by tensor name (initializers and `Constant` nodes). */
function floatConstants(model: ModelProto): Map<string, number> {
  const out = new Map<string, number>();
  const add = (name: string, t: TensorProto | undefined) => {
    if (!t || t.dataType !== TensorProto_DataType.FLOAT || t.dims.reduce((n, d) => n * Number(d), 1) !== 1) return;
    if (t.dataLocation === TensorProto_DataLocation.EXTERNAL) return;
    out.set(name, readFloatTensor(t, name)[0]);
  };
  for (const t of model.graph!.initializer) add(t.name, t);
  for (const n of model.graph!.node) {
    if (n.opType === "Constant" && n.output[0]) add(n.output[0], n.attribute.find((a) => a.name === "value")?.t);
  }
  return out;
}

/**
 * A causal-LM training graph over a forward graph whose trained tensors are inputs.
 *
 * @example
 * ```ts
 * import { TrainingGraph } from "./training_graph.ts";
 * import type { ModelProto } from "../deps/onnx_proto.ts";
 * declare const branched: ModelProto; // addLoraBranches(...).model
 * declare const factory: import("./training_graph.ts").SessionFactory;
 * const graph = new TrainingGraph(branched, "logits", ["lora.model.layers.0.self_attn.q_proj.A"], factory);
 * ```
 */
export class TrainingGraph {
  readonly #model: ModelProto;
  readonly #nodes: NodeProto[];
  readonly #region: GradientRegion;
  readonly #params: readonly string[];
  readonly #factory: SessionFactory;
  readonly #taken: Set<string>;
  readonly #constants: Map<string, number>;
  #probe?: Promise<GraphSession>;
  readonly #sessions = new Map<string, Promise<GraphSession>>();
  /** Probe outputs: output name -> [tensor name, kind]. */
  readonly #probeOutputs = new Map<string, [string, "shape" | "ints"]>();

  constructor(model: ModelProto, logits: string, params: readonly string[], factory: SessionFactory) {
    this.#model = model;
    this.#taken = usedNames(model.graph!);
    for (const name of [LABELS_INPUT, LABEL_WEIGHTS_INPUT, LOSS_SUM_OUTPUT]) this.#taken.add(name);
    if (
      !model.graph!.output.some((o) => o.name === logits) && !model.graph!.node.some((n) => n.output.includes(logits))
    ) {
      throw new OnnxModelError(`the graph has no ${logits} output to train on`);
    }
    this.#nodes = withLoss(model, logits, this.#taken);
    this.#params = params;
    this.#region = gradientRegion(this.#nodes, params);
    this.#constants = floatConstants(model);
    this.#factory = factory;
  }

  #inputs(): ValueInfoProto[] {
    return [
      ...this.#model.graph!.input,
      tensorValueInfo(LABELS_INPUT, TensorProto_DataType.INT64, ["batch", "sequence", 1]),
      tensorValueInfo(LABEL_WEIGHTS_INPUT, TensorProto_DataType.FLOAT, ["batch", "sequence", 1]),
    ];
  }

  #lossOutput(): ValueInfoProto {
    return tensorValueInfo(LOSS_SUM_OUTPUT, TensorProto_DataType.FLOAT, []);
  }

  /** Forward + loss, with every shape and integer the backward pass needs as extra outputs. */
  #probeModel(): ModelProto {
    const g = new GradGraph(new Set(this.#taken), "/train/probe", opsetOf(this.#model));
    const outputs: ValueInfoProto[] = [this.#lossOutput()];
    const add = (tensor: string, kind: "shape" | "ints") => {
      const out = kind === "shape"
        ? g.op("Shape", [tensor])
        : g.op("Cast", [tensor], { to: TensorProto_DataType.INT64 });
      this.#probeOutputs.set(out, [tensor, kind]);
      outputs.push(tensorValueInfo(out, TensorProto_DataType.INT64, [kind === "shape" ? "rank" : "n"]));
    };
    for (const t of this.#region.shapes) add(t, "shape");
    for (const t of this.#region.ints) add(t, "ints");
    return this.#assemble([...this.#nodes, ...g.nodes], g.initializers, outputs);
  }

  #assemble(nodes: NodeProto[], initializers: TensorProto[], output: ValueInfoProto[]): ModelProto {
    const graph = edited(GraphProtoSchema, this.#model.graph!, {
      node: nodes,
      input: this.#inputs(),
      output,
      initializer: [...this.#model.graph!.initializer, ...initializers],
      valueInfo: [],
    });
    return edited(ModelProtoSchema, this.#model, { graph });
  }

  #probeSession(): Promise<GraphSession> {
    if (!this.#probe) this.#probe = this.#factory(this.#probeModel());
    return this.#probe;
  }

  /** Runs forward + loss only: the summed loss, no gradients. */
  async lossSum(feeds: Record<string, Tensor>): Promise<number> {
    const session = await this.#probeSession();
    const out = await session.run(feeds, {});
    return (out[LOSS_SUM_OUTPUT].data as Float32Array)[0];
  }

  async #probed(feeds: Record<string, Tensor>): Promise<Probed> {
    const session = await this.#probeSession();
    const out = await session.run(feeds, {});
    const shapes = new Map<string, number[]>();
    const ints = new Map<string, number[]>();
    for (const [name, [tensor, kind]] of this.#probeOutputs) {
      const values = Array.from(out[name].data as BigInt64Array, Number);
      (kind === "shape" ? shapes : ints).set(tensor, values);
    }
    return { shapes, ints };
  }

  #trainingSession(feeds: Record<string, Tensor>): Promise<GraphSession> {
    const key = Object.entries(feeds).map(([n, t]) => `${n}:${t.dims.join("x")}`).join(",");
    let session = this.#sessions.get(key);
    if (!session) {
      session = (async () => {
        const probed = { ...await this.#probed(feeds), constants: this.#constants };
        const g = new GradGraph(new Set(this.#taken), "/train/grad", opsetOf(this.#model));
        const grads = differentiate(this.#nodes, this.#region, LOSS_SUM_OUTPUT, this.#params, probed, g);
        const outputs = [this.#lossOutput()];
        for (const [param, grad] of grads) {
          g.named("Identity", [grad], [gradOutput(param)]);
          outputs.push(tensorValueInfo(gradOutput(param), TensorProto_DataType.FLOAT, probed.shapes.get(param)!));
        }
        // The rules' simplifications leave some nodes unread (an Expand whose consumers broadcast instead).
        g.prune(outputs.map((o) => o.name));
        return await this.#factory(this.#assemble([...this.#nodes, ...g.nodes], g.initializers, outputs));
      })();
      this.#sessions.set(key, session);
      session.catch(() => this.#sessions.get(key) === session && this.#sessions.delete(key));
      if (this.#sessions.size > MAX_SESSIONS) {
        // Bound memory: the least recently built shape's session goes (rebuilt if that shape returns).
        const [oldKey, old] = this.#sessions.entries().next().value!;
        this.#sessions.delete(oldKey);
        old.then((s) => s.release(), () => {});
      }
    }
    return session;
  }

  /** One forward and backward run: the summed loss and its gradient per trained input. */
  async run(feeds: Record<string, Tensor>): Promise<{ lossSum: number; grads: Map<string, Float32Array> }> {
    const session = await this.#trainingSession(feeds);
    const out = await session.run(feeds, {});
    const grads = new Map(this.#params.map((p) => [p, out[gradOutput(p)].data as Float32Array]));
    return { lossSum: (out[LOSS_SUM_OUTPUT].data as Float32Array)[0], grads };
  }

  /** Frees every session this graph made. */
  async release(): Promise<void> {
    const all = [...this.#sessions.values(), ...(this.#probe ? [this.#probe] : [])];
    this.#sessions.clear();
    this.#probe = undefined;
    await Promise.all(all.map(async (s) => (await s.catch(() => undefined))?.release()));
  }
}
