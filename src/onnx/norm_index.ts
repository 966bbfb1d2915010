/**
 * Finding the parameters of normalization layers (`LayerNorm`, and the
 * norms of other architectures) by module name, for adapters that replace
 * them: PEFT's `bias: "all"` trains every bias of the model, a norm's
 * included, and `modules_to_save` can name a norm. A norm is exported as
 * one `LayerNormalization` node (scale input 1, bias input 2), or
 * decomposed (older opsets, RMSNorm) into ops ending in `Mul(x, weight)`
 * and, with a bias, `Add(that, bias)`; both are read from the node's
 * module scope. Exporters deduplicate equal initializers (a zero bias
 * shared by every norm, behind `Identity` nodes in TorchScript exports),
 * so each parameter is named by the node input that reads it.
 * @module
 */
import type { GraphProto, NodeProto, TensorProto } from "../deps/onnx_proto.ts";
import { nodeScope } from "./module_scope.ts";
import { floatElementType } from "./tensor_data.ts";
import type { InitializerUse, WeightTarget } from "./weight_target.ts";

/** A 1-D float initializer of `length` (any, when undefined) read by input `inputIndex` of node `readerIndex`, seen through Identity nodes. */
function vectorUse(
  graph: GraphProto,
  initializers: ReadonlyMap<string, TensorProto>,
  producers: ReadonlyMap<string, number>,
  readerIndex: number,
  inputIndex: number,
  length?: number,
): InitializerUse | undefined {
  const name = graph.node[readerIndex].input[inputIndex] ?? "";
  const t = initializers.get(name);
  if (!t) {
    const p = producers.get(name);
    const identity = p === undefined ? undefined : graph.node[p];
    if (identity?.opType === "Identity" && (identity.domain ?? "") === "" && initializers.has(identity.input[0])) {
      return vectorUse(graph, initializers, producers, p!, 0, length);
    }
    return undefined;
  }
  const ok = t.dims.length === 1 && (length === undefined || Number(t.dims[0]) === length) &&
    floatElementType(t.dataType) !== undefined;
  return ok ? { initializer: t.name, readerIndex, inputIndex } : undefined;
}

/**
 * A norm's parameters, as a `kind: "norm"` target (see {@linkcode indexNorms}).
 *
 * @example
 * ```ts
 * import type { NormTarget } from "./norm_index.ts";
 * const hasBias = (t: NormTarget) => t.bias !== undefined;
 * ```
 */
export interface NormTarget extends WeightTarget {
  kind: "norm";
  /** Index in `graph.node` of the node producing the norm's output. */
  outputIndex: number;
  /**
   * Whether the scale initializer is the module's `weight` itself (a
   * `LayerNormalization` node, or a decomposed norm's `Mul` reading the
   * tensor named `<module>.weight`, or another norm's `.weight` that the
   * exporter shared among equal norms). Otherwise the scale may be a folded
   * expression of it (Gemma's `1 + weight`), so it is not replaced.
   */
  scaleIsWeight: boolean;
  /** A decomposed norm's `Mul` by the scale (`nodeName` is then its bias `Add`, when it has one). */
  scaleNode?: string;
}

/** The other input of a binary node `node` that reads `from`, when `from` is one of its two inputs. */
const otherInput = (node: NodeProto, from: string) =>
  node.input.length === 2 && node.input.includes(from) ? node.input.indexOf(from) === 0 ? 1 : 0 : -1;

/**
 * Every norm of a graph whose parameters are initializers, by the module
 * scope of its nodes, as `kind: "norm"` targets: `initializer` (and
 * `readerIndex`/`inputIndex`) is the weight (scale), `bias` the bias when
 * the export has one, `nodeName`/`outputIndex` the node producing the
 * norm's output (the `LayerNormalization`, or the decomposed norm's last
 * `Mul`/`Add`). The first norm of a scope wins.
 *
 * @example
 * ```ts
 * import { indexNorms } from "./norm_index.ts";
 * import { decodeModel } from "./model_file.ts";
 * import { readFile } from "node:fs/promises";
 * const model = decodeModel(await readFile("tests/fixtures/real/bases/gpt2-torchscript/onnx/model.onnx"), "model.onnx");
 * indexNorms(model.graph!).get("transformer.h.0.ln_1")?.bias?.inputIndex; // 2
 * ```
 */
export function indexNorms(graph: GraphProto): Map<string, NormTarget> {
  const initializers = new Map<string, TensorProto>(graph.initializer.map((t) => [t.name, t]));
  const producers = new Map<string, number>();
  const readers = new Map<string, number[]>();
  graph.node.forEach((node, i) => {
    for (const out of node.output) producers.set(out, i);
    for (const input of node.input) {
      const list = readers.get(input);
      if (list) list.push(i);
      else readers.set(input, [i]);
    }
  });
  const norms = new Map<string, NormTarget>();
  const add = (
    module: string,
    nodeIndex: number,
    weight: InitializerUse,
    bias: InitializerUse | undefined,
    scaleIsWeight: boolean,
    scaleNode?: string,
  ) => {
    if (norms.has(module)) return;
    const features = Number(initializers.get(weight.initializer)!.dims[0]);
    norms.set(module, {
      module,
      kind: "norm",
      nodeName: graph.node[nodeIndex].name,
      outputIndex: nodeIndex,
      ...weight,
      layout: "in_out",
      inFeatures: features,
      outFeatures: features,
      ...(bias ? { bias } : {}),
      scaleIsWeight,
      ...(scaleNode !== undefined ? { scaleNode } : {}),
    });
  };
  graph.node.forEach((node, i) => {
    const domain = node.domain ?? "";
    const module = nodeScope(node)?.module;
    if (module === undefined || domain !== "") return;
    if (node.opType === "LayerNormalization") {
      const weight = vectorUse(graph, initializers, producers, i, 1);
      if (!weight) return;
      const n = Number(initializers.get(weight.initializer)!.dims[0]);
      const bias = (node.input[2] ?? "") === "" ? undefined : vectorUse(graph, initializers, producers, i, 2, n);
      // A B input that is not a plain initializer (computed, cast): not a bias this index can replace.
      if ((node.input[2] ?? "") !== "" && !bias) return;
      add(module, i, weight, bias, true);
      return;
    }
    if (node.opType !== "Mul") return;
    // Decomposed: `normalized * weight` (+ bias), all in the norm's own scope.
    if (node.input.length !== 2) return;
    const wIndex = [1, 0].find((k) => vectorUse(graph, initializers, producers, i, k) !== undefined);
    if (wIndex === undefined || !isNormScope(graph, producers, node.input[1 - wIndex], module)) return;
    const weight = vectorUse(graph, initializers, producers, i, wIndex)!;
    const n = Number(initializers.get(weight.initializer)!.dims[0]);
    const next = (readers.get(node.output[0]) ?? []).map((r) => [graph.node[r], r] as const)
      .find(([r]) => r.opType === "Add" && (r.domain ?? "") === "" && nodeScope(r)?.module === module);
    const biasAt = next ? otherInput(next[0], node.output[0]) : -1;
    const bias = next && biasAt >= 0 ? vectorUse(graph, initializers, producers, next[1], biasAt, n) : undefined;
    // The scale is the parameter itself when read under its own name (not a folded `1 + weight`).
    const named = node.input[wIndex] === `${module}.weight`;
    add(module, bias ? next![1] : i, weight, bias, named, node.name);
  });
  // Dynamo exports share one initializer among norms with equal weights (every RMSNorm's ones), under the
  // first one's name: a scale read as another norm's own `.weight` is this norm's weight too (a folded
  // `1 + weight` is a computed tensor of another name).
  for (const norm of norms.values()) {
    if (norm.scaleIsWeight || norm.scaleNode === undefined) continue;
    const owner = norm.initializer.endsWith(".weight") ? norms.get(norm.initializer.slice(0, -7)) : undefined;
    if (owner?.scaleIsWeight && owner.initializer === norm.initializer) norm.scaleIsWeight = true;
  }
  return norms;
}

/** Whether `input` is computed in `module`'s scope by a normalization (a Div or Mul by a root of the variance). */
function isNormScope(graph: GraphProto, producers: ReadonlyMap<string, number>, input: string, module: string) {
  // Walk back a few ops within the scope looking for the Sqrt/Reciprocal of a ReduceMean: a norm, not a gate.
  const seen = new Set<number>();
  const queue = [input];
  while (queue.length > 0 && seen.size < 12) {
    const p = producers.get(queue.shift()!);
    if (p === undefined || seen.has(p)) continue;
    seen.add(p);
    const node = graph.node[p];
    if (nodeScope(node)?.module !== module) continue;
    if (["Sqrt", "Reciprocal", "ReduceMean"].includes(node.opType)) return true;
    queue.push(...node.input);
  }
  return false;
}
