/**
 * Dynamic mode for adapters that replace parameters rather than add a
 * low-rank delta, so they too are chosen per run by feeds, in one session:
 *
 * - a **bias delta** (a norm's trained bias, `bias: "all"`): the norm's
 *   output gets `+ delta`, fed `[rows, 1, n]` (`adapter - base` bias, zeros
 *   when off), per row through a `[rows, -1, n]` view;
 * - a **fed module** (`modules_to_save`: a whole Linear or Embedding replaced):
 *   the module's parameters become graph inputs holding the `K` distinct
 *   parameter sets of a run (the base's own copy among them when some row
 *   runs without it), and each row picks its set.
 *
 *   Linear: `y_all = x @ W + b` with `W` `[in, K*out]` (the sets side by
 *   side) and `b` `[K*out]`; `y_all` is viewed `[rows, n, K, out]` and row
 *   `i` takes set `k_i` (`select` `[rows]`, fed `i*K + k_i`, gathers the
 *   rows of `[rows*K, n*out]`). With one set (K = 1) this is the module's own
 *   `x @ W + b`; mixed batches compute K products, and the graph holds no
 *   copy of the weight (the export's initializer is dropped).
 *
 *   Embedding: `W` `[K*num, dim]` (the tables stacked) and `offset`
 *   `[rows, 1]` (fed `k_i*num`) added to the ids before the Gather;
 * - a **fed norm** (`modules_to_save` naming a norm): the norm normalizes
 *   with scale 1 and no bias, then each row's `weight` and `bias` (fed
 *   `[rows, 1, n]`) apply.
 *
 * Fed modules and norms are exact: a set's values are used as they are,
 * never as a difference from the base's. They are added after `addLoraBranches`, on
 * modules that have no LoRA branch.
 * @module
 */
import {
  GraphProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  type NodeProto,
  NodeProtoSchema,
  type TensorProto,
  TensorProto_DataType,
  type ValueInfoProto,
} from "../deps/onnx_proto.ts";
import { OnnxModelError, UnsupportedError } from "../errors.ts";
import { int64Constant, makeNode, nameAllocator, tensorValueInfo, usedNames } from "./graph_parts.ts";
import type { NormTarget } from "./norm_index.ts";
import { edited } from "./proto_edit.ts";
import { writeFloatTensor } from "./tensor_data.ts";
import type { WeightIndex, WeightTarget } from "./weight_target.ts";

/**
 * A bias delta input added to a module's output.
 *
 * @example
 * ```ts
 * import type { BiasDeltaSite } from "./param_branches.ts";
 * const dims = (s: BiasDeltaSite, rows: number) => [rows, 1, s.features];
 * ```
 */
export interface BiasDeltaSite {
  kind: "delta";
  module: string;
  /** Input name, `[rows, 1, features]`. */
  delta: string;
  features: number;
  elementType: "float32" | "float16";
}

/**
 * A module whose parameters are fed per run (see the module doc).
 *
 * @example
 * ```ts
 * import type { FedModuleSite } from "./param_branches.ts";
 * const isTable = (s: FedModuleSite) => s.kind === "embedding";
 * ```
 */
export interface FedModuleSite {
  kind: "linear" | "embedding";
  module: string;
  /** Linear: `[in, K*out]`; embedding: `[K*num, dim]`. */
  weight: string;
  /** Linear only: `[K*out]`. */
  bias?: string;
  /** Linear: int64 `[rows]` (`i*K + k_i`); embedding: int64 `[rows, 1]` (`k_i*num`). */
  select: string;
  inFeatures: number;
  outFeatures: number;
  elementType: "float32" | "float16";
  /** The export's own parameters in the fed layout (`[in, out]`, `[num, dim]`; bias zeros if it has none). */
  base: { weight: Float32Array; bias: Float32Array };
}

/**
 * A norm whose weight and bias are fed per run, per row (`modules_to_save`
 * naming a norm): the graph normalizes with scale 1 and no bias, then
 * applies the row's `weight` and `bias`, both `[rows, 1, features]`.
 *
 * @example
 * ```ts
 * import type { NormSite } from "./param_branches.ts";
 * const dims = (s: NormSite, rows: number) => [rows, 1, s.features];
 * ```
 */
export interface NormSite {
  kind: "norm";
  module: string;
  weight: string;
  bias: string;
  features: number;
  elementType: "float32" | "float16";
  /** The export's own weight and bias (zeros if it has none). */
  base: { weight: Float32Array; bias: Float32Array };
}

/**
 * A parameter site of a graph (see {@linkcode addParamBranches}).
 *
 * @example
 * ```ts
 * import type { ParamSite } from "./param_branches.ts";
 * const inputs = (s: ParamSite) => s.kind === "delta" ? [s.delta] : s.kind === "norm" ? [s.weight, s.bias] : [s.weight, s.select];
 * ```
 */
export type ParamSite = BiasDeltaSite | FedModuleSite | NormSite;

/**
 * What {@linkcode addParamBranches} adds: bias deltas on norms, and fed
 * modules, by module name (as plans carry them).
 *
 * @example
 * ```ts
 * import type { ParamSiteRequest } from "./param_branches.ts";
 * const request: ParamSiteRequest = { deltas: ["transformer.h.0.ln_1"], fed: ["classifier"], norms: ["transformer.ln_f"] };
 * ```
 */
export interface ParamSiteRequest {
  deltas: Iterable<string>;
  fed: Iterable<string>;
  /** Norms whose weight and bias are fed (a module here gets no delta site). */
  norms?: Iterable<string>;
}

function elementTypeOf(model: ModelProto, target: WeightTarget): "float32" | "float16" {
  const t = model.graph!.initializer.find((i) => i.name === target.initializer);
  if (t?.dataType === TensorProto_DataType.FLOAT16) return "float16";
  if (t && t.dataType !== TensorProto_DataType.FLOAT) {
    throw new UnsupportedError(`per-run parameters support float32 and float16; ${t.name} has type ${t.dataType}`, {
      key: target.module,
    });
  }
  return "float32";
}

/** Row-major `[rows, cols]` to `[cols, rows]`. */
function transposed(m: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = m[r * cols + c];
  return out;
}

/** Graph edits: nodes replaced by index, nodes added after an index, nodes removed. */
class Edits {
  readonly replaced = new Map<number, NodeProto>();
  readonly after = new Map<number, NodeProto[]>();
  readonly removed = new Set<number>();
  apply(nodes: readonly NodeProto[]): NodeProto[] {
    return nodes.flatMap((n, i) => [
      ...(this.removed.has(i) ? [] : [this.replaced.get(i) ?? n]),
      ...(this.after.get(i) ?? []),
    ]);
  }
}

/**
 * Returns a new model with the requested parameter sites and the sites by
 * module. `weights` is the index of the base graph (the sites' modules are
 * resolved with it); `readWeight` reads a base initializer as float32. The
 * model may already carry LoRA branches, on other modules.
 *
 * @throws {UnsupportedError} for a fed module that is quantized, inside an If, or not a plain MatMul/Gemm/Gather.
 * @throws {OnnxModelError} for a module the base graph lacks, or whose node was already rewritten.
 * @example
 * ```ts
 * import { addParamBranches } from "./param_branches.ts";
 * import { decodeModel } from "./model_file.ts";
 * import { indexWeights } from "./weight_index.ts";
 * import { readFile } from "node:fs/promises";
 * const base = decodeModel(await readFile("tests/fixtures/real/bases/bert-torchscript/onnx/model.onnx"), "model.onnx");
 * const weights = indexWeights(base.graph!);
 * const read = (name: string) => new Float32Array(16); // the base's values, e.g. BaseModel.readWeight
 * const { sites } = addParamBranches(base, weights, { deltas: [], fed: ["classifier"] }, read);
 * console.log(sites.get("classifier")?.kind); // "linear"
 * ```
 */
export function addParamBranches(
  model: ModelProto,
  weights: WeightIndex,
  request: ParamSiteRequest,
  readWeight: (initializer: string) => Float32Array,
): { model: ModelProto; sites: Map<string, ParamSite> } {
  const graph = model.graph!;
  const fresh = nameAllocator(usedNames(graph));
  const producers = new Map<string, number>();
  graph.node.forEach((n, i) => n.output.forEach((o) => producers.set(o, i)));
  const edits = new Edits();
  const inputs: ValueInfoProto[] = [];
  const sites = new Map<string, ParamSite>();
  const newInitializers: TensorProto[] = [];
  const F = (t: "float32" | "float16") => t === "float16" ? TensorProto_DataType.FLOAT16 : TensorProto_DataType.FLOAT;

  const norms = new Set(request.norms ?? []);
  for (const module of norms) {
    const target = weights.resolveNorm?.(module) as NormTarget | undefined;
    if (!target) throw new OnnxModelError("the base graph has no norm for this module", { key: module });
    const elementType = elementTypeOf(model, target);
    const prefix = `param.${module}`;
    const p = `/${prefix}/`;
    const name = (n: string) => fresh(`${prefix}/${n}`);
    const weight = fresh(`${prefix}.weight`);
    const bias = fresh(`${prefix}.bias`);
    const vector = [`${prefix}.rows`, 1, target.outFeatures];
    inputs.push(tensorValueInfo(weight, F(elementType), vector), tensorValueInfo(bias, F(elementType), vector));
    const find = (nodeName: string) => {
      const i = nodeName === "" ? -1 : graph.node.findIndex((n) => n.name === nodeName);
      if (i < 0) throw new OnnxModelError(`the norm's node ${nodeName} is not in the graph`, { key: module });
      return i;
    };
    // `n`: the normalized tensor; `y`: the norm's output, now computed from `n` and the fed parameters.
    let n: string;
    let last: number;
    const y = graph.node[find(target.nodeName)].output[0];
    if (target.scaleNode === undefined) {
      const at = find(target.nodeName);
      const ln = graph.node[at];
      const ones = fresh(`${prefix}/ones`);
      const scale = model.graph!.initializer.find((t) => t.name === target.initializer)!;
      newInitializers.push(writeFloatTensor(scale, ones, new Float32Array(target.outFeatures).fill(1)));
      n = name("normalized");
      edits.replaced.set(
        at,
        edited(NodeProtoSchema, ln, { input: [ln.input[0], ones], output: [n, ...ln.output.slice(1)] }),
      );
      last = at;
    } else {
      const mul = find(target.scaleNode);
      n = graph.node[mul].input[1 - target.inputIndex];
      edits.removed.add(mul);
      last = mul;
      if (target.bias) {
        const add = find(target.nodeName);
        edits.removed.add(add);
        last = Math.max(last, add);
      }
    }
    const [zero, tail, shapeW, rows, shape3, n3, scaled, sum, shapeY] = [
      "zero",
      "tail",
      "weight_shape",
      "rows",
      "rows_shape",
      "rows_view",
      "scaled",
      "sum",
      "out_shape",
    ].map(name);
    edits.after.set(last, [
      ...(edits.after.get(last) ?? []),
      int64Constant([0], [1], zero, `${p}zero`),
      int64Constant([-1, target.outFeatures], [2], tail, `${p}tail`),
      makeNode("Shape", [weight], [shapeW], `${p}ShapeWeight`),
      makeNode("Gather", [shapeW, zero], [rows], `${p}GatherRows`, { axis: 0 }),
      makeNode("Concat", [rows, tail], [shape3], `${p}Concat`, { axis: 0 }),
      makeNode("Reshape", [n, shape3], [n3], `${p}ReshapeRows`),
      makeNode("Mul", [n3, weight], [scaled], `${p}MulWeight`),
      makeNode("Add", [scaled, bias], [sum], `${p}AddBias`),
      makeNode("Shape", [n], [shapeY], `${p}ShapeOut`),
      makeNode("Reshape", [sum, shapeY], [y], `${p}ReshapeBack`),
    ]);
    const baseBias = target.bias ? readWeight(target.bias.initializer) : new Float32Array(target.outFeatures);
    sites.set(module, {
      kind: "norm",
      module,
      weight,
      bias,
      features: target.outFeatures,
      elementType,
      base: { weight: readWeight(target.initializer), bias: baseBias },
    });
  }

  for (const module of new Set([...request.deltas].filter((m) => !norms.has(m)))) {
    const target = weights.resolveNorm?.(module) as NormTarget | undefined;
    if (!target) throw new OnnxModelError("the base graph has no norm for this module", { key: module });
    const y = outputOf(model, target);
    const at = producers.get(y);
    if (at === undefined) throw new OnnxModelError(`no node produces ${y}`, { key: module });
    const elementType = elementTypeOf(model, target);
    const delta = fresh(`param.${module}.bias_delta`);
    inputs.push(tensorValueInfo(delta, F(elementType), [`param.${module}.rows`, 1, target.outFeatures]));
    sites.set(module, { kind: "delta", module, delta, features: target.outFeatures, elementType });
    const p = `/param.${module}/`;
    const name = (n: string) => fresh(`param.${module}/${n}`);
    const [yb, zero, tail, shapeD, rows, shape3, y3, sum, shapeY] = [
      "base",
      "zero",
      "tail",
      "delta_shape",
      "rows",
      "rows_shape",
      "rows_view",
      "sum",
      "out_shape",
    ].map(name);
    const producer = graph.node[at];
    edits.replaced.set(at, edited(NodeProtoSchema, producer, { output: producer.output.map((o) => o === y ? yb : o) }));
    edits.after.set(at, [
      ...(edits.after.get(at) ?? []),
      int64Constant([0], [1], zero, `${p}zero`),
      int64Constant([-1, target.outFeatures], [2], tail, `${p}tail`),
      makeNode("Shape", [delta], [shapeD], `${p}ShapeDelta`),
      makeNode("Gather", [shapeD, zero], [rows], `${p}GatherRows`, { axis: 0 }),
      makeNode("Concat", [rows, tail], [shape3], `${p}Concat`, { axis: 0 }),
      makeNode("Reshape", [yb, shape3], [y3], `${p}ReshapeRows`),
      makeNode("Add", [y3, delta], [sum], `${p}AddDelta`),
      makeNode("Shape", [yb], [shapeY], `${p}ShapeOut`),
      makeNode("Reshape", [sum, shapeY], [y], `${p}ReshapeBack`),
    ]);
  }

  const droppable = new Set<string>();
  for (const module of new Set(request.fed)) {
    const target = weights.get(module) ?? weights.resolve(module);
    if (!target) throw new OnnxModelError("the base graph has no weight for this module", { key: module });
    if (target.quantized || target.inSubgraph) {
      throw new UnsupportedError(
        `modules_to_save on ${target.nodeName} (${
          target.quantized ? "a quantized projection" : "inside an If subgraph"
        }) cannot be switched per run; use mode "merged" or an unquantized export`,
        { key: module },
      );
    }
    const at = target.nodeName === "" ? -1 : graph.node.findIndex((n) => n.name === target.nodeName);
    const node = graph.node[at];
    if (at < 0 || edits.replaced.has(at) || edits.removed.has(at) || edits.after.has(at)) {
      throw new OnnxModelError(`node ${target.nodeName} is not in the graph as the base has it`, { key: module });
    }
    const elementType = elementTypeOf(model, target);
    const prefix = `param.${module}`;
    const p = `/${prefix}/`;
    const name = (n: string) => fresh(`${prefix}/${n}`);
    const weight = fresh(`${prefix}.weight`);
    const select = fresh(`${prefix}.select`);
    const rowsDim = `${prefix}.rows`;
    const stored = readWeight(target.initializer);
    const [inF, outF] = [target.inFeatures, target.outFeatures];
    const baseWeight = target.layout === "in_out" ? stored : transposed(stored, outF, inF);
    droppable.add(target.initializer);
    if (target.kind === "embedding") {
      if (node.opType !== "Gather") throw new OnnxModelError(`${node.name} is a ${node.opType}`, { key: module });
      inputs.push(
        tensorValueInfo(weight, F(elementType), [`${prefix}.table_rows`, outF]),
        tensorValueInfo(select, TensorProto_DataType.INT64, [rowsDim, 1]),
      );
      const [ids, shifted] = [name("ids"), name("ids_shifted")];
      edits.removed.add(at);
      edits.after.set(at, [
        makeNode("Cast", [node.input[1]], [ids], `${p}CastIds`, { to: TensorProto_DataType.INT64 }),
        makeNode("Add", [ids, select], [shifted], `${p}AddOffset`),
        makeNode("Gather", [weight, shifted], [node.output[0]], `${p}Gather`, { axis: 0 }),
      ]);
      sites.set(module, {
        kind: "embedding",
        module,
        weight,
        select,
        inFeatures: inF,
        outFeatures: outF,
        elementType,
        base: { weight: baseWeight, bias: new Float32Array(0) },
      });
      continue;
    }
    if (node.opType !== "MatMul" && node.opType !== "Gemm") {
      throw new UnsupportedError(`${node.name} is a ${node.opType}; its weight cannot be fed per run`, { key: module });
    }
    // The module's output: the Gemm's (C included), or the Add of a MatMul's bias.
    const biasAdd = node.opType === "MatMul" && target.bias
      ? graph.node.findIndex((n) => n.opType === "Add" && n.input.includes(node.output[0]))
      : -1;
    const y = biasAdd >= 0 ? graph.node[biasAdd].output[0] : node.output[0];
    const bias = fresh(`${prefix}.bias`);
    inputs.push(
      tensorValueInfo(weight, F(elementType), [inF, `${prefix}.sets_out`]),
      tensorValueInfo(bias, F(elementType), [`${prefix}.sets_out`]),
      tensorValueInfo(select, TensorProto_DataType.INT64, [rowsDim]),
    );
    const x = node.input[0];
    const [all, allB, zero, shapeSel, rows, shapeB, kOut, minus1, s3, y3, view4, y4, yt, yf, yg, shapeX, lead, outC] = [
      "all",
      "all_bias",
      "zero",
      "select_shape",
      "rows",
      "bias_shape",
      "sets_out",
      "minus_one",
      "rows_shape",
      "rows_view",
      "sets_view",
      "sets",
      "sets_first",
      "flat",
      "picked",
      "x_shape",
      "lead",
      "out",
    ].map(name);
    const outShape = name("out_shape");
    const added = [
      makeNode("MatMul", [x, weight], [all], `${p}MatMul`),
      makeNode("Add", [all, bias], [allB], `${p}AddBias`),
      int64Constant([0], [1], zero, `${p}zero`),
      int64Constant([-1], [1], minus1, `${p}minus_one`),
      int64Constant([0, 0, -1, outF], [4], view4, `${p}sets_view`),
      int64Constant([outF], [1], outC, `${p}out`),
      makeNode("Shape", [select], [shapeSel], `${p}ShapeSelect`),
      makeNode("Gather", [shapeSel, zero], [rows], `${p}GatherRows`, { axis: 0 }),
      makeNode("Shape", [bias], [shapeB], `${p}ShapeBias`),
      makeNode("Gather", [shapeB, zero], [kOut], `${p}GatherSetsOut`, { axis: 0 }),
      makeNode("Concat", [rows, minus1, kOut], [s3], `${p}ConcatRows`, { axis: 0 }),
      makeNode("Reshape", [allB, s3], [y3], `${p}ReshapeRows`),
      makeNode("Reshape", [y3, view4], [y4], `${p}ReshapeSets`),
      makeNode("Transpose", [y4], [yt], `${p}Transpose`, { perm: [0, 2, 1, 3] }),
      makeNode("Flatten", [yt], [yf], `${p}Flatten`, { axis: 2 }),
      makeNode("Gather", [yf, select], [yg], `${p}GatherSelected`, { axis: 0 }),
      makeNode("Shape", [x], [shapeX], `${p}ShapeX`),
      makeNode("Slice", [shapeX, zero, minus1], [lead], `${p}SliceLead`),
      makeNode("Concat", [lead, outC], [outShape], `${p}ConcatOut`, { axis: 0 }),
      makeNode("Reshape", [yg, outShape], [y], `${p}ReshapeOut`),
    ];
    // The module's own nodes go: the MatMul/Gemm, its bias Add, and a Transpose/Cast reading the weight.
    edits.removed.add(at);
    if (biasAdd >= 0) edits.removed.add(biasAdd);
    for (const r of weightReaders(graph.node, producers, node.input[1], target.initializer)) edits.removed.add(r);
    const last = Math.max(at, biasAdd);
    edits.after.set(last, [...(edits.after.get(last) ?? []), ...added]);
    const biasValues = target.bias ? readWeight(target.bias.initializer) : new Float32Array(outF);
    if (target.bias) droppable.add(target.bias.initializer);
    sites.set(module, {
      kind: "linear",
      module,
      weight,
      bias,
      select,
      inFeatures: inF,
      outFeatures: outF,
      elementType,
      base: { weight: baseWeight, bias: biasValues },
    });
  }

  const node = edits.apply(graph.node);
  // Initializers only the removed nodes read (the module's weight) are not kept in the graph: they are fed.
  const read = new Set<string>();
  const collect = (nodes: readonly NodeProto[]) => {
    for (const n of nodes) {
      for (const i of n.input) read.add(i);
      for (const a of n.attribute) if (a.g) collect(a.g.node);
    }
  };
  collect(node);
  for (const o of graph.output) read.add(o.name);
  const initializer = graph.initializer.filter((t) => !droppable.has(t.name) || read.has(t.name)).concat(
    newInitializers,
  );
  const out = edited(GraphProtoSchema, graph, { node, initializer, input: [...graph.input, ...inputs] });
  return { model: edited(ModelProtoSchema, model, { graph: out }), sites };
}

/** The output tensor of a norm target's node, found by name (LoRA branches moved the indices). */
function outputOf(model: ModelProto, target: NormTarget): string {
  const node = target.nodeName === "" ? undefined : model.graph!.node.find((n) => n.name === target.nodeName);
  if (!node) throw new OnnxModelError(`the norm's node has no name to find it by`, { key: target.module });
  return node.output[0];
}

/** The Transpose/Cast nodes between `initializer` and the input `input` that reads it, when nothing else reads them. */
function weightReaders(
  nodes: readonly NodeProto[],
  producers: ReadonlyMap<string, number>,
  input: string,
  initializer: string,
): number[] {
  const chain: number[] = [];
  let name = input;
  while (name !== initializer && chain.length < 2) {
    const p = producers.get(name);
    if (p === undefined || !["Transpose", "Cast"].includes(nodes[p].opType)) return [];
    if (nodes.filter((n) => n.input.includes(name)).length !== 1) return [];
    chain.push(p);
    name = nodes[p].input[0];
  }
  return name === initializer ? chain : [];
}
