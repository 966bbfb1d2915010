/**
 * DoRA's training form with `lora_dropout` on a branched graph
 * (`addLoraBranches` with `dora`, whose branch computes
 * `y = (m/n)·(x W + s·(x A^T) B^T)` + bias): PEFT's DoRA runs the dropped
 * input through the base weight too (`DoraLinearVariant.forward` passes
 * `base_result=None` in training), giving
 * `y = x W + (m/n - 1)·(drop(x) W) + (m/n)·s·B A drop(x)` + bias.
 * @module
 */
import { GraphProtoSchema, type ModelProto, ModelProtoSchema, type NodeProto } from "../deps/onnx_proto.ts";
import { NodeProtoSchema } from "../deps/onnx_proto.ts";
import { UnsupportedError } from "../errors.ts";
import type { LoraBranch } from "../onnx/lora_branches.ts";
import { makeNode, nameAllocator, usedNames } from "../onnx/graph_parts.ts";
import { edited } from "../onnx/proto_edit.ts";

/** The DoRA scale's `Mul` of a branch, and the `Add` of base and delta that feeds it. */
function doraNodes(nodes: readonly NodeProto[], branch: LoraBranch): { mul: number; add: number } {
  const mul = nodes.findIndex((n) => n.opType === "Mul" && n.input[1] === branch.scale);
  const add = mul < 0 ? -1 : nodes.findIndex((n) => n.opType === "Add" && n.output[0] === nodes[mul].input[0]);
  if (mul < 0 || add < 0) throw new UnsupportedError("no DoRA scale in this module's branch", { key: branch.module });
  return { mul, add };
}

function rebuilt(model: ModelProto, node: NodeProto[]): ModelProto {
  return edited(ModelProtoSchema, model, { graph: edited(GraphProtoSchema, model.graph!, { node }) });
}

/**
 * PEFT's DoRA dropout on branches whose A product already reads the dropped
 * input (`x * mask`, the mask `Mul` right before it): the scaled sum takes
 * `drop(x) W` (a second product with the base weight) and `x W - drop(x) W`
 * is added back.
 *
 * @throws {UnsupportedError} when a branch's base product is not a MatMul or Gemm on the branch's own input.
 * @example
 * ```ts
 * import { withDoraDropout } from "./dora_graph.ts";
 * import type { ModelProto } from "../deps/onnx_proto.ts";
 * import type { LoraBranch } from "../onnx/lora_branches.ts";
 * declare const dropped: ModelProto; // branched, with dropout masks before the A products
 * declare const q: LoraBranch;
 * const model = withDoraDropout(dropped, [q]);
 * ```
 */
export function withDoraDropout(model: ModelProto, branches: readonly LoraBranch[]): ModelProto {
  const nodes = [...model.graph!.node];
  const fresh = nameAllocator(usedNames(model.graph!));
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => n.output.forEach((o) => producer.set(o, i)));
  const before = new Map<number, NodeProto[]>();
  const after = new Map<number, NodeProto[]>();
  for (const branch of branches) {
    const refuse = (why: string) => new UnsupportedError(`DoRA with lora_dropout: ${why}`, { key: branch.module });
    const { mul, add } = doraNodes(nodes, branch);
    const aProduct = nodes.find((n) => n.opType === "MatMul" && n.input[1] === branch.a);
    const maskMul = aProduct && nodes[producer.get(aProduct.input[0]) ?? -1];
    if (!aProduct || maskMul?.opType !== "Mul") throw refuse("the branch's input is not dropped");
    const [x, dropped] = [maskMul.input[0], aProduct.input[0]];
    const base = nodes[add].input[0];
    const p = nodes[producer.get(base) ?? -1];
    const transA = p?.attribute.find((a) => a.name === "transA");
    if (!p || !["MatMul", "Gemm"].includes(p.opType) || p.input[0] !== x || (transA && Number(transA.i) !== 0)) {
      throw refuse("the base product is not a MatMul or Gemm on the branch's input");
    }
    const baseDropped = fresh(`${base}_dropped`);
    const input = p.input.slice();
    input[0] = dropped;
    before.set(add, [edited(NodeProtoSchema, p, { input, output: [baseDropped], name: `${p.name}_dora_dropout` })]);
    nodes[add] = edited(NodeProtoSchema, nodes[add], { input: [baseDropped, nodes[add].input[1]] });
    const y = nodes[mul].output[0];
    const [scaled, rest] = [fresh(`${y}_dropped`), fresh(`${base}_undropped`)];
    nodes[mul] = edited(NodeProtoSchema, nodes[mul], { output: [scaled] });
    after.set(mul, [
      makeNode("Sub", [base, baseDropped], [rest], `${p.name}_dora_dropout_Sub`),
      makeNode("Add", [scaled, rest], [y], `${p.name}_dora_dropout_Add`),
    ]);
  }
  return rebuilt(model, nodes.flatMap((n, i) => [...(before.get(i) ?? []), n, ...(after.get(i) ?? [])]));
}
