/**
 * Graph surgery for prompt learning (prompt tuning, P-tuning): the decoder
 * gets one more input, {@linkcode PROMPT_INPUT} (`[batch, virtual, hidden]`
 * float32), whose rows replace the first `virtual` rows of the token
 * embedding module's output. The caller feeds `virtual` placeholder ids
 * before the real ones, so every shape the export derives from `input_ids`
 * (masks, positions) already counts the virtual tokens; only the embeddings
 * change. With `virtual = 0` the graph computes exactly the base, so one
 * session serves every prompt adapter and the decode steps after the prefill.
 * @module
 */
import {
  AttributeProtoSchema,
  type GraphProto,
  GraphProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  type NodeProto,
  NodeProtoSchema,
  TensorProto_DataType,
} from "../deps/onnx_proto.ts";
import { OnnxModelError } from "../errors.ts";
import { makeNode, nameAllocator, rawTensor, tensorValueInfo, usedNames } from "./graph_parts.ts";
import { edited } from "./proto_edit.ts";

/**
 * The name of the input that carries the virtual token embeddings.
 *
 * @example
 * ```ts
 * import { PROMPT_INPUT } from "./prompt_surgery.ts";
 * PROMPT_INPUT; // "peft_edge.prompt_embeds"
 * ```
 */
export const PROMPT_INPUT = "peft_edge.prompt_embeds";

/** Ops that carry token ids unchanged in value (GPT-2 reshapes them before the lookup). */
const ID_PASSING = new Set(["Reshape", "Cast", "Identity", "Flatten"]);

/** Where the token embedding module ends in one graph. */
interface EmbeddingSite {
  /** Index of the node whose output is the module's output (the Gather, or Gemma's scaling Mul after it). */
  producer: number;
  /** Embedding width, when the table is an initializer. */
  hidden?: number;
  /** Element type of the embeddings (the table's). */
  elemType: number;
}

/** What {@linkcode findTokenEmbedding} tells about a graph's token embedding. */
export interface TokenEmbedding {
  /** Embedding width (the table's second dimension). */
  hidden?: number;
  /** ONNX element type of the embeddings. */
  elemType: number;
}

function scalarConstant(graph: GraphProto, outer: GraphProto, name: string): boolean {
  const init = [...graph.initializer, ...outer.initializer].find((t) => t.name === name);
  if (init) return init.dims.reduce((n, d) => n * Number(d), 1) <= 1;
  return graph.node.some((n) => n.opType === "Constant" && n.output[0] === name);
}

/** The token embedding lookup of one graph (ids traced from `input_ids`), or undefined. */
function siteIn(graph: GraphProto, outer: GraphProto, ids: Set<string>): EmbeddingSite | undefined {
  const traced = new Set(ids);
  for (let i = 0; i < graph.node.length; i++) {
    const node = graph.node[i];
    if (ID_PASSING.has(node.opType) && traced.has(node.input[0])) {
      for (const o of node.output) traced.add(o);
      continue;
    }
    const axis = node.attribute.find((a) => a.name === "axis");
    if (node.opType !== "Gather" || node.domain !== "" || !traced.has(node.input[1]) || Number(axis?.i ?? 0) !== 0) {
      continue;
    }
    const table = [...graph.initializer, ...outer.initializer].find((t) => t.name === node.input[0]);
    if (table && table.dims.length !== 2) continue;
    let producer = i;
    let elemType = table?.dataType ?? TensorProto_DataType.FLOAT;
    // The module's output can be further on: after a quantized table's DequantizeLinear (quantize_dynamic), and
    // after Gemma's scaling Mul (`embed_scale`), each the only reader of what precedes it.
    for (;;) {
      const out = graph.node[producer].output[0];
      const readers = graph.node.map((n, j) => [n, j] as const).filter(([n]) => n.input.includes(out));
      if (readers.length !== 1) break;
      const [next, j] = readers[0];
      const other = next.input.find((x) => x !== out);
      if (next.opType === "DequantizeLinear" && next.input[0] === out) {
        const scale = [...graph.initializer, ...outer.initializer].find((t) => t.name === next.input[1]);
        elemType = scale?.dataType ?? TensorProto_DataType.FLOAT;
      } else if (!(next.opType === "Mul" && other !== undefined && scalarConstant(graph, outer, other))) {
        break;
      }
      producer = j;
    }
    return { producer, hidden: table ? Number(table.dims[1]) : undefined, elemType };
  }
  return undefined;
}

function subgraphs(graph: GraphProto): GraphProto[] {
  return graph.node.flatMap((n) => n.attribute.flatMap((a) => (a.g ? [a.g] : [])));
}

/**
 * The token embedding of a decoder graph (the lookup of `input_ids`, in
 * the graph or in the branches of a merged decoder's `If`).
 *
 * @throws {OnnxModelError} when no lookup of `input_ids` is found.
 * @example
 * ```ts
 * import { findTokenEmbedding } from "./prompt_surgery.ts";
 * import type { ModelProto } from "../deps/onnx_proto.ts";
 * declare const model: ModelProto;
 * findTokenEmbedding(model.graph!, "onnx/model.onnx").hidden; // 128 for byte-llama
 * ```
 */
export function findTokenEmbedding(graph: GraphProto, file: string): TokenEmbedding {
  const ids = new Set(["input_ids"]);
  const site = siteIn(graph, graph, ids) ?? subgraphs(graph).map((g) => siteIn(g, graph, ids)).find(Boolean);
  if (!site) {
    throw new OnnxModelError(
      "prompt learning needs the token embedding lookup (a Gather of input_ids), and the graph has none",
      { file, key: "input_ids" },
    );
  }
  return { hidden: site.hidden, elemType: site.elemType };
}

/**
 * The model with {@linkcode PROMPT_INPUT}: its rows replace the first rows
 * of the token embeddings. The original model is not changed; weights are
 * shared, not copied.
 *
 * @example
 * ```ts
 * import { withPromptInput } from "./prompt_surgery.ts";
 * import type { ModelProto } from "../deps/onnx_proto.ts";
 * declare const model: ModelProto;
 * const prompted = withPromptInput(model, "onnx/model.onnx", 128);
 * ```
 */
export function withPromptInput(model: ModelProto, file: string, hidden: number): ModelProto {
  const graph = model.graph!;
  const fresh = nameAllocator(usedNames(graph));
  const constants = {
    one: fresh("peft_edge.prompt.one"),
    two: fresh("peft_edge.prompt.two"),
    zero: fresh("peft_edge.prompt.zero"),
    end: fresh("peft_edge.prompt.end"),
  };
  const int64 = (name: string, value: bigint) => {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigInt64(0, value, true);
    return rawTensor(name, TensorProto_DataType.INT64, [1], bytes);
  };
  let sites = 0;
  const rewrite = (g: GraphProto): GraphProto => {
    const site = siteIn(g, graph, new Set(["input_ids"]));
    const nodes: NodeProto[] = [];
    g.node.forEach((node, i) => {
      const withSubgraphs = node.attribute.some((a) => a.g)
        ? edited(NodeProtoSchema, node, {
          attribute: node.attribute.map((a) => (a.g ? edited(AttributeProtoSchema, a, { g: rewrite(a.g) }) : a)),
        })
        : node;
      if (!site || i !== site.producer) {
        nodes.push(withSubgraphs);
        return;
      }
      sites++;
      const out = node.output[0];
      const raw = fresh(`${out}.peft_edge_raw`);
      const n = (what: string) => fresh(`/peft_edge/prompt/${what}`);
      const shape = n("shape"), count = n("count"), tail = n("tail");
      nodes.push(edited(NodeProtoSchema, node, { output: [raw, ...node.output.slice(1)] }));
      nodes.push(makeNode("Shape", [PROMPT_INPUT], [shape], shape));
      nodes.push(makeNode("Slice", [shape, constants.one, constants.two, constants.zero], [count], count));
      nodes.push(makeNode("Slice", [raw, count, constants.end, constants.one], [tail], tail));
      let prompt = PROMPT_INPUT;
      if (site.elemType !== TensorProto_DataType.FLOAT) {
        prompt = n("cast");
        nodes.push(makeNode("Cast", [PROMPT_INPUT], [prompt], prompt, { to: site.elemType }));
      }
      nodes.push(makeNode("Concat", [prompt, tail], [out], n("concat"), { axis: 1 }));
    });
    return edited(GraphProtoSchema, g, { node: nodes });
  };
  const rewritten = rewrite(graph);
  if (sites === 0) findTokenEmbedding(graph, file); // throws, naming the file
  const result = edited(GraphProtoSchema, rewritten, {
    input: [
      ...graph.input,
      tensorValueInfo(PROMPT_INPUT, TensorProto_DataType.FLOAT, ["batch_size", "virtual", hidden]),
    ],
    initializer: [
      ...graph.initializer,
      int64(constants.zero, 0n),
      int64(constants.one, 1n),
      int64(constants.two, 2n),
      int64(constants.end, 9223372036854775807n),
    ],
  });
  return edited(ModelProtoSchema, model, { graph: result });
}

/**
 * Whether the graph picks a position by an `ArgMax` over values computed
 * from `input_ids` (in the graph or its subgraphs): a decoder classifier's
 * export finds its last non-pad token that way, where an encoder's pools a
 * fixed position.
 *
 * @example
 * ```ts
 * import { poolsByTokenIds } from "./prompt_surgery.ts";
 * import type { ModelProto } from "../deps/onnx_proto.ts";
 * declare const model: ModelProto;
 * poolsByTokenIds(model.graph!); // false for BERT's classifier, true for LlamaForSequenceClassification's
 * ```
 */
export function poolsByTokenIds(graph: GraphProto): boolean {
  const traced = new Set(["input_ids"]);
  const visit = (g: GraphProto): boolean => {
    for (const node of g.node) {
      const subgraphs = node.attribute.filter((a) => a.g).map((a) => a.g!);
      // A subgraph reads outer values by name; its node's outputs count as traced (a merged decoder's If).
      if (subgraphs.some(visit)) return true;
      if (subgraphs.length === 0 && !node.input.some((i) => traced.has(i))) continue;
      if (node.opType === "ArgMax") return true;
      for (const o of node.output) traced.add(o);
    }
    return false;
  };
  return visit(graph);
}
