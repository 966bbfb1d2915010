/**
 * Module paths of a quantized dynamo export, recovered from the export it
 * was quantized from. A dynamo export keeps each node's module path only in
 * the node's metadata; onnxruntime's quantizers put new nodes in place of
 * the MatMuls without it (`quantized_names.ts`), so their modules are
 * unknown. The unquantized export (`onnx/model.onnx` beside
 * `onnx/model_q4.onnx`, as Optimum and onnx-community folders hold them)
 * still has the metadata, on the node each quantizer rule leads back to.
 *
 * Neighbours give no exact substitute: the nodes around a projection are in
 * its parent's scope (`...self_attn`), and which of the parent's linears a
 * node was (`q_proj`, `k_proj`, `v_proj` read the same input) would be a
 * guess from graph order, so without that export the modules stay unknown.
 * @module
 */
import type { GraphProto, NodeProto } from "../deps/onnx_proto.ts";
import { nodeScope } from "./module_scope.ts";
import { quantizedOrigin } from "./quantized_names.ts";

function forEachNode(graph: GraphProto, visit: (node: NodeProto) => void): void {
  for (const node of graph.node) {
    visit(node);
    for (const a of node.attribute) {
      if (a.g) forEachNode(a.g, visit);
      for (const g of a.graphs) forEachNode(g, visit);
    }
  }
}

/**
 * The nodes of a graph (subgraphs included) that an onnxruntime quantizer
 * put in place of another and that name no module (no metadata, no scoped
 * name).
 *
 * @example
 * ```ts
 * import { unscopedQuantizedNodes } from "./scope_recovery.ts";
 * import { decodeModel } from "./model_file.ts";
 * import { readFile } from "node:fs/promises";
 * const q4 = decodeModel(await readFile("tests/fixtures/index/llama-dynamo/onnx/model_q4.onnx"), "model_q4.onnx");
 * console.log(unscopedQuantizedNodes(q4.graph!).map((n) => n.name)); // ["node_linear_Q4", ...]
 * ```
 */
export function unscopedQuantizedNodes(graph: GraphProto): NodeProto[] {
  const found: NodeProto[] = [];
  forEachNode(graph, (node) => {
    if (quantizedOrigin(node) !== undefined && nodeScope(node) === undefined) found.push(node);
  });
  return found;
}

/**
 * What {@linkcode restoreQuantizedScopes} did: how many nodes got their
 * module path back, or why the other export was not trusted (then nothing
 * was changed).
 *
 * @example
 * ```ts
 * import type { ScopeRecovery } from "./scope_recovery.ts";
 * const say = (r: ScopeRecovery) => "untrusted" in r ? r.untrusted : `${r.restored} restored`;
 * ```
 */
export type ScopeRecovery = { restored: number } | { untrusted: string };

/**
 * Gives each quantized node the metadata (module path, classes) of the node
 * it replaced in `unquantized`, the graph it was quantized from. That graph
 * is trusted only if, for every node, the node the quantizer's naming rule
 * leads to exists there once, with the op, inputs (activation and weight)
 * and output the rule says; otherwise nothing is changed. Nodes whose
 * original has no metadata either are left as they are.
 *
 * @param nodes Nodes of the quantized graph, from {@linkcode unscopedQuantizedNodes}; changed in place.
 * @param unquantized The other export's graph (its nodes suffice, see `decodeGraphNodes`).
 * @param file That export's file, named in the reason it is not trusted.
 *
 * @example
 * ```ts
 * import { restoreQuantizedScopes, unscopedQuantizedNodes } from "./scope_recovery.ts";
 * import { decodeGraphNodes, decodeModel } from "./model_file.ts";
 * import { readFile } from "node:fs/promises";
 * const dir = "tests/fixtures/index/llama-dynamo/onnx";
 * const q4 = decodeModel(await readFile(`${dir}/model_q4.onnx`), "model_q4.onnx");
 * const fp32 = decodeGraphNodes(await readFile(`${dir}/model.onnx`), "model.onnx");
 * restoreQuantizedScopes(unscopedQuantizedNodes(q4.graph!), fp32, "onnx/model.onnx"); // { restored: 15 }
 * ```
 */
export function restoreQuantizedScopes(
  nodes: readonly NodeProto[],
  unquantized: GraphProto,
  file: string,
): ScopeRecovery {
  const byName = new Map<string, NodeProto[]>();
  forEachNode(unquantized, (node) => byName.set(node.name, [...byName.get(node.name) ?? [], node]));
  const pairs: Array<[NodeProto, NodeProto]> = [];
  for (const node of nodes) {
    const origin = quantizedOrigin(node);
    if (!origin) continue;
    const candidates = byName.get(origin.node) ?? [];
    const why = (detail: string) => ({
      untrusted: `${file} is not the export ${node.name} was quantized from: ${detail}`,
    });
    if (candidates.length !== 1) {
      return why(candidates.length === 0 ? `it has no node ${origin.node}` : `it has several nodes ${origin.node}`);
    }
    const [original] = candidates;
    if (original.opType !== origin.opType || (original.domain ?? "") !== "") {
      return why(`its node ${origin.node} is a ${original.opType}, not a ${origin.opType}`);
    }
    const [a, b] = origin.inputs;
    if (original.input[0] !== a || original.input[1] !== b) {
      return why(`its node ${origin.node} reads ${original.input.slice(0, 2).join(", ")}, not ${a}, ${b}`);
    }
    if (!origin.outputs.includes(original.output[0] ?? "")) {
      return why(`its node ${origin.node} writes ${original.output[0]}, not ${origin.outputs.join(" or ")}`);
    }
    if (nodeScope(original) !== undefined && original.metadataProps.length > 0) pairs.push([node, original]);
  }
  for (const [node, original] of pairs) node.metadataProps = [...original.metadataProps];
  return { restored: pairs.length };
}
