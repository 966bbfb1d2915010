/**
 * Finding, for each PyTorch module name, the ONNX weight that implements it.
 * Exporters rename and transpose weights (`onnx::MatMul_426`, `[in, out]`),
 * so the module name is read from the consuming node's scope
 * (`/model/layers.0/self_attn/q_proj/MatMul`) or, where the exporter kept
 * it, from the initializer's own name (`model.layers.0.mlp.up_proj.weight`).
 * @module
 */
import type { GraphProto, NodeProto, TensorProto } from "../deps/onnx_proto.ts";
import type { WeightLayout } from "../kernels/reference.ts";
import { matchQuantizedProjection, type QuantizedProjection } from "./quantized_weights.ts";
import { floatAttribute, intAttribute } from "./graph_parts.ts";
import { floatElementType } from "./tensor_data.ts";

/** What kind of PyTorch module an ONNX weight belongs to. */
export type ModuleKind = "linear" | "embedding";

/** One patchable weight of the ONNX graph, named by its PyTorch module. */
export interface WeightTarget {
  /** PyTorch module name, e.g. `model.layers.0.self_attn.q_proj`. */
  module: string;
  kind: ModuleKind;
  /** The node computing the module (MatMul, Gemm or Gather). */
  nodeName: string;
  /** Index in `graph.node` of the node that reads the initializer directly (the op, or a Transpose before it). */
  readerIndex: number;
  /** Which input of that reader is the initializer. */
  inputIndex: number;
  /** Initializer holding the weight. */
  initializer: string;
  /** Row-major layout of the stored weight. */
  layout: WeightLayout;
  /** Linear: in/out features. Embedding: in = num_embeddings, out = embedding_dim. */
  inFeatures: number;
  outFeatures: number;
  /** Float initializer holding the bias, when the module has one, and the node input reading it. */
  bias?: InitializerUse;
  /**
   * Set for quantized projections (`MatMulNBits`, or `MatMulInteger` after
   * `DynamicQuantizeLinear`): `initializer` then holds integer codes, so the
   * weight cannot be merged into, only branched; this names the projection's
   * float input and output. Read its values with `readTargetWeight`.
   */
  quantized?: QuantizedProjection;
}

/** An initializer as read by one input of one node. */
export interface InitializerUse {
  initializer: string;
  readerIndex: number;
  inputIndex: number;
}

/** Index of the graph's patchable weights by module name. */
export interface WeightIndex {
  /** Every module name found, in graph order. */
  readonly modules: readonly string[];
  get(module: string): WeightTarget | undefined;
  /** Nodes that read an initializer (to detect tied weights). */
  consumers(initializer: string): readonly number[];
}

/** `/model/layers.0/self_attn/q_proj/MatMul` -> `model.layers.0.self_attn.q_proj`. */
function moduleFromNodeName(name: string): string | undefined {
  const parts = name.split("/").filter((p) => p.length > 0);
  if (parts.length < 2) return undefined;
  return parts.slice(0, -1).join(".");
}

/** `model.layers.0.mlp.up_proj.weight` -> `model.layers.0.mlp.up_proj` (exporter kept the parameter name). */
function moduleFromParamName(name: string): string | undefined {
  return /^[A-Za-z_][\w.]*\.weight$/.test(name) ? name.slice(0, -".weight".length) : undefined;
}

/**
 * Indexes a graph's MatMul, Gemm and Gather weights by PyTorch module name,
 * and the quantized projections ONNX Runtime's tools produce (`MatMulNBits`,
 * `MatMulInteger` after `DynamicQuantizeLinear`) as `quantized` linear targets.
 *
 * @example
 * ```ts
 * import { indexWeights } from "./weight_index.ts";
 * import { decodeModel } from "./model_file.ts";
 * import { readFile } from "node:fs/promises";
 * const model = decodeModel(await readFile("tests/fixtures/llama-tiny/onnx/model.onnx"), "model.onnx");
 * const index = indexWeights(model.graph!);
 * index.get("model.layers.0.self_attn.q_proj")?.layout; // "in_out"
 * ```
 */
export function indexWeights(graph: GraphProto): WeightIndex {
  const initializers = new Map<string, TensorProto>(graph.initializer.map((t) => [t.name, t]));
  const producers = new Map<string, NodeProto>();
  const consumers = new Map<string, number[]>();
  graph.node.forEach((node, i) => {
    for (const out of node.output) producers.set(out, node);
    for (const input of node.input) {
      if (initializers.has(input)) consumers.set(input, [...(consumers.get(input) ?? []), i]);
    }
  });
  const float2d = (name: string) => {
    const t = initializers.get(name);
    return t && t.dims.length === 2 && floatElementType(t.dataType) ? t : undefined;
  };
  const bias1d = (readerIndex: number, inputIndex: number, length: number): InitializerUse | undefined => {
    const t = initializers.get(graph.node[readerIndex].input[inputIndex] ?? "");
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

  const transposedInitializer = (input: string | undefined) => {
    const producer = input === undefined ? undefined : producers.get(input);
    if (!producer || producer.opType !== "Transpose" || (producer.domain ?? "") !== "") return undefined;
    const perm = producer.attribute.find((a) => a.name === "perm")?.ints.map(Number);
    if (perm && !(perm[0] === 1 && perm[1] === 0)) return undefined;
    const tensor = float2d(producer.input[0]);
    return tensor ? { tensor, readerIndex: graph.node.indexOf(producer) } : undefined;
  };

  const targets = new Map<string, WeightTarget>();
  graph.node.forEach((node, nodeIndex) => {
    let target: Omit<WeightTarget, "module"> | undefined;
    if (node.opType === "MatMul" && (node.domain ?? "") === "") {
      const w = float2d(node.input[1]);
      const transposed = w ? undefined : transposedInitializer(node.input[1]);
      if (w) {
        const [inF, outF] = w.dims.map(Number);
        target = {
          kind: "linear",
          nodeName: node.name,
          readerIndex: nodeIndex,
          inputIndex: 1,
          initializer: w.name,
          layout: "in_out",
          inFeatures: inF,
          outFeatures: outF,
          bias: addBias(node.output[0], outF),
        };
      } else if (transposed) {
        // Newer exporters keep `weight` as [out, in] and Transpose it before the MatMul.
        const [outF, inF] = transposed.tensor.dims.map(Number);
        target = {
          kind: "linear",
          nodeName: node.name,
          readerIndex: transposed.readerIndex,
          inputIndex: 0,
          initializer: transposed.tensor.name,
          layout: "out_in",
          inFeatures: inF,
          outFeatures: outF,
          bias: addBias(node.output[0], outF),
        };
      }
    } else if (node.opType === "Gemm" && (node.domain ?? "") === "") {
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
    } else if (node.opType === "Gather" && (node.domain ?? "") === "" && intAttribute(node, "axis", 0) === 0) {
      const w = float2d(node.input[0]);
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
    if (!target) return;
    // The node's scope names the module even when the weight is shared (tied
    // embeddings); generic node names fall back to the parameter's name.
    const module = moduleFromNodeName(node.name) ?? moduleFromParamName(target.initializer);
    // First consumer wins: a module is one weight; later nodes of the same scope are not it.
    if (module && !targets.has(module)) targets.set(module, { module, ...target });
  });

  return {
    modules: [...targets.keys()],
    get: (module) => targets.get(module),
    consumers: (initializer) => consumers.get(initializer) ?? [],
  };
}
