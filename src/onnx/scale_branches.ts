/**
 * Dynamic mode for per-channel scales (IA³): a module's input or output is
 * multiplied by a vector that is a graph input, fed `[rows, 1, n]` per run
 * (ones when no active adapter scales the module, so a run without the
 * adapter computes the base exactly; one row for a run whose rows share
 * one adapter set, else one per row):
 *
 *     input:   y = W (x * s)            (IA³'s feedforward_modules)
 *     output:  y = (W x + b) * s        (the other targets; the bias is scaled too)
 *
 * The scaled tensor is viewed `[rows, -1, n]` (rows are contiguous, batch
 * first, in any layout: `[batch, seq, n]`, or a Gemm's `[batch * seq, n]`),
 * multiplied, and reshaped back. Sites are found in the base graph (the
 * module's node, its bias `Add`) and applied by tensor and node names, so
 * they go on a graph that already has LoRA or parameter branches.
 * @module
 */
import {
  GraphProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  type NodeProto,
  NodeProtoSchema,
  TensorProto_DataType,
  type ValueInfoProto,
} from "../deps/onnx_proto.ts";
import { OnnxModelError, UnsupportedError } from "../errors.ts";
import { int64Constant, intAttribute, makeNode, nameAllocator, tensorValueInfo, usedNames } from "./graph_parts.ts";
import { edited } from "./proto_edit.ts";
import type { WeightTarget } from "./weight_target.ts";

/**
 * A scale site requested for a module (see {@linkcode addScaleBranches}).
 *
 * @example
 * ```ts
 * import type { ScaleRequest } from "./scale_branches.ts";
 * import type { WeightTarget } from "./weight_target.ts";
 * declare const target: WeightTarget;
 * const request: ScaleRequest = { target, input: true };
 * ```
 */
export interface ScaleRequest {
  /** The module's target in the base graph. */
  target: WeightTarget;
  /** Scale the module's input (else its output). */
  input: boolean;
}

/**
 * A scale input of a graph.
 *
 * @example
 * ```ts
 * import type { ScaleSite } from "./scale_branches.ts";
 * const dims = (s: ScaleSite, rows: number) => [rows, 1, s.features];
 * ```
 */
export interface ScaleSite {
  /** The module, as the export names it. */
  module: string;
  input: boolean;
  /** Input name, `[rows, 1, features]`. */
  scale: string;
  features: number;
  elementType: "float32" | "float16";
}

/**
 * The key of a module's scale site: one per module and side.
 *
 * @example
 * ```ts
 * import { scaleSiteKey } from "./scale_branches.ts";
 * scaleSiteKey("model.layers.0.mlp.down_proj", true); // "model.layers.0.mlp.down_proj:input"
 * ```
 */
export function scaleSiteKey(module: string, input: boolean): string {
  return `${module}:${input ? "input" : "output"}`;
}

/** The tensor a site scales, found in the base graph: the module's input, or its output with the bias added. */
function siteTensor(base: readonly NodeProto[], { target, input }: ScaleRequest): string {
  const fail = (why: string) =>
    new UnsupportedError(`a per-run scale of ${target.nodeName}: ${why}`, {
      key: target.module,
    });
  if (target.kind !== "linear") throw fail("only linear modules are scaled");
  if (target.quantized) throw fail('it is a quantized projection; use mode "merged" on a float export');
  if (target.inSubgraph) throw fail('its node sits inside an If subgraph; use mode "merged"');
  const node = base.find((n) => n.name === target.nodeName && target.nodeName !== "");
  if (!node || (node.opType !== "MatMul" && node.opType !== "Gemm")) {
    throw fail(`${node ? `it is a ${node.opType}` : "its node has no name"}, not a MatMul or Gemm`);
  }
  if (node.opType === "Gemm" && intAttribute(node, "transA", 0) !== 0) throw fail("its Gemm transposes the input");
  if (input) return node.input[0];
  const y = node.output[0];
  if (!target.bias || (node.opType === "Gemm" && (node.input[2] ?? "") !== "")) {
    if (target.outputFusedInto) throw fail(`its output goes to ${target.outputFusedInto}, which may hold the bias`);
    return y;
  }
  // MatMul then Add(bias): the bias reader, or an Add of the MatMul's output and what that reader makes of it.
  const reader = base[target.bias.readerIndex];
  const add = reader.opType === "Add" && reader.input.includes(y)
    ? reader
    : base.find((n) => n.opType === "Add" && n.input.includes(y) && n.input.includes(reader.output[0]));
  if (!add) throw fail("its bias Add was not found");
  return add.output[0];
}

function elementTypeOf(model: ModelProto, target: WeightTarget): "float32" | "float16" {
  const t = model.graph!.initializer.find((i) => i.name === target.initializer);
  if (t?.dataType === TensorProto_DataType.FLOAT16) return "float16";
  if (t && t.dataType !== TensorProto_DataType.FLOAT) {
    throw new UnsupportedError(`per-run scales support float32 and float16; ${t.name} has type ${t.dataType}`, {
      key: target.module,
    });
  }
  return "float32";
}

/**
 * Returns `model` with a scale input per request, and the sites by
 * {@linkcode scaleSiteKey}. `base` is the graph the targets were indexed in
 * (`model` may be it, or it with branches added).
 *
 * @throws {UnsupportedError} for a module that is not a float MatMul/Gemm of the main graph.
 * @throws {OnnxModelError} for a site whose node or tensor `model` no longer has.
 * @example
 * ```ts
 * import { addScaleBranches } from "./scale_branches.ts";
 * import { decodeModel } from "./model_file.ts";
 * import { indexWeights } from "./weight_index.ts";
 * import { readFile } from "node:fs/promises";
 * const base = decodeModel(await readFile("tests/fixtures/real/bases/llama-torchscript/onnx/model.onnx"), "model.onnx");
 * const target = indexWeights(base.graph!).resolve("model.layers.0.mlp.down_proj")!;
 * const { sites } = addScaleBranches(base, base, [{ target, input: true }]);
 * sites.get("model.layers.0.mlp.down_proj:input")?.features; // the module's in_features
 * ```
 */
export function addScaleBranches(
  model: ModelProto,
  base: ModelProto,
  requests: Iterable<ScaleRequest>,
): { model: ModelProto; sites: Map<string, ScaleSite> } {
  const graph = model.graph!;
  const fresh = nameAllocator(usedNames(graph));
  const nodes = graph.node.slice();
  const inputs: ValueInfoProto[] = [];
  const sites = new Map<string, ScaleSite>();
  // Nodes to insert before / after the node at an index (indices of `nodes`, which only gets nodes replaced).
  const before = new Map<number, NodeProto[]>();
  const after = new Map<number, NodeProto[]>();
  for (const request of requests) {
    const { target, input } = request;
    const key = scaleSiteKey(target.module, input);
    if (sites.has(key)) continue;
    const t = siteTensor(base.graph!.node, request);
    const features = input ? target.inFeatures : target.outFeatures;
    const elementType = elementTypeOf(model, target);
    const prefix = `scale.${key}`;
    const scale = fresh(prefix);
    const type = elementType === "float16" ? TensorProto_DataType.FLOAT16 : TensorProto_DataType.FLOAT;
    inputs.push(tensorValueInfo(scale, type, [`${prefix}.rows`, 1, features]));
    sites.set(key, { module: target.module, input, scale, features, elementType });
    const name = (n: string) => fresh(`${prefix}/${n}`);
    const p = `/${prefix}/`;
    const [shapeS, zero, rows, tail, shape3, t3, scaled3, shapeT] = [
      "scale_shape",
      "zero",
      "rows",
      "tail",
      "rows_shape",
      "rows_view",
      "scaled",
      "shape",
    ].map(name);
    // `from` scaled into `to`.
    const chain = (from: string, to: string) => [
      makeNode("Shape", [scale], [shapeS], `${p}ShapeScale`),
      int64Constant([0], [1], zero, `${p}zero`),
      makeNode("Gather", [shapeS, zero], [rows], `${p}GatherRows`, { axis: 0 }),
      int64Constant([-1, features], [2], tail, `${p}tail`),
      makeNode("Concat", [rows, tail], [shape3], `${p}Concat`, { axis: 0 }),
      makeNode("Reshape", [from, shape3], [t3], `${p}ReshapeRows`),
      makeNode("Mul", [t3, scale], [scaled3], `${p}Mul`),
      makeNode("Shape", [from], [shapeT], `${p}ShapeBack`),
      makeNode("Reshape", [scaled3, shapeT], [to], `${p}ReshapeBack`),
    ];
    if (input) {
      // Only the module's own node reads the scaled input (its q/k/v siblings read the same x unscaled).
      const at = nodes.findIndex((n) => n.name === target.nodeName);
      if (at < 0) throw new OnnxModelError(`node ${target.nodeName} is not in the graph`, { key: target.module });
      const node = nodes[at];
      if (node.input[0] !== t) {
        throw new OnnxModelError(`node ${target.nodeName} no longer reads ${t}`, { key: target.module });
      }
      const xs = name("input");
      nodes[at] = edited(NodeProtoSchema, node, { input: [xs, ...node.input.slice(1)] });
      before.set(at, [...(before.get(at) ?? []), ...chain(t, xs)]);
      continue;
    }
    const at = nodes.findIndex((n) => n.output.includes(t));
    if (at < 0) throw new OnnxModelError(`no node produces ${t}`, { key: target.module });
    const pre = name("unscaled");
    const node = nodes[at];
    nodes[at] = edited(NodeProtoSchema, node, { output: node.output.map((o) => o === t ? pre : o) });
    after.set(at, [...(after.get(at) ?? []), ...chain(pre, t)]);
  }
  const node = nodes.flatMap((n, i) => [...(before.get(i) ?? []), n, ...(after.get(i) ?? [])]);
  const out = edited(GraphProtoSchema, graph, { node, input: [...graph.input, ...inputs] });
  return { model: edited(ModelProtoSchema, model, { graph: out }), sites };
}
