/**
 * Finding, for each PyTorch module name, the ONNX weight that implements it.
 * Exporters rename and transpose weights (`onnx::MatMul_426` `[in, out]`,
 * dynamo's `val_12`), so the module is read from the consuming node's scope
 * (see `module_scope.ts`: TorchScript node names, dynamo metadata) or, where
 * the exporter kept it, from the initializer's own name
 * (`model.layers.0.mlp.up_proj.weight`). Weights may be read through a
 * Transpose (`[out, in]` kept) or a Cast (onnxruntime's fp16 converter), or
 * quantized (`quantized_weights.ts`). Optimum's merged decoders compute in
 * the branches of an `If`; those weights live once in the outer graph, so
 * both branches are indexed and must agree.
 * @module
 */
import type { GraphProto, NodeProto, TensorProto } from "../deps/onnx_proto.ts";
import { OnnxModelError } from "../errors.ts";
import { floatAttribute, intAttribute } from "./graph_parts.ts";
import { nodeScope } from "./module_scope.ts";
import { indexNorms } from "./norm_index.ts";
import { matchQuantizedProjection } from "./quantized_weights.ts";
import { floatElementType } from "./tensor_data.ts";
import type { GraphModule, InitializerUse, WeightIndex, WeightTarget } from "./weight_target.ts";

export type {
  GraphModule,
  InitializerUse,
  ModuleKind,
  QuantizedProjection,
  WeightIndex,
  WeightTarget,
} from "./weight_target.ts";

/** `model.layers.0.mlp.up_proj.weight` -> `model.layers.0.mlp.up_proj` (exporter kept the parameter name). */
function moduleFromParamName(name: string): string | undefined {
  return /^[A-Za-z_][\w.]*\.weight$/.test(name) ? name.slice(0, -".weight".length) : undefined;
}

type Found = Omit<WeightTarget, "module">;

/** Every node's candidate target in one graph (the top level, or one If branch). */
function targetsOf(graph: GraphProto, initializers: ReadonlyMap<string, TensorProto>): Map<number, Found> {
  const producers = new Map<string, NodeProto>();
  graph.node.forEach((node) => {
    for (const out of node.output) producers.set(out, node);
  });
  const float2d = (name: string | undefined) => {
    const t = name === undefined ? undefined : initializers.get(name);
    return t && t.dims.length === 2 && floatElementType(t.dataType) ? t : undefined;
  };
  const bias1d = (readerIndex: number, inputIndex: number, length: number): InitializerUse | undefined => {
    const name = graph.node[readerIndex].input[inputIndex] ?? "";
    // TorchScript exports deduplicate equal initializers (zero biases) behind Identity nodes.
    const identity = initializers.has(name) ? undefined : producers.get(name);
    if (identity?.opType === "Identity" && (identity.domain ?? "") === "" && initializers.has(identity.input[0])) {
      return bias1d(graph.node.indexOf(identity), 0, length);
    }
    const t = initializers.get(name);
    const ok = t && t.dims.length === 1 && Number(t.dims[0]) === length && floatElementType(t.dataType);
    return ok ? { initializer: t.name, readerIndex, inputIndex } : undefined;
  };
  // A bias added right after a MatMul (`Linear` with bias exports as MatMul + Add).
  const addBias = (output: string, outFeatures: number) => {
    const readerIndex = graph.node.findIndex((n) => n.opType === "Add" && n.input.includes(output));
    if (readerIndex < 0) return undefined;
    const inputIndex = graph.node[readerIndex].input.findIndex((i) => i !== output);
    return inputIndex < 0 ? undefined : bias1d(readerIndex, inputIndex, outFeatures);
  };
  /** An initializer reached through one Transpose `[1, 0]` and/or one Cast (fp16 converter), as the reader sees it. */
  const throughReader = (input: string | undefined) => {
    let transposed = false;
    let name = input;
    let readerIndex = -1;
    for (let hops = 0; hops < 2 && name !== undefined && !float2d(name); hops++) {
      const producer = producers.get(name);
      if (!producer || (producer.domain ?? "") !== "") return undefined;
      if (producer.opType === "Transpose") {
        const perm = producer.attribute.find((a) => a.name === "perm")?.ints.map(Number);
        if ((perm && !(perm[0] === 1 && perm[1] === 0)) || transposed) return undefined;
        transposed = true;
      } else if (producer.opType !== "Cast") {
        return undefined;
      }
      readerIndex = graph.node.indexOf(producer);
      name = producer.input[0];
    }
    const tensor = float2d(name);
    return tensor && readerIndex >= 0 ? { tensor, readerIndex, transposed } : undefined;
  };

  const found = new Map<number, Found>();
  graph.node.forEach((node, nodeIndex) => {
    const domain = node.domain ?? "";
    let target: Found | undefined;
    if (node.opType === "MatMul" && domain === "") {
      const w = float2d(node.input[1]);
      const via = w ? undefined : throughReader(node.input[1]);
      const tensor = w ?? via?.tensor;
      if (tensor) {
        // Newer exporters keep `weight` as [out, in] and Transpose it before the MatMul.
        const outIn = via?.transposed === true;
        const [d0, d1] = tensor.dims.map(Number);
        const outF = outIn ? d0 : d1;
        target = {
          kind: "linear",
          nodeName: node.name,
          readerIndex: via ? via.readerIndex : nodeIndex,
          inputIndex: via ? 0 : 1,
          initializer: tensor.name,
          layout: outIn ? "out_in" : "in_out",
          inFeatures: outIn ? d1 : d0,
          outFeatures: outF,
          bias: addBias(node.output[0], outF),
        };
      }
    } else if (node.opType === "Gemm" && domain === "") {
      const w = float2d(node.input[1]);
      // Only plain `y = x W (+ b)` Gemms are linear layers we can patch.
      if (w && intAttribute(node, "transA", 0) === 0 && floatAttribute(node, "alpha", 1) === 1) {
        const transB = intAttribute(node, "transB", 0) === 1;
        const [d0, d1] = w.dims.map(Number);
        const outF = transB ? d0 : d1;
        target = {
          kind: "linear",
          nodeName: node.name,
          readerIndex: nodeIndex,
          inputIndex: 1,
          initializer: w.name,
          layout: transB ? "out_in" : "in_out",
          inFeatures: transB ? d1 : d0,
          outFeatures: outF,
          bias: floatAttribute(node, "beta", 1) === 1 ? bias1d(nodeIndex, 2, outF) : undefined,
        };
      }
    } else if (node.opType === "Gather" && domain === "" && intAttribute(node, "axis", 0) === 0) {
      const w = float2d(node.input[0]);
      // quantize_dynamic's embedding: an 8-bit table, dequantized after the Gather.
      if (!w) target = matchQuantizedProjection(graph, nodeIndex, { initializers, producers, addBias });
      if (w) {
        const [num, dim] = w.dims.map(Number);
        target = {
          kind: "embedding",
          nodeName: node.name,
          readerIndex: nodeIndex,
          inputIndex: 0,
          initializer: w.name,
          layout: "in_out",
          inFeatures: num,
          outFeatures: dim,
        };
      }
    } else {
      target = matchQuantizedProjection(graph, nodeIndex, { initializers, producers, addBias });
    }
    if (target && !target.bias && !target.quantized) {
      // A contrib op reading the output may hold the layer's bias (onnxruntime's fused BiasGelu, SkipLayerNorm).
      const fused = graph.node.find((n) => (n.domain ?? "") !== "" && n.input.includes(node.output[0]));
      if (fused) target = { ...target, outputFusedInto: fused.name || fused.opType };
    }
    if (target) found.set(nodeIndex, target);
  });
  return found;
}

/** Targets and scopes of one graph, named by module; first consumer wins (a module is one weight). */
function nameTargets(
  graph: GraphProto,
  found: ReadonlyMap<number, Found>,
  targets: Map<string, WeightTarget>,
  scopes: Map<string, GraphModule>,
  unscoped: Set<string>,
) {
  graph.node.forEach((node, nodeIndex) => {
    const scope = nodeScope(node);
    for (const s of scope?.path ?? []) {
      const known = scopes.get(s.module);
      if (!known || (known.className === undefined && s.className !== undefined)) scopes.set(s.module, s);
    }
    const target = found.get(nodeIndex);
    if (!target) return;
    // The node's scope names the module even when the weight is shared (tied
    // embeddings); generic node names fall back to the parameter's name.
    const module = scope?.module ?? moduleFromParamName(target.initializer);
    if (!module) unscoped.add(target.nodeName);
    else if (!targets.has(module)) targets.set(module, { module, ...target });
  });
}

/** Same weight, same shape: the two branches of a merged decoder compute one module. */
function sameWeight(a: WeightTarget, b: WeightTarget): boolean {
  return a.kind === b.kind && a.initializer === b.initializer && a.layout === b.layout &&
    a.inFeatures === b.inFeatures && a.outFeatures === b.outFeatures && !a.quantized === !b.quantized;
}

/**
 * Options of {@linkcode indexWeights}.
 *
 * @example
 * ```ts
 * import type { IndexOptions } from "./weight_index.ts";
 * const options: IndexOptions = { unscopedHint: "no onnx/model.onnx beside it to read the module paths from" };
 * ```
 */
export interface IndexOptions {
  /** Said in errors about modules not found, when some weights name no module (see `WeightIndex.unscoped`). */
  unscopedHint?: string;
}

/**
 * Indexes a graph's MatMul, Gemm and Gather weights by PyTorch module name,
 * and the quantized projections ONNX Runtime's tools produce (`MatMulNBits`,
 * `MatMulInteger` after `DynamicQuantizeLinear`) as `quantized` linear
 * targets. Weights computed inside the branches of a top-level `If` (merged
 * decoders) are indexed when both branches read the same outer-graph
 * initializer; their `readerIndex` is the `If` node and `inputIndex` is -1
 * (`inSubgraph`), so they can be patched in place (both branches at once)
 * but not given per-node copies.
 *
 * @example
 * ```ts
 * import { indexWeights } from "./weight_index.ts";
 * import { decodeModel } from "./model_file.ts";
 * import { readFile } from "node:fs/promises";
 * const model = decodeModel(await readFile("tests/fixtures/llama-tiny/onnx/model.onnx"), "model.onnx");
 * const index = indexWeights(model.graph!, "onnx/model.onnx");
 * index.get("model.layers.0.self_attn.q_proj")?.layout; // "in_out"
 * index.resolve("base.model.layers.0.self_attn.q_proj")?.module; // "model.layers.0.self_attn.q_proj"
 * ```
 */
export function indexWeights(graph: GraphProto, file?: string, options: IndexOptions = {}): WeightIndex {
  const initializers = new Map<string, TensorProto>(graph.initializer.map((t) => [t.name, t]));
  const consumers = new Map<string, number[]>();
  const read = (input: string, i: number) => {
    const list = consumers.get(input) ?? [];
    if (initializers.has(input) && list[list.length - 1] !== i) consumers.set(input, [...list, i]);
  };
  const targets = new Map<string, WeightTarget>();
  const scopes = new Map<string, GraphModule>();
  const unscoped = new Set<string>();
  nameTargets(graph, targetsOf(graph, initializers), targets, scopes, unscoped);

  graph.node.forEach((node, nodeIndex) => {
    for (const input of node.input) read(input, nodeIndex);
    const branches = node.attribute.filter((a) => a.g !== undefined).map((a) => a.g!);
    if (branches.length === 0) return;
    // Subgraphs see the outer initializers (plus their own).
    const perBranch = branches.map((g) => {
      const visible = new Map([...initializers, ...g.initializer.map((t) => [t.name, t] as const)]);
      const own = new Map<string, WeightTarget>();
      nameTargets(g, targetsOf(g, visible), own, scopes, unscoped);
      for (const n of g.node) for (const input of n.input) read(input, nodeIndex);
      return own;
    });
    for (const [module, first] of perBranch[0]) {
      if (targets.has(module) || !initializers.has(first.initializer)) continue;
      // A module patched in one branch and not the other would run half-adapted: index only agreeing ones.
      if (!perBranch.every((b) => b.has(module) && sameWeight(b.get(module)!, first))) continue;
      targets.set(module, { ...first, readerIndex: nodeIndex, inputIndex: -1, inSubgraph: true });
    }
  });

  const modules = [...targets.keys()];
  const byHfName = <T>(names: readonly string[], get: (name: string) => T | undefined, hf: string) => {
    const exact = get(hf);
    if (exact !== undefined) return exact;
    // Exports scope below the top-level module (OPT: `decoder.layers.0...` for `model.decoder.layers.0...`)
    // or above it (a wrapper's `m.model...`): a name equal up to a leading prefix, if exactly one.
    const candidates = names.filter((n) => hf.endsWith(`.${n}`) || n.endsWith(`.${hf}`));
    if (candidates.length > 1) {
      throw new OnnxModelError(
        `module ${hf} matches several modules of the export (${candidates.join(", ")}); cannot tell which it is`,
        { file, key: hf },
      );
    }
    return candidates.length === 1 ? get(candidates[0]) : undefined;
  };
  const scopeNames = [...scopes.keys()];
  // Norms matter only to adapters that replace their parameters: indexed on first use.
  let norms: ReturnType<typeof indexNorms> | undefined;
  const normsOf = () => norms ??= indexNorms(graph);
  return {
    file,
    modules,
    scopes: [...scopes.values()],
    get: (module) => targets.get(module),
    resolve: (hf) => byHfName(modules, (n) => targets.get(n), hf),
    resolveScope: (hf) => byHfName(scopeNames, (n) => scopes.get(n), hf),
    resolveNorm: (hf) => byHfName([...normsOf().keys()], (n) => normsOf().get(n), hf),
    consumers: (initializer) => consumers.get(initializer) ?? [],
    unscoped: [...unscoped],
    unscopedHint: unscoped.size > 0 ? options.unscopedHint : undefined,
  };
}

/**
 * A sentence for errors about a module not found, when the export has
 * weights that name no module (empty when it has none): which nodes, and
 * why or what to do when the loader said (`IndexOptions.unscopedHint`).
 *
 * @example
 * ```ts
 * import { indexWeights, unscopedNote } from "./weight_index.ts";
 * import { decodeModel } from "./model_file.ts";
 * import { readFile } from "node:fs/promises";
 * const q4 = decodeModel(await readFile("tests/fixtures/index/llama-dynamo/onnx/model_q4.onnx"), "model_q4.onnx");
 * unscopedNote(indexWeights(q4.graph!, "onnx/model_q4.onnx", { unscopedHint: "no onnx/model.onnx beside it" }));
 * // "15 weights of the export name no module (node_linear_Q4, node_linear_1_Q4, node_linear_2_Q4, ...): no onnx/model.onnx beside it"
 * ```
 */
export function unscopedNote(index: WeightIndex): string {
  const n = index.unscoped.length;
  if (n === 0) return "";
  const nodes = index.unscoped.slice(0, 3).join(", ") + (n > 3 ? ", ..." : "");
  return `${n} weight${n === 1 ? "" : "s"} of the export name no module (${nodes})` +
    (index.unscopedHint ? `: ${index.unscopedHint}` : "");
}
