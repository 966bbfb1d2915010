/**
 * What the module index tells about one patchable weight: the shared
 * vocabulary of the index, the quantized-projection matcher, patching and
 * LoRA branches (kept apart so none of them imports another in a cycle).
 * @module
 */
import type { WeightLayout } from "../kernels/reference.ts";

/**
 * What kind of PyTorch module an ONNX weight belongs to (`norm`: only
 * from {@linkcode WeightIndex.resolveNorm}, never a LoRA target).
 *
 * @example
 * ```ts
 * import type { ModuleKind } from "./weight_target.ts";
 * const kind: ModuleKind = "linear";
 * ```
 */
export type ModuleKind = "linear" | "embedding" | "norm";

/**
 * How a quantized projection (or embedding) is computed, and where its float ends are.
 *
 * @example
 * ```ts
 * import type { QuantizedProjection } from "./weight_target.ts";
 * const q: QuantizedProjection = { op: "MatMulInteger", bits: 8, input: "x", output: "y", outputIndex: 4, scales: "w_scale" };
 * ```
 */
export interface QuantizedProjection {
  /** `Gather`: an 8-bit embedding table, gathered then `DequantizeLinear`ed (quantize_dynamic). */
  op: "MatMulNBits" | "MatMulInteger" | "Gather";
  /** Bits per weight code (MatMulNBits: 2-8; MatMulInteger and Gather: 8). */
  bits: number;
  /** MatMulNBits block size along K. */
  blockSize?: number;
  /** The float tensor the projection reads (`x`; the ids for an embedding). */
  input: string;
  /** The float tensor it produces (`x W`, plus the MatMulNBits bias input when used). */
  output: string;
  /** Index in `graph.node` of the node producing `output`. */
  outputIndex: number;
  /** Initializer holding the weight scales. */
  scales: string;
  /** Initializer holding the weight zero points, when present. */
  zeroPoints?: string;
  /**
   * MatMulNBits' `g_idx` input, when present (act-order: each K row names its block, out of order). A LoRA
   * branch beside the node needs nothing of the weight; reading or re-quantizing the weight is refused.
   */
  groupIndex?: string;
}

/**
 * An initializer as read by one input of one node.
 *
 * @example
 * ```ts
 * import type { InitializerUse } from "./weight_target.ts";
 * const use: InitializerUse = { initializer: "onnx::MatMul_426", readerIndex: 12, inputIndex: 1 };
 * ```
 */
export interface InitializerUse {
  initializer: string;
  readerIndex: number;
  inputIndex: number;
}

/**
 * One patchable weight of the ONNX graph, named by its PyTorch module.
 *
 * @example
 * ```ts
 * import type { WeightTarget } from "./weight_target.ts";
 * const describe = (t: WeightTarget) => `${t.module}: ${t.initializer} ${t.inFeatures}x${t.outFeatures} (${t.layout})`;
 * ```
 */
export interface WeightTarget {
  /** PyTorch module name as the export names it, e.g. `model.layers.0.self_attn.q_proj`. */
  module: string;
  kind: ModuleKind;
  /** The node computing the module (MatMul, Gemm, Gather or a quantized projection). */
  nodeName: string;
  /** Index in `graph.node` of the node that reads the initializer directly (the op, or a Transpose/Cast before it). */
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
   * Set when no bias was found and the output is read by a contrib op (onnxruntime's fused `BiasGelu`,
   * `SkipLayerNormalization`, ...), which may hold the bias: its name. A trained bias cannot replace it then.
   */
  outputFusedInto?: string;
  /**
   * Set for quantized projections (`MatMulNBits`, or `MatMulInteger` after
   * `DynamicQuantizeLinear`) and embeddings (`Gather` + `DequantizeLinear`):
   * `initializer` then holds integer codes, which merging dequantizes and
   * re-quantizes (`requantize.ts`); this names the float input and output
   * a LoRA branch attaches to.
   */
  quantized?: QuantizedProjection;
  /**
   * The weight is read inside the branches of an `If` (Optimum's merged
   * decoders): `readerIndex` is that `If` node and `inputIndex` is -1. Both
   * branches read the same outer initializer, so patching it in place
   * adapts both at once.
   */
  inSubgraph?: boolean;
  /**
   * A 3-D parameter (an MoE expert stack `[experts, out, in]`, or `[experts, in, out]` with layout "in_out")
   * that every reader of `initializer` reads whole (the export gathers one expert at a time): a LoRA on it
   * (`target_parameters`) adds a per-expert delta to the whole stack. `inFeatures`/`outFeatures` are one expert's.
   */
  experts?: number;
}

/**
 * A module the graph shows (a node's scope) without a patchable weight of its
 * own: a norm, an attention block, a whole decoder layer. `className` is the
 * PyTorch class when the exporter recorded it (dynamo exports do).
 *
 * @example
 * ```ts
 * import type { GraphModule } from "./weight_target.ts";
 * const norm: GraphModule = { module: "model.layers.0.input_layernorm", className: "LlamaRMSNorm" };
 * ```
 */
export interface GraphModule {
  module: string;
  className?: string;
}

/**
 * Index of the graph's patchable weights by module name.
 *
 * @example
 * ```ts
 * import type { WeightIndex } from "./weight_target.ts";
 * const linear = (index: WeightIndex) => index.modules.filter((m) => index.get(m)!.kind === "linear");
 * ```
 */
export interface WeightIndex {
  /** The ONNX file the graph came from, when the indexer was told (named in errors). */
  readonly file?: string;
  /** Every module with a patchable weight, in graph order, named as the export names it. */
  readonly modules: readonly string[];
  /** Every module scope the graph shows (with or without a weight), in graph order. */
  readonly scopes: readonly GraphModule[];
  /** The target of a module by its name in the export. */
  get(module: string): WeightTarget | undefined;
  /**
   * The target of a module by its Hugging Face name (`model.decoder.layers.0.self_attn.q_proj`):
   * the export's own name, or the one export module whose name differs from it only by a leading
   * prefix (exports scoped below or above the top-level module). Throws an `OnnxModelError` naming
   * the candidates when more than one would fit.
   */
  resolve(hfModule: string): WeightTarget | undefined;
  /**
   * A normalization layer's parameters (`kind: "norm"`, see `norm_index.ts`) by its Hugging Face
   * name, resolved like {@linkcode WeightIndex.resolve}; norms are not among `modules`.
   */
  resolveNorm?(hfModule: string): WeightTarget | undefined;
  /** The scope of a module by its Hugging Face name, resolved like {@linkcode WeightIndex.resolve}. */
  resolveScope(hfModule: string): GraphModule | undefined;
  /** Nodes that read an initializer (to detect tied weights). */
  consumers(initializer: string): readonly number[];
  /**
   * Nodes computing a weight of the graph whose module the export does not
   * name (no scope, no parameter name): e.g. the nodes onnxruntime's
   * quantizers put into a dynamo export, which carry no metadata.
   */
  readonly unscoped: readonly string[];
  /** Why the `unscoped` nodes name no module and what would name them, where the loader knows. */
  readonly unscopedHint?: string;
}
