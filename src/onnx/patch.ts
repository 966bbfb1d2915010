/**
 * Producing a patched copy of a model: replaced initializers, and copies
 * for initializers that other nodes also read (tied embeddings), so an
 * adapter never changes a weight it does not target. The input model is
 * never mutated; unchanged parts are shared, not copied.
 * @module
 */
import {
  GraphProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  type NodeProto,
  NodeProtoSchema,
  type TensorProto,
  TensorProtoSchema,
} from "../deps/onnx_proto.ts";
import { UnsupportedError } from "../errors.ts";
import { makeNode } from "./graph_parts.ts";
import { edited } from "./proto_edit.ts";
import type { TensorUpdate } from "./requantize.ts";
import { writeFloatTensor } from "./tensor_data.ts";
import type { InitializerUse, WeightIndex } from "./weight_target.ts";

/** New float values for an initializer as read by one node input. */
export interface WeightUpdate extends InitializerUse {
  /** Module the update belongs to (names the copy of a shared initializer). */
  module: string;
  values: Float32Array;
  /** The values are for every reader of the initializer (a whole 3-D expert stack), not only this one. */
  allReaders?: boolean;
}

/**
 * A bias for a layer that has none (LoRA's `lora_B.bias` on a bias-less
 * Linear): added to the output of node `readerIndex` (a `MatMul`, or a
 * `Gemm` without C, or a quantized projection's last node), stored in the
 * element type of `like` (its weight, or a quantized weight's scales).
 */
export interface BiasAddition {
  module: string;
  readerIndex: number;
  /** The node to add the bias to, when not `readerIndex` (a weight read through a Transpose or Cast). */
  nodeName?: string;
  like: string;
  values: Float32Array;
  /** A trained bias (named as one in errors and in the graph), not `lora_B.bias`. */
  replaces?: boolean;
}

/** Nodes whose float output a bias can be added to: a MatMul, and a quantized projection's last node. */
const ADDABLE = new Set(["MatMul", "MatMulNBits", "Mul"]);

/**
 * Returns a new model with the updates applied (and new biases added):
 * float values ({@linkcode WeightUpdate}) or whole new tensors
 * (`TensorUpdate`, a re-quantized weight's codes, scales and zero points).
 *
 * @example
 * ```ts
 * import { patchModel } from "./patch.ts";
 * import type { WeightUpdate } from "./patch.ts";
 * import type { WeightIndex } from "./weight_target.ts";
 * import type { ModelProto } from "../deps/onnx_proto.ts";
 * declare const model: ModelProto, weights: WeightIndex, updates: WeightUpdate[];
 * const patched = patchModel(model, weights, updates);
 * console.log(patched !== model); // true: the input is never mutated
 * ```
 */
export function patchModel(
  model: ModelProto,
  weights: WeightIndex,
  updates: readonly (WeightUpdate | TensorUpdate)[],
  biases: readonly BiasAddition[] = [],
): ModelProto {
  const graph = model.graph!;
  const byName = new Map(graph.initializer.map((t) => [t.name, t]));
  // Float values become a tensor in the original's element type; re-quantized ones come as tensors.
  const asTensor = (u: WeightUpdate | TensorUpdate): TensorUpdate =>
    "tensor" in u ? u : {
      module: u.module,
      initializer: u.initializer,
      uses: u.allReaders
        ? weights.consumers(u.initializer).map((r) => ({
          readerIndex: r,
          inputIndex: graph.node[r].input.indexOf(u.initializer),
        }))
        : [{ readerIndex: u.readerIndex, inputIndex: u.inputIndex }],
      tensor: writeFloatTensor(byName.get(u.initializer)!, u.initializer, u.values),
    };
  const tensorUpdates = updates.map(asTensor);
  const updatesPer = new Map<string, number>();
  for (const u of tensorUpdates) updatesPer.set(u.initializer, (updatesPer.get(u.initializer) ?? 0) + 1);

  const replaced = new Map<string, TensorProto>();
  const added: TensorProto[] = [];
  const nodes: NodeProto[] = graph.node.slice();
  for (const u of tensorUpdates) {
    const readers = weights.consumers(u.initializer);
    const exclusive = updatesPer.get(u.initializer) === 1 &&
      readers.every((r) => u.uses.some((use) => use.readerIndex === r));
    if (exclusive) {
      replaced.set(u.initializer, u.tensor);
      continue;
    }
    if (u.uses.some((use) => use.inputIndex < 0)) {
      // Read inside an If's branches (merged decoder) and elsewhere too: a per-node copy
      // would need the subgraphs rewritten; refuse rather than patch one reader of several.
      throw new UnsupportedError(
        `${u.initializer} is shared with other nodes and read inside a subgraph; it cannot be patched for one reader`,
        { key: u.module },
      );
    }
    // Shared: give this module's readers their own patched copy, leave the others on the original.
    const name = `${u.initializer}::peft_edge::${u.module}`;
    added.push(edited(TensorProtoSchema, u.tensor, { name }));
    for (const use of u.uses) {
      const node = nodes[use.readerIndex];
      const input = node.input.slice();
      input[use.inputIndex] = name;
      nodes[use.readerIndex] = edited(NodeProtoSchema, node, { input });
    }
  }

  const after = new Map<number, NodeProto>();
  for (const b of biases) {
    const named = b.nodeName ? nodes.findIndex((n) => n.name === b.nodeName) : -1;
    const at = named >= 0 ? named : b.readerIndex;
    const node = nodes[at];
    const name = `${b.like}::peft_edge::${b.module}::${b.replaces ? "bias" : "lora_bias"}`;
    const tensor = writeFloatTensor(byName.get(b.like)!, name, b.values);
    tensor.dims = [BigInt(b.values.length)];
    added.push(tensor);
    if (["Gemm", "LayerNormalization"].includes(node.opType) && (node.input[2] ?? "") === "") {
      nodes[at] = edited(NodeProtoSchema, node, { input: [node.input[0], node.input[1], name] });
    } else if (ADDABLE.has(node.opType) && node.output.length === 1) {
      // y = MatMul(x, W) becomes y = Add(MatMul(x, W), bias); readers of y are unchanged.
      const inner = `${node.output[0]}::peft_edge::no_bias`;
      nodes[at] = edited(NodeProtoSchema, node, { output: [inner] });
      after.set(at, makeNode("Add", [inner, name], [node.output[0]], `${node.name}::peft_edge::lora_bias`));
    } else {
      throw new UnsupportedError(
        `${b.replaces ? "the trained bias" : "lora_B.bias"} needs a bias on ${
          node.name || node.opType
        }, which has none in the export and is a ${node.opType} peft-edge cannot add one to`,
        { key: b.module },
      );
    }
  }
  if (after.size > 0) {
    nodes.splice(0, nodes.length, ...nodes.flatMap((n, i) => [n, ...(after.has(i) ? [after.get(i)!] : [])]));
  }

  // An original whose every reader moved to copies is dead weight; drop it.
  // Only updated initializers are considered, so subgraph references are safe.
  const stillRead = new Set(nodes.flatMap((n) => n.input).concat(graph.output.map((o) => o.name)));
  const initializer = graph.initializer
    .filter((t) => !updatesPer.has(t.name) || replaced.has(t.name) || stillRead.has(t.name))
    .map((t) => replaced.get(t.name) ?? t)
    .concat(added);
  return edited(ModelProtoSchema, model, { graph: edited(GraphProtoSchema, graph, { node: nodes, initializer }) });
}
