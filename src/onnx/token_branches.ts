/**
 * Trainable tokens (PEFT's TrainableTokens) in dynamic mode: the embedding
 * `Gather` (and a tied `lm_head`) gets a branch that replaces the rows of a
 * few token ids with rows fed per run, so one session serves adapters with
 * and without trainable tokens. Inputs, per branched module:
 *
 *     indices  int64 [rows, 1, K]   (a tied head: [rows, K, 1])    token ids; -1 pads (matches no id)
 *     values   T     [rows, K, H]   (a tied head: [rows, H, K])    the adapter's rows (PEFT's trainable_tokens_delta)
 *
 * `rows` is 1 (one set for every batch row) or the batch size (mixed batches).
 * Embedding: `hit = ids == indices` `[B, S, K]`, and
 *
 *     y = (e - e * any(hit)) + hit @ values         e = Gather(W, ids)
 *
 * which is exactly PEFT's `index_copy` then embedding: a row is either kept
 * (`e - 0 + 0`) or replaced (`e - e + v`, one term in the product); with
 * only the padding index no row changes, so a run without tokens is the
 * base bit for bit. A tied head's logits columns of those tokens become
 * `hidden · v` the same way (`hit` there is `[rows, K, vocab]`).
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
import { int64Constant, makeNode, nameAllocator, tensorValueInfo, usedNames } from "./graph_parts.ts";
import { edited } from "./proto_edit.ts";
import type { WeightTarget } from "./weight_target.ts";

/**
 * The graph inputs of one module's trainable-tokens branch.
 *
 * @example
 * ```ts
 * import type { TokenBranch } from "./token_branches.ts";
 * const dims = (b: TokenBranch, k: number) => b.tokensAreOutputs ? [1, b.features, k] : [1, k, b.features];
 * ```
 */
export interface TokenBranch {
  /** The module as the export names it. */
  module: string;
  /** Input name of the token ids, int64 `[rows, 1, K]` (tied head: `[rows, K, 1]`). */
  indices: string;
  /** Input name of the new rows, `[rows, K, features]` (tied head: transposed, `[rows, features, K]`). */
  values: string;
  /** Whether the tokens are the module's outputs (a tied `lm_head`) rather than its input ids (an embedding). */
  tokensAreOutputs: boolean;
  /** Length of one token's row: the embedding dim (the head's input features). */
  features: number;
  /** Element type of `values`: the module's own float type. */
  elementType: "float32" | "float16";
}

/**
 * A module to branch: its weight target and whether its tokens are outputs.
 *
 * @example
 * ```ts
 * import type { TokenSite } from "./token_branches.ts";
 * const describe = (s: TokenSite) => `${s.target.module}${s.tokensAreOutputs ? " (tied head)" : ""}`;
 * ```
 */
export interface TokenSite {
  target: WeightTarget;
  tokensAreOutputs: boolean;
}

function elementTypeOf(model: ModelProto, target: WeightTarget): "float32" | "float16" {
  const name = target.quantized ? target.quantized.scales : target.initializer;
  const type = model.graph!.initializer.find((t) => t.name === name)?.dataType;
  if (type === TensorProto_DataType.FLOAT16) return "float16";
  if (type === TensorProto_DataType.FLOAT) return "float32";
  throw new UnsupportedError(
    `trainable tokens in dynamic mode need a float32 or float16 ${target.kind} weight; ${name} has element type ${type}`,
    { key: "trainable_token_indices" },
  );
}

/** The tensors the branch reads (`x`: ids or hidden states) and replaces (`y`), in the base graph. */
function siteOf(base: readonly NodeProto[], { target, tokensAreOutputs }: TokenSite): { x: string; y: string } {
  const fail = (why: string) =>
    new UnsupportedError(`trainable tokens in dynamic mode: ${why}`, { key: target.module });
  if (target.inSubgraph) {
    throw fail(`${target.nodeName} is computed inside an If (a merged decoder); use mode "merged"`);
  }
  // A quantized module's float ends: the ids and the DequantizeLinear after quantize_dynamic's 8-bit Gather
  // (the rows PEFT writes are float, so replacing that output is what the merged reference computes), or a
  // tied head's input and product.
  if (target.quantized) return { x: target.quantized.input, y: target.quantized.output };
  let node = base[target.readerIndex];
  // The weight may pass through a Transpose (or the fp16 converter's Cast) before its op.
  for (let hops = 0; hops < 2 && ["Transpose", "Cast"].includes(node.opType); hops++) {
    const out = node.output[0];
    const next = base.find((n) => n.name === target.nodeName && n.input.includes(out)) ??
      base.find((n) => n.input.includes(out));
    if (!next) throw new OnnxModelError(`no node reads ${out}`, { key: target.module });
    node = next;
  }
  const want = tokensAreOutputs ? "MatMul" : "Gather";
  if (node.opType !== want) throw fail(`${node.name} is a ${node.opType}, not a ${want}`);
  return tokensAreOutputs ? { x: node.input[0], y: node.output[0] } : { x: node.input[1], y: node.output[0] };
}

/** A tensor's rank where the graph records it (inputs, value_info), else undefined. */
function recordedRank(model: ModelProto, name: string): number | undefined {
  const graph = model.graph!;
  const v = [...graph.input, ...graph.valueInfo].find((i) => i.name === name)?.type?.value;
  return v?.case === "tensorType" && v.value.shape ? v.value.shape.dim.length : undefined;
}

/** The default-domain opset: where Unsqueeze (13) and ReduceMax (18) take their axes as an input. */
function opsetOf(model: ModelProto): number {
  const entry = model.opsetImport.find((o) => o.domain === "" || o.domain === "ai.onnx");
  return Number(entry?.version ?? 18);
}

/**
 * Returns a new model in which every listed module gets a trainable-tokens
 * branch (see the module doc), and the branches' input names by module.
 * `sites` are targets of the weight index of `base` (the graph before any
 * branch); `model` is `base` or `base` with LoRA branches added
 * (`addLoraBranches`), which keep every tensor the sites name: the branch
 * then wraps whatever computes the module's output.
 *
 * @throws {UnsupportedError} for a non-float embedding, a module inside an If, or a head that is not a MatMul.
 * @example
 * ```ts
 * import { addTokenBranches } from "./token_branches.ts";
 * import { decodeModel } from "./model_file.ts";
 * import { indexWeights } from "./weight_index.ts";
 * import { readFile } from "node:fs/promises";
 * const base = decodeModel(await readFile("tests/fixtures/llama-tiny/onnx/model.onnx"), "model.onnx");
 * const target = indexWeights(base.graph!).resolve("model.embed_tokens")!;
 * const { branches } = addTokenBranches(base, base, [{ target, tokensAreOutputs: false }]);
 * console.log(branches.get(target.module)); // { indices: "tokens.model.embed_tokens.indices", ... }
 * ```
 */
export function addTokenBranches(
  model: ModelProto,
  base: ModelProto,
  sites: Iterable<TokenSite>,
): { model: ModelProto; branches: Map<string, TokenBranch> } {
  const graph = model.graph!;
  const taken = usedNames(graph);
  const fresh = nameAllocator(taken);
  const opset = opsetOf(model);
  const nodes = graph.node.slice();
  const inputs: ValueInfoProto[] = [];
  const branches = new Map<string, TokenBranch>();
  for (const site of sites) {
    const { target, tokensAreOutputs } = site;
    const module = target.module;
    if (branches.has(module)) throw new OnnxModelError("module given twice", { key: module });
    const { x, y } = siteOf(base.graph!.node, site);
    // The branch lines the rows up as [batch, seq, ...]: ids [batch, seq], a head's input [batch, seq, hidden].
    const rank = recordedRank(base, x);
    if (rank !== undefined && rank !== (tokensAreOutputs ? 3 : 2)) {
      throw new UnsupportedError(
        `trainable tokens in dynamic mode need ${
          tokensAreOutputs ? "[batch, seq, hidden] input" : "[batch, seq] ids"
        } ` +
          `at ${target.nodeName}; ${x} has rank ${rank}. Use mode "merged"`,
        { key: module },
      );
    }
    const producer = nodes.findIndex((n) => n.output.includes(y));
    if (producer < 0) throw new OnnxModelError(`no node computes ${y}`, { key: module });
    const prefix = `tokens.${module}`;
    for (const name of [`${prefix}.indices`, `${prefix}.values`]) {
      if (taken.has(name)) throw new OnnxModelError(`the graph already has a tensor named ${name}`, { key: module });
      taken.add(name);
    }
    const elementType = elementTypeOf(base, target);
    const features = tokensAreOutputs ? target.inFeatures : target.outFeatures;
    const branch: TokenBranch = {
      module,
      indices: `${prefix}.indices`,
      values: `${prefix}.values`,
      tokensAreOutputs,
      features,
      elementType,
    };
    const T = elementType === "float16" ? TensorProto_DataType.FLOAT16 : TensorProto_DataType.FLOAT;
    const [rows, k] = [`${prefix}.rows`, `${prefix}.count`];
    inputs.push(
      tensorValueInfo(branch.indices, TensorProto_DataType.INT64, tokensAreOutputs ? [rows, k, 1] : [rows, 1, k]),
      tensorValueInfo(branch.values, T, tokensAreOutputs ? [rows, features, k] : [rows, k, features]),
    );
    branches.set(module, branch);

    // The producer now writes `e`; the branch writes the original output name.
    const e = fresh(`${y}_tokens_base`);
    const old = nodes[producer];
    nodes[producer] = edited(NodeProtoSchema, old, { output: old.output.map((o) => (o === y ? e : o)) });
    const scope = `/${prefix}/`;
    const t = (n: string) => fresh(`${prefix}/${n}`);
    const added: NodeProto[] = [];
    const axes = (values: number[], name: string) => {
      const out = t(name);
      added.push(int64Constant(values, [values.length], out, `${scope}${name}`));
      return out;
    };
    // hit [.., K, ..] as float32 (ReduceMax has no float16 kernel everywhere), and any(hit) over K.
    let hit32: string;
    let reduceAxis: number;
    if (!tokensAreOutputs) {
      const ids64 = t("ids64");
      const idsCol = t("ids_col");
      added.push(makeNode("Cast", [x], [ids64], `${scope}Cast_ids`, { to: TensorProto_DataType.INT64 }));
      added.push(
        opset >= 13
          ? makeNode("Unsqueeze", [ids64, axes([-1], "axis_last")], [idsCol], `${scope}Unsqueeze`)
          : makeNode("Unsqueeze", [ids64], [idsCol], `${scope}Unsqueeze`, { axes: [-1] }),
      );
      const eq = t("eq");
      added.push(makeNode("Equal", [idsCol, branch.indices], [eq], `${scope}Equal`));
      hit32 = t("hit");
      added.push(makeNode("Cast", [eq], [hit32], `${scope}Cast_hit`, { to: TensorProto_DataType.FLOAT }));
      reduceAxis = -1;
    } else {
      const [zero, one, vocab, range, eq] = ["zero", "one", "vocab", "range", "eq"].map(t);
      added.push(
        int64Constant([0], [], zero, `${scope}zero`),
        int64Constant([1], [], one, `${scope}one`),
        int64Constant([target.outFeatures], [], vocab, `${scope}vocab`),
        makeNode("Range", [zero, vocab, one], [range], `${scope}Range`),
        makeNode("Equal", [branch.indices, range], [eq], `${scope}Equal`),
      );
      hit32 = t("hit");
      added.push(makeNode("Cast", [eq], [hit32], `${scope}Cast_hit`, { to: TensorProto_DataType.FLOAT }));
      reduceAxis = 1;
    }
    const any32 = t("any");
    added.push(
      opset >= 18
        ? makeNode("ReduceMax", [hit32, axes([reduceAxis], "axis_reduce")], [any32], `${scope}ReduceMax`, {
          keepdims: 1,
        })
        : makeNode("ReduceMax", [hit32], [any32], `${scope}ReduceMax`, { axes: [reduceAxis], keepdims: 1 }),
    );
    const [hit, any] = elementType === "float16" ? [t("hit_T"), t("any_T")] : [hit32, any32];
    if (elementType === "float16") {
      added.push(
        makeNode("Cast", [hit32], [hit], `${scope}Cast_hit_T`, { to: T }),
        makeNode("Cast", [any32], [any], `${scope}Cast_any_T`, { to: T }),
      );
    }
    const replaced = t("replaced");
    if (!tokensAreOutputs) {
      added.push(makeNode("MatMul", [hit, branch.values], [replaced], `${scope}MatMul`));
    } else {
      const dots = t("dots");
      added.push(
        makeNode("MatMul", [x, branch.values], [dots], `${scope}MatMul_values`),
        makeNode("MatMul", [dots, hit], [replaced], `${scope}MatMul_scatter`),
      );
    }
    const [dropped, kept] = [t("dropped"), t("kept")];
    added.push(
      makeNode("Mul", [e, any], [dropped], `${scope}Mul`),
      makeNode("Sub", [e, dropped], [kept], `${scope}Sub`),
      makeNode("Add", [kept, replaced], [y], `${scope}Add`),
    );
    nodes.splice(producer + 1, 0, ...added);
  }
  const branched = edited(GraphProtoSchema, graph, { node: nodes, input: [...graph.input, ...inputs] });
  return { model: edited(ModelProtoSchema, model, { graph: branched }), branches };
}
