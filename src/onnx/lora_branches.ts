/**
 * Unmerged ("dynamic") LoRA in the ONNX graph: each targeted projection gets
 * a side branch whose LoRA matrices are graph inputs, so one session serves
 * any adapter (or several, or none) chosen per run by its feeds:
 *
 *     y = base(x) + (x @ At) @ Bt          At = A^T: [in, rank], Bt = (s·B)^T: [rank, out]
 *
 * The inputs are fed already transposed, with the LoRA scale folded into
 * `Bt` by the feeder, so a run does no Transpose (measured: ~10% of a decode
 * step otherwise). `rank` is a symbolic dimension; rank 0 (At `[in, 0]`, Bt
 * `[0, out]`) makes the branch add zeros, which onnxruntime computes
 * correctly (an empty inner dimension sums to 0).
 *
 * Embeddings (`Gather`) get `At` gathered by the ids, then `@ Bt`, as
 * PEFT's `Embedding` LoRA computes it. Quantized projections (`MatMulNBits`,
 * the `MatMulInteger` pattern) get the branch on their float input and output.
 *
 * DoRA modules get a third input `scale` `[out]`, fed with
 * `m / ||W + s B A||` (or ones when the active adapter has no DoRA there):
 *
 *     y = scale * (x W + (x @ A^T) @ B^T) + bias
 *
 * which is PEFT's DoRA forward, `result + (m/n - 1) * (result - bias) +
 * (m/n) * lora(x) * s`, rearranged: the bias is not scaled. A `Gemm` (or
 * `MatMulNBits`) carrying its bias inside gets the bias split off into its
 * own `Add` after the scale; so does a DoRA branch's bias delta (a trained
 * bias, which PEFT's DoRA leaves unscaled).
 *
 * With `shareA`, branches that read the same activation (q/k/v on one
 * normed input, gate/up on another) share one product: their A's are fed
 * concatenated along the rank (`[in, r_q + r_k + r_v]`), multiplied once and
 * `Split` per module before each B (the ranks fed beside them), so a decode
 * step runs one MatMul where it ran three.
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
  type ValueInfoProto,
} from "../deps/onnx_proto.ts";
import { OnnxModelError, UnsupportedError } from "../errors.ts";
import { int64Constant, makeNode, nameAllocator, tensorValueInfo, usedNames } from "./graph_parts.ts";
import { edited } from "./proto_edit.ts";
import { indexWeights } from "./weight_index.ts";
import type { ModuleKind, WeightIndex, WeightTarget } from "./weight_target.ts";

/**
 * The graph inputs of one module's LoRA branch.
 *
 * @example
 * ```ts
 * import type { LoraBranch } from "./lora_branches.ts";
 * // feeds[branch.a] = new Tensor("float32", a, [rank, branch.inFeatures]);
 * const shapeOfB = (branch: LoraBranch, rank: number) => [branch.outFeatures, rank];
 * ```
 */
export interface LoraBranch {
  module: string;
  kind: ModuleKind;
  /** Input name of A, fed transposed: float32 `[inFeatures, rank]` (`[num_embeddings, rank]` for embeddings). */
  a: string;
  /** Input name of B, fed transposed with the LoRA scale folded in: float32 `[rank, outFeatures]`. */
  b: string;
  /** Input name of the DoRA scale, float32 `[outFeatures]` (DoRA branches only). */
  scale?: string;
  /**
   * Input name of a bias delta `[outFeatures]` added to the output (bias
   * branches only): `s * lora_B.bias` (`lora_bias`) and/or a trained bias
   * minus the base's (`bias: "all"`, `"lora_only"`, `base_layer.bias`).
   */
  bias?: string;
  inFeatures: number;
  outFeatures: number;
  /** The symbolic dimension name of this branch's rank. */
  rankDim: string;
  /**
   * Per-row branches only (`perRow`): the symbolic name of the inputs' leading
   * dim, 1 (one adapter set for every row, broadcast) or the batch size (one
   * per row). A is then `[rows, in, rank]`, B `[rows, rank, out]`, scale `[rows, 1, out]`.
   */
  rowsDim?: string;
  /** Element type of the branch inputs: the projection's own float type, so a float16 base stays float16. */
  elementType: "float32" | "float16";
  /** Set when this branch's A is fed inside a shared product (`shareA`); `a` is then the group's input. */
  group?: LoraGroup;
  /**
   * Input name of the activated-LoRA mask, float32 `[batch, seq, 1]`, shared by
   * every masked branch (`masked` branches only). It gates the rank columns
   * of `x @ A` that `maskOn` marks: `x @ A ⊙ (mask · on + off)` then `@ B`, so
   * an aLoRA and a plain adapter summed on one module are masked apart.
   */
  mask?: string;
  /**
   * Input names of the column gates of a masked branch, `[rows, 1, rank]`
   * (`[1, rank]` without `rowsDim`): `on` is 1 for an aLoRA adapter's
   * columns, `off = 1 - on`.
   */
  maskOn?: string;
  maskOff?: string;
}

/**
 * Branches sharing one `x @ A` product (`shareA`): their A's are fed
 * concatenated along the rank, in `modules` order, and the product is split
 * by the ranks fed in `split`.
 *
 * @example
 * ```ts
 * import type { LoraGroup } from "./lora_branches.ts";
 * // feeds[group.split] = new Tensor("int64", BigInt64Array.from([16n, 16n, 16n]), [3]);
 * const members = (group: LoraGroup) => group.modules.length;
 * ```
 */
export interface LoraGroup {
  /** Input name of the concatenated A^T: `[inFeatures, sum of ranks]` (`[rows, in, sum]` per row). */
  a: string;
  /** Input name of the members' ranks, int64 `[modules.length]`, in `modules` order (0: member off). */
  split: string;
  modules: readonly string[];
  /** The symbolic dimension name of the summed rank. */
  rankDim: string;
}

/** The float type a projection computes in: its weight's, or for quantized ones, their scales'. */
function branchElementType(model: ModelProto, target: WeightTarget): "float32" | "float16" {
  const name = target.quantized ? target.quantized.scales : target.initializer;
  const tensor = model.graph!.initializer.find((t) => t.name === name);
  if (tensor?.dataType === TensorProto_DataType.FLOAT16) return "float16";
  if (tensor && tensor.dataType !== TensorProto_DataType.FLOAT) {
    throw new UnsupportedError(
      `LoRA branches support float32 and float16 projections; ${name} has element type ${tensor.dataType}`,
      {
        key: target.module,
      },
    );
  }
  return "float32";
}

/**
 * Options of {@linkcode addLoraBranches}.
 *
 * @example
 * ```ts
 * import type { LoraBranchOptions } from "./lora_branches.ts";
 * const options: LoraBranchOptions = { dora: ["model.layers.0.self_attn.q_proj"] };
 * ```
 */
export interface LoraBranchOptions {
  /** Modules (among those branched) that get the DoRA form with a `scale` input. */
  dora?: Iterable<string>;
  /**
   * Give every input a leading rows dim (see {@linkcode LoraBranch.rowsDim}),
   * so a batch can run a different adapter on each row (mixed batches); fed
   * with 1 there, every row shares one adapter set. Default false: 2-D inputs.
   */
  perRow?: boolean;
  /** Modules (among those branched) that get a `bias` delta input (after the scale on DoRA ones). */
  bias?: Iterable<string>;
  /**
   * Branches reading the same activation share one `x @ A` (see
   * {@linkcode LoraGroup}); needs opset 13 (Split with sizes as an input),
   * ignored below. Default false: one A input per branch.
   */
  shareA?: boolean;
  /**
   * Modules (linear, not DoRA; inputs `[batch, seq, in]` or flattened
   * `[batch * seq, in]`, as GPT-2's Conv1D Gemm) whose aLoRA columns are
   * gated by one shared mask input (see {@linkcode LoraBranch.mask}); with
   * `on` all 0 they compute as unmasked branches.
   */
  masked?: Iterable<string>;
}

/** Where a branch attaches: the node producing the module's float output. */
interface Site {
  producer: number;
  /** Float input the branch reads (ids for embeddings). */
  x: string;
  /** Float output the branch adds to. */
  y: string;
  /** Input index of a bias folded into the producer (Gemm C, MatMulNBits bias). */
  innerBias?: number;
}

function siteOf(nodes: readonly NodeProto[], target: WeightTarget): Site {
  const fail = (why: string) => new OnnxModelError(why, { key: target.module });
  const q = target.quantized;
  if (q) {
    const producer = nodes[q.outputIndex];
    const bias = q.op === "MatMulNBits" && (producer.input[5] ?? "") !== "" ? 5 : undefined;
    return { producer: q.outputIndex, x: q.input, y: q.output, innerBias: bias };
  }
  let producer = target.readerIndex;
  // Weight stored [out, in] and transposed (or cast, by the fp16 converter) before the MatMul.
  for (let hops = 0; hops < 2 && ["Transpose", "Cast"].includes(nodes[producer].opType); hops++) {
    const out = nodes[producer].output[0];
    const users = nodes.map((n, i) => [n, i] as const).filter(([n]) => n.input.includes(out));
    const match = users.find(([n]) => n.name === target.nodeName) ?? users[0];
    if (!match) throw fail(`no node reads the weight ${target.initializer} after ${nodes[producer].opType}`);
    producer = match[1];
  }
  const node = nodes[producer];
  if (target.kind === "embedding") {
    if (node.opType !== "Gather") throw fail(`embedding node ${node.name} is a ${node.opType}, not a Gather`);
    return { producer, x: node.input[1], y: node.output[0] };
  }
  if (node.opType === "Gemm") {
    return { producer, x: node.input[0], y: node.output[0], innerBias: (node.input[2] ?? "") !== "" ? 2 : undefined };
  }
  if (node.opType !== "MatMul") throw fail(`node ${node.name} is a ${node.opType}; cannot add a LoRA branch`);
  return { producer, x: node.input[0], y: node.output[0] };
}

/** One module's branch, named: what gets inserted after its producer, in whichever graph computes it. */
interface Planned {
  branch: LoraBranch;
  target: WeightTarget;
}

/** Node edits of one graph: producers rewritten, branch nodes inserted after them. */
class GraphEdits {
  readonly replaced = new Map<number, NodeProto>();
  readonly after = new Map<number, NodeProto[]>();

  apply(nodes: readonly NodeProto[]): NodeProto[] {
    return nodes.flatMap((n, i) => [this.replaced.get(i) ?? n, ...(this.after.get(i) ?? [])]);
  }
}

/**
 * Per-row embedding LoRA: row i's ids index its own `[num, rank]` slice of A
 * `[rows, num, rank]`. A is flattened to `[rows * num, rank]` and the ids
 * offset by `i * num` (offsets `[rows, 1]` broadcast over `[batch, seq]`;
 * with rows = 1 the offset is 0 and every row reads the one table).
 */
function rowGather(
  branch: LoraBranch,
  ids: string,
  xa: string,
  scope: string,
  fresh: (name: string) => string,
): NodeProto[] {
  const p = `lora.${branch.module}/rows`;
  const [zero, one, num, col, shape, rows, range, offsets, offsets2, ids64, shifted, flat] = [
    "zero",
    "one",
    "num",
    "col",
    "shape",
    "count",
    "range",
    "offsets",
    "offsets2",
    "ids64",
    "ids_shifted",
    "A_flat",
  ].map((n) => fresh(`${p}/${n}`));
  return [
    int64Constant([0], [], zero, `${scope}lora_rows_zero`),
    int64Constant([1], [], one, `${scope}lora_rows_one`),
    int64Constant([branch.inFeatures], [], num, `${scope}lora_rows_num`),
    int64Constant([-1, 1], [2], col, `${scope}lora_rows_col`),
    makeNode("Shape", [branch.a], [shape], `${scope}lora_rows_Shape`),
    makeNode("Gather", [shape, zero], [rows], `${scope}lora_rows_Gather`, { axis: 0 }),
    makeNode("Range", [zero, rows, one], [range], `${scope}lora_rows_Range`),
    makeNode("Mul", [range, num], [offsets], `${scope}lora_rows_Mul`),
    makeNode("Reshape", [offsets, col], [offsets2], `${scope}lora_rows_Reshape`),
    makeNode("Cast", [ids], [ids64], `${scope}lora_rows_Cast`, { to: TensorProto_DataType.INT64 }),
    makeNode("Add", [ids64, offsets2], [shifted], `${scope}lora_rows_Add`),
    makeNode("Flatten", [branch.a], [flat], `${scope}lora_rows_Flatten`, { axis: 2 }),
    makeNode("Gather", [flat, shifted], [xa], `${scope}lora_A_Gather`, { axis: 0 }),
  ];
}

/** Known tensor ranks of a graph (value_info, inputs, outputs; subgraphs see their outer graph's too). */
function knownRanks(graph: GraphProto, outer: ReadonlyMap<string, number> = new Map()): Map<string, number> {
  const ranks = new Map(outer);
  for (const v of [...graph.input, ...graph.output, ...graph.valueInfo]) {
    const type = v.type?.value;
    if (type?.case === "tensorType" && type.value.shape) ranks.set(v.name, type.value.shape.dim.length);
  }
  for (const t of graph.initializer) ranks.set(t.name, t.dims.length);
  // A light propagation through the ops that keep or combine ranks plainly (exports often omit value_info).
  for (const node of graph.node) {
    const out = node.output[0];
    if (out === undefined || ranks.has(out)) continue;
    const inputs = node.input.filter((i) => i !== "").map((i) => ranks.get(i));
    if (inputs.length === 0 || inputs.some((r) => r === undefined)) continue;
    const known = inputs as number[];
    let rank: number | undefined;
    if (SAME_RANK.has(node.opType)) rank = known[0];
    else if (BROADCAST.has(node.opType)) rank = Math.max(...known);
    else if (node.opType === "Gather" && known.length === 2) rank = known[0] - 1 + known[1];
    else if (node.opType === "Gemm") rank = 2;
    if (rank !== undefined) ranks.set(out, rank);
  }
  return ranks;
}

const SAME_RANK = new Set([
  "Cast",
  "Identity",
  "Relu",
  "Sigmoid",
  "Tanh",
  "Neg",
  "Sqrt",
  "Reciprocal",
  "Erf",
  "Softmax",
  "Gelu",
  "Silu",
  "LayerNormalization",
  "SimplifiedLayerNormalization",
  "SkipSimplifiedLayerNormalization",
]);
const BROADCAST = new Set(["Add", "Sub", "Mul", "Div", "Pow", "Where", "MatMul"]);

/**
 * A per-row branch's input `x` as `[rows, n, in]`, for projections whose
 * input is not `[batch, seq, in]` (Gemm's `[batch * seq, in]`, dynamo's
 * flattened views): the rows are contiguous in any such layout, batch first.
 * `back(t, y)` reshapes a `[rows, n, out]` result to the output's shape;
 * `rowsOf(t, out)` the output-shaped `t` to `[rows, n, out]`.
 */
function rowReshapes(branch: LoraBranch, x: string, base: string, scope: string, fresh: (name: string) => string) {
  const p = `lora.${branch.module}/rows`;
  const name = (n: string) => fresh(`${p}/${n}`);
  const [zero, rest, restOut, shapeA, rows, target, targetOut, x3, shapeY] = [
    "zero",
    "rest",
    "rest_out",
    "shapeA",
    "count",
    "x_shape",
    "out_shape",
    "x3",
    "y_shape",
  ].map(name);
  const before = [
    int64Constant([0], [1], zero, `${scope}lora_rows_zero`),
    int64Constant([-1, branch.inFeatures], [2], rest, `${scope}lora_rows_rest`),
    makeNode("Shape", [branch.a], [shapeA], `${scope}lora_rows_ShapeA`),
    makeNode("Gather", [shapeA, zero], [rows], `${scope}lora_rows_GatherA`, { axis: 0 }),
    makeNode("Concat", [rows, rest], [target], `${scope}lora_rows_Concat`, { axis: 0 }),
    makeNode("Reshape", [x, target], [x3], `${scope}lora_rows_ReshapeX`),
    makeNode("Shape", [base], [shapeY], `${scope}lora_rows_ShapeY`),
  ];
  const back = (t: string, y: string) => [makeNode("Reshape", [t, shapeY], [y], `${scope}lora_rows_ReshapeBack`)];
  // A [batch, seq, 1] mask as [rows, n, 1]: the same batch-first order the rows of x were read in.
  const maskRows = (mask: string, out: string) => {
    const [tail, target] = [name("mask_tail"), name("mask_shape")];
    return [
      int64Constant([-1, 1], [2], tail, `${scope}lora_rows_mask_tail`),
      makeNode("Concat", [rows, tail], [target], `${scope}lora_rows_mask_Concat`, { axis: 0 }),
      makeNode("Reshape", [mask, target], [out], `${scope}lora_rows_mask_Reshape`),
    ];
  };
  const rowsOf = (t: string, out: string) => [
    int64Constant([-1, branch.outFeatures], [2], restOut, `${scope}lora_rows_rest_out`),
    makeNode("Concat", [rows, restOut], [targetOut], `${scope}lora_rows_ConcatOut`, { axis: 0 }),
    makeNode("Reshape", [t, targetOut], [out], `${scope}lora_rows_ReshapeBase`),
  ];
  return { x: x3, before, back, rowsOf, maskRows };
}

/** Whether a per-row linear branch on this site goes through `[rows, n, in]` (see {@linkcode rowReshapes}). */
function needsRowReshape(
  nodes: readonly NodeProto[],
  site: Site,
  target: WeightTarget,
  perRow: boolean,
  ranks: ReadonlyMap<string, number>,
): boolean {
  return perRow && target.kind !== "embedding" &&
    (nodes[site.producer].opType === "Gemm" || (ranks.get(site.x) ?? 3) !== 3);
}

/**
 * An activated-LoRA branch's `x @ A` with its aLoRA columns gated by the
 * mask: `xa ⊙ (mask · on + off)`. The `[batch, seq, 1]` mask is first put in
 * the rows' layout (per-row `[rows, n, 1]`, or `[batch * seq, 1]` for a Gemm
 * or flattened input) and cast to the branch's float type.
 */
function maskColumns(
  branch: LoraBranch,
  target: WeightTarget,
  xa: string,
  opType: string,
  reshaped: ReturnType<typeof rowReshapes> | undefined,
  xRank: number | undefined,
  fresh: (name: string) => string,
  scope: string,
): { nodes: NodeProto[]; out: string } {
  const module = branch.module;
  if (branch.scale || target.kind === "embedding") {
    // PEFT's variant tables: no aLoRA for Embedding, none with DoRA.
    throw new UnsupportedError("activated LoRA (aLoRA) is supported on linear projections without DoRA", {
      key: module,
    });
  }
  const prefix = `lora.${module}`;
  const nodes: NodeProto[] = [];
  let mask = branch.mask!;
  if (reshaped) {
    // Per-row branches through [rows, n, in] (Gemm's [batch * seq, in], flattened views).
    mask = fresh(`${prefix}/mask_rows`);
    nodes.push(...reshaped.maskRows(branch.mask!, mask));
  } else if (opType === "Gemm" || xRank === 2) {
    // A [batch * seq, in] input: the mask's rows in the same order.
    mask = fresh(`${prefix}/mask_flat`);
    const flat = fresh(`${prefix}/mask_flat_shape`);
    nodes.push(
      int64Constant([-1, 1], [2], flat, `${scope}lora_mask_flat_shape`),
      makeNode("Reshape", [branch.mask!, flat], [mask], `${scope}lora_mask_Reshape`),
    );
  }
  if (branch.elementType === "float16") {
    const cast = fresh(`${prefix}/mask_f16`);
    nodes.push(makeNode("Cast", [mask], [cast], `${scope}lora_mask_Cast`, { to: TensorProto_DataType.FLOAT16 }));
    mask = cast;
  }
  const [on, gate, out] = ["mask_on", "mask_gate", "xA_masked"].map((n) => fresh(`${prefix}/${n}`));
  nodes.push(
    makeNode("Mul", [mask, branch.maskOn!], [on], `${scope}lora_mask_on_Mul`),
    makeNode("Add", [on, branch.maskOff!], [gate], `${scope}lora_mask_Add`),
    makeNode("Mul", [xa, gate], [out], `${scope}lora_mask_Mul`),
  );
  return { nodes, out };
}

/**
 * Inserts one module's branch; `sharedXa` names its `x @ A` when a shared
 * product computes it (the branch then starts at B). Returns the producer's index.
 */
function insertBranch(
  nodes: readonly NodeProto[],
  { branch, target }: Planned,
  edits: GraphEdits,
  fresh: (name: string) => string,
  ranks: ReadonlyMap<string, number>,
  sharedXa?: string,
): number {
  const module = branch.module;
  const site = siteOf(nodes, target);
  if (edits.replaced.has(site.producer)) {
    throw new OnnxModelError(`module shares its node with another branched module`, { key: module });
  }
  if (branch.scale && site.innerBias !== undefined && !target.bias) {
    throw new UnsupportedError(
      `DoRA needs the bias of ${target.nodeName} apart, but its C input is not a plain [out] bias`,
      { key: module },
    );
  }
  const prefix = `lora.${module}`;
  // The producer now writes `base`; the branch writes the original output name.
  const producer = nodes[site.producer];
  const scope = producer.name.includes("/")
    ? producer.name.slice(0, producer.name.lastIndexOf("/") + 1)
    : `/${prefix}/`;
  const base = fresh(`${site.y}_lora_base`);
  const input = producer.input.slice();
  const splitBias = branch.scale && site.innerBias !== undefined ? input[site.innerBias] : undefined;
  if (splitBias !== undefined) input[site.innerBias!] = "";
  while (input.length > 0 && input[input.length - 1] === "") input.pop();
  const output = producer.output.slice();
  output[0] = base;
  edits.replaced.set(site.producer, edited(NodeProtoSchema, producer, { input, output }));

  const xa = sharedXa ?? fresh(`${prefix}/xA`);
  const delta = fresh(`${prefix}/delta`);
  // Per-row linear branches on inputs not known to be [batch, seq, in] go through [rows, n, in].
  const reshaped = needsRowReshape(nodes, site, target, branch.rowsDim !== undefined, ranks)
    ? rowReshapes(branch, site.x, base, scope, fresh)
    : undefined;
  if (sharedXa !== undefined && reshaped) {
    throw new OnnxModelError("a shared x @ A needs [batch, seq, in]", { key: module });
  }
  const added: NodeProto[] = [
    ...(reshaped?.before ?? []),
    ...(sharedXa !== undefined
      ? []
      : target.kind !== "embedding"
      ? [makeNode("MatMul", [reshaped?.x ?? site.x, branch.a], [xa], `${scope}lora_A_MatMul`)]
      : branch.rowsDim
      ? rowGather(branch, site.x, xa, scope, fresh)
      : [makeNode("Gather", [branch.a, site.x], [xa], `${scope}lora_A_Gather`, { axis: 0 })]),
  ];
  const xb = branch.mask
    ? maskColumns(branch, target, xa, nodes[site.producer].opType, reshaped, ranks.get(site.x), fresh, scope)
    : undefined;
  added.push(...(xb?.nodes ?? []), makeNode("MatMul", [xb?.out ?? xa, branch.b], [delta], `${scope}lora_B_MatMul`));
  // The bias delta and DoRA scale are per row: applied where the rows are a dim of their own.
  let d = delta;
  if (branch.bias && !branch.scale) {
    const withBias = fresh(`${prefix}/delta_bias`);
    added.push(makeNode("Add", [d, branch.bias], [withBias], `${scope}lora_bias_delta_Add`));
    d = withBias;
  }
  if (!branch.scale) {
    if (reshaped) {
      const flat = fresh(`${prefix}/delta_out`);
      added.push(...reshaped.back(d, flat));
      d = flat;
    }
    added.push(makeNode("Add", [base, d], [site.y], `${scope}lora_Add`));
  } else {
    const sum = fresh(`${prefix}/sum`);
    const scaled = splitBias !== undefined || branch.bias ? fresh(`${prefix}/scaled`) : site.y;
    const base3 = reshaped ? fresh(`${prefix}/base_rows`) : base;
    if (reshaped) added.push(...reshaped.rowsOf(base, base3));
    const scaledRows = reshaped ? fresh(`${prefix}/scaled_rows`) : scaled;
    added.push(
      makeNode("Add", [base3, d], [sum], `${scope}lora_Add`),
      makeNode("Mul", [sum, branch.scale], [scaledRows], `${scope}lora_dora_Mul`),
    );
    if (reshaped) added.push(...reshaped.back(scaledRows, scaled));
    let out = scaled;
    if (branch.bias) {
      out = splitBias !== undefined ? fresh(`${prefix}/scaled_bias`) : site.y;
      added.push(makeNode("Add", [scaled, branch.bias], [out], `${scope}lora_bias_delta_Add`));
    }
    if (splitBias !== undefined) added.push(makeNode("Add", [out, splitBias], [site.y], `${scope}lora_bias_Add`));
  }
  edits.after.set(site.producer, added);
  return site.producer;
}

/** The default-domain opset (Split takes its sizes as an input from 13). */
function opsetOf(model: ModelProto): number {
  const entry = model.opsetImport.find((o) => o.domain === "" || o.domain === "ai.onnx");
  return Number(entry?.version ?? 0n);
}

/**
 * The modules of the top-level graph whose branches can share `x @ A`:
 * linear ones reading the same float input, of one element type, not
 * reshaped per row; groups of two or more, by that input.
 */
function shareableGroups(
  model: ModelProto,
  resolved: readonly { module: string; target: WeightTarget }[],
  perRow: boolean,
  ranks: ReadonlyMap<string, number>,
): { modules: string[]; x: string; target: WeightTarget }[] {
  const nodes = model.graph!.node;
  const byInput = new Map<string, { modules: string[]; x: string; target: WeightTarget }>();
  for (const { module, target } of resolved) {
    if (target.inSubgraph || target.kind === "embedding") continue;
    const site = siteOf(nodes, target);
    if (needsRowReshape(nodes, site, target, perRow, ranks)) continue;
    const key = `${branchElementType(model, target)}:${site.x}`;
    const group = byInput.get(key);
    if (group) group.modules.push(module);
    else byInput.set(key, { modules: [module], x: site.x, target });
  }
  return [...byInput.values()].filter((g) => g.modules.length > 1);
}

/**
 * Branches of modules computed inside an If (merged decoders): every branch
 * subgraph gets the same LoRA branch, reading the same outer graph inputs,
 * so whichever branch runs is adapted alike.
 */
function branchSubgraphs(
  graph: GraphProto,
  ifIndex: number,
  planned: readonly Planned[],
  fresh: (name: string) => string,
  ranks: ReadonlyMap<string, number>,
): NodeProto {
  const node = graph.node[ifIndex];
  const attribute = node.attribute.map((attr) => {
    if (!attr.g) return attr;
    // The subgraph sees the outer initializers: index it with them to find each module's site there.
    const visible = edited(GraphProtoSchema, attr.g, { initializer: [...graph.initializer, ...attr.g.initializer] });
    const local = indexWeights(visible);
    const edits = new GraphEdits();
    for (const p of planned) {
      const target = local.get(p.target.module);
      if (!target) {
        throw new OnnxModelError(`the If branch ${attr.name} of ${node.name} does not compute this module`, {
          key: p.branch.module,
        });
      }
      insertBranch(attr.g.node, { branch: p.branch, target }, edits, fresh, knownRanks(attr.g, ranks));
    }
    return edited(AttributeProtoSchema, attr, {
      g: edited(GraphProtoSchema, attr.g, { node: edits.apply(attr.g.node) }),
    });
  });
  return edited(NodeProtoSchema, node, { attribute });
}

/**
 * Returns a new model in which every listed module's output gets a LoRA side
 * branch fed by graph inputs, and the names of those inputs per module. The
 * input model is not mutated (untouched nodes and initializers are shared).
 * Call it on the base graph with every module any adapter may need (or all
 * of `weights.modules` to prepare once), and the `weights` index of that graph.
 *
 * @throws {OnnxModelError} for a module the index does not know, or input names already taken.
 * @throws {UnsupportedError} for DoRA on an embedding, or on a Gemm whose C is not a plain bias.
 * @example
 * ```ts
 * import { addLoraBranches } from "./lora_branches.ts";
 * import { decodeModel } from "./model_file.ts";
 * import { indexWeights } from "./weight_index.ts";
 * import { readFile } from "node:fs/promises";
 * const base = decodeModel(await readFile("tests/fixtures/llama-tiny/onnx/model.onnx"), "model.onnx");
 * const q = "model.layers.0.self_attn.q_proj";
 * const { model, branches } = addLoraBranches(base, indexWeights(base.graph!), [q], { dora: [q] });
 * console.log(branches.get(q)); // { a: "lora.model.layers.0.self_attn.q_proj.A", b: "...B", scale: "...scale", ... }
 * ```
 */
export function addLoraBranches(
  model: ModelProto,
  weights: WeightIndex,
  modules: Iterable<string>,
  options: LoraBranchOptions = {},
): { model: ModelProto; branches: Map<string, LoraBranch> } {
  const graph = model.graph!;
  const wanted = [...new Set(modules)];
  const dora = new Set(options.dora ?? []);
  for (const m of dora) {
    if (!wanted.includes(m)) throw new OnnxModelError("DoRA module is not among the modules to branch", { key: m });
  }
  const biased = new Set(options.bias ?? []);
  for (const m of biased) {
    if (!wanted.includes(m)) throw new OnnxModelError("bias module is not among the modules to branch", { key: m });
  }
  const masked = new Set(options.masked ?? []);
  for (const m of masked) {
    if (!wanted.includes(m)) throw new OnnxModelError("masked module is not among the modules to branch", { key: m });
  }
  const taken = usedNames(graph);
  const fresh = nameAllocator(taken);
  const inputName = (name: string, module: string) => {
    if (taken.has(name)) {
      throw new OnnxModelError(
        `the graph already has a tensor named ${name} (branches added twice?); branch the base graph`,
        { key: module },
      );
    }
    taken.add(name);
    return name;
  };

  const inputs: ValueInfoProto[] = [];
  const branches = new Map<string, LoraBranch>();
  const top = new GraphEdits();
  const inIf = new Map<number, Planned[]>();
  const ranks = knownRanks(graph);
  const maskInput = masked.size > 0 ? inputName("lora.alora_mask", [...masked][0]) : undefined;
  if (maskInput) {
    inputs.push(
      tensorValueInfo(maskInput, TensorProto_DataType.FLOAT, ["lora.alora_mask.rows", "lora.alora_mask.seq", 1]),
    );
  }

  const resolved = wanted.map((module) => {
    // Hugging Face names (as plans carry them) resolve to the export's own.
    const target = weights.get(module) ?? weights.resolve(module);
    if (!target) throw new OnnxModelError("the base graph has no patchable weight for this module", { key: module });
    return { module, target };
  });
  const perRow = options.perRow ?? false;
  const groupOf = new Map<string, LoraGroup>();
  const groupInput = new Map<LoraGroup, string>();
  if (options.shareA && opsetOf(model) >= 13) {
    for (const { modules, x, target } of shareableGroups(model, resolved, perRow, ranks)) {
      const prefix = `lora.${modules[0]}.shared`;
      const group: LoraGroup = {
        a: inputName(`${prefix}.A`, modules[0]),
        split: inputName(`${prefix}.split`, modules[0]),
        modules,
        rankDim: `${prefix}.rank`,
      };
      for (const m of modules) groupOf.set(m, group);
      groupInput.set(group, x);
      const lead = perRow ? [`${prefix}.rows`] : [];
      const F = branchElementType(model, target) === "float16"
        ? TensorProto_DataType.FLOAT16
        : TensorProto_DataType.FLOAT;
      inputs.push(
        tensorValueInfo(group.a, F, [...lead, target.inFeatures, group.rankDim]),
        tensorValueInfo(group.split, TensorProto_DataType.INT64, [modules.length]),
      );
    }
  }
  const producers = new Map<string, number>();
  const sharedXa = new Map<string, string>();
  for (const { module, target } of resolved) {
    const isDora = dora.has(module);
    if (isDora && target.kind === "embedding") {
      throw new UnsupportedError("DoRA on embeddings is not supported", { key: module });
    }
    const prefix = `lora.${module}`;
    const rankDim = `${prefix}.rank`;
    const rowsDim = options.perRow ? `${prefix}.rows` : undefined;
    const lead = rowsDim ? [rowsDim] : [];
    const group = groupOf.get(module);
    const a = group ? group.a : inputName(`${prefix}.A`, module);
    const b = inputName(`${prefix}.B`, module);
    const scale = isDora ? inputName(`${prefix}.scale`, module) : undefined;
    const bias = biased.has(module) ? inputName(`${prefix}.bias`, module) : undefined;
    const gated = maskInput !== undefined && masked.has(module);
    const maskOn = gated ? inputName(`${prefix}.alora_on`, module) : undefined;
    const maskOff = gated ? inputName(`${prefix}.alora_off`, module) : undefined;
    const elementType = branchElementType(model, target);
    const F = elementType === "float16" ? TensorProto_DataType.FLOAT16 : TensorProto_DataType.FLOAT;
    // Fed pre-transposed ([in, rank], [rank, out]) so a run does no Transpose of its own.
    if (!group) inputs.push(tensorValueInfo(a, F, [...lead, target.inFeatures, rankDim]));
    inputs.push(tensorValueInfo(b, F, [...lead, rankDim, target.outFeatures]));
    const vector = rowsDim ? [rowsDim, 1, target.outFeatures] : [target.outFeatures];
    if (scale) inputs.push(tensorValueInfo(scale, F, vector));
    if (bias) inputs.push(tensorValueInfo(bias, F, vector));
    for (const gate of [maskOn, maskOff]) if (gate) inputs.push(tensorValueInfo(gate, F, [...lead, 1, rankDim]));
    const branch: LoraBranch = {
      module,
      kind: target.kind,
      a,
      b,
      scale,
      ...(bias ? { bias } : {}),
      inFeatures: target.inFeatures,
      outFeatures: target.outFeatures,
      rankDim,
      ...(rowsDim ? { rowsDim } : {}),
      elementType,
      ...(group ? { group } : {}),
      ...(gated ? { mask: maskInput, maskOn, maskOff } : {}),
    };
    branches.set(module, branch);
    if (target.inSubgraph) {
      inIf.set(target.readerIndex, [...(inIf.get(target.readerIndex) ?? []), { branch, target }]);
    } else {
      const xa = group ? fresh(`${prefix}/xA`) : undefined;
      if (xa) sharedXa.set(module, xa);
      producers.set(module, insertBranch(graph.node, { branch, target }, top, fresh, ranks, xa));
    }
  }
  // Each shared product runs right after the first of its producers (which reads the same x).
  for (const [group, x] of groupInput) {
    const first = Math.min(...group.modules.map((m) => producers.get(m)!));
    const producer = graph.node[first];
    const scope = producer.name.includes("/")
      ? producer.name.slice(0, producer.name.lastIndexOf("/") + 1)
      : `/lora.${group.modules[0]}/`;
    const product = fresh(`lora.${group.modules[0]}.shared/xA`);
    top.after.set(first, [
      makeNode("MatMul", [x, group.a], [product], `${scope}lora_shared_A_MatMul`),
      makeNode(
        "Split",
        [product, group.split],
        group.modules.map((m) => sharedXa.get(m)!),
        `${scope}lora_shared_Split`,
        {
          axis: -1,
        },
      ),
      ...(top.after.get(first) ?? []),
    ]);
  }
  for (const [ifIndex, planned] of inIf) {
    top.replaced.set(ifIndex, branchSubgraphs(graph, ifIndex, planned, fresh, ranks));
  }

  const branched = edited(GraphProtoSchema, graph, { node: top.apply(graph.node), input: [...graph.input, ...inputs] });
  return { model: edited(ModelProtoSchema, model, { graph: branched }), branches };
}
