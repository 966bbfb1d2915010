/**
 * Quantized projections in ONNX graphs, as ONNX Runtime's tools write them:
 *
 * - 4-bit (`q4` exports): one `com.microsoft.MatMulNBits` node,
 *   `y = x @ dequant(B)^T (+ bias)`, named `<scope>/MatMul_Q4`;
 * - 8-bit dynamic (`q8` / `_quantized` exports): `DynamicQuantizeLinear(x)`
 *   feeding `MatMulInteger` (`<scope>/MatMul_quant`), then `Cast` to float
 *   and `Mul` by `x_scale * w_scale`;
 * - the embedding of those exports: `Gather` of the 8-bit table
 *   (`<weight>_quantized`), then `DequantizeLinear` by its per-tensor scale
 *   and zero point.
 *
 * Recognising them lets the weight index name them by module (`kind:
 * "linear"` with a `quantized` marker), lets LoRA branches attach to their
 * float input and output, and lets callers read the dequantized weight
 * (for DoRA norms, or an explicit dequantize-and-merge).
 * @module
 */
import { type GraphProto, type NodeProto, type TensorProto, TensorProto_DataType } from "../deps/onnx_proto.ts";
import { OnnxModelError, UnsupportedError } from "../errors.ts";
import type { WeightLayout } from "../kernels/types.ts";
import { dequantizeNBits, dequantizeQ8, type NBitsWeight, type Q8Weight, type ScaleType } from "./quant_math.ts";
import { elementCount, floatElementType, readFloatTensor } from "./tensor_data.ts";
import type { InitializerUse, QuantizedProjection, WeightTarget } from "./weight_target.ts";

export type { QuantizedProjection } from "./weight_target.ts";

/**
 * What the weight index knows that recognising a quantized projection needs.
 *
 * @example
 * ```ts
 * import type { QuantizedMatchContext } from "./quantized_weights.ts";
 * const ctx: QuantizedMatchContext = { initializers: new Map(), producers: new Map(), addBias: () => undefined };
 * ```
 */
export interface QuantizedMatchContext {
  initializers: ReadonlyMap<string, TensorProto>;
  /** Node producing each tensor. */
  producers: ReadonlyMap<string, NodeProto>;
  /** The bias of a `MatMul + Add` linear: a float `[outFeatures]` initializer added to `output`. */
  addBias(output: string, outFeatures: number): InitializerUse | undefined;
}

/**
 * A quantized projection as a weight target, before it is named by module.
 *
 * @example
 * ```ts
 * import type { QuantizedTarget } from "./quantized_weights.ts";
 * const isNBits = (t: QuantizedTarget) => t.quantized.op === "MatMulNBits";
 * ```
 */
export type QuantizedTarget = Omit<WeightTarget, "module"> & { quantized: QuantizedProjection };

const MS_DOMAIN = "com.microsoft";

function intAttr(node: NodeProto, name: string): number | undefined {
  const attr = node.attribute.find((a) => a.name === name);
  return attr ? Number(attr.i) : undefined;
}

function dims(t: TensorProto | undefined): number[] | undefined {
  return t?.dims.map(Number);
}

/** The index of the first node reading `tensor` with the given op. */
function readerOf(graph: GraphProto, tensor: string, opType: string): number {
  return graph.node.findIndex((n) => n.opType === opType && (n.domain ?? "") === "" && n.input.includes(tensor));
}

function matchNBits(graph: GraphProto, nodeIndex: number, ctx: QuantizedMatchContext): QuantizedTarget | undefined {
  const node = graph.node[nodeIndex];
  const k = intAttr(node, "K");
  const n = intAttr(node, "N");
  const bits = intAttr(node, "bits") ?? 4;
  const blockSize = intAttr(node, "block_size");
  const b = ctx.initializers.get(node.input[1] ?? "");
  const scales = ctx.initializers.get(node.input[2] ?? "");
  if (k === undefined || n === undefined || blockSize === undefined || !b || !scales) return undefined;
  if (b.dataType !== TensorProto_DataType.UINT8 || !floatElementType(scales.dataType)) return undefined;
  const blocks = Math.ceil(k / blockSize);
  const shape = dims(b)!;
  if (shape.length !== 3 || shape[0] !== n || shape[1] !== blocks || shape[2] !== (blockSize * bits) / 8) {
    return undefined;
  }
  const zp = node.input[3] ?? "";
  const biasName = node.input[5] ?? "";
  const biasTensor = ctx.initializers.get(biasName);
  const biasOk = biasTensor && floatElementType(biasTensor.dataType) && dims(biasTensor)!.join() === `${n}`;
  return {
    kind: "linear",
    nodeName: node.name,
    readerIndex: nodeIndex,
    inputIndex: 1,
    initializer: b.name,
    layout: "out_in",
    inFeatures: k,
    outFeatures: n,
    bias: biasName !== ""
      ? (biasOk ? { initializer: biasName, readerIndex: nodeIndex, inputIndex: 5 } : undefined)
      : ctx.addBias(node.output[0], n),
    quantized: {
      op: "MatMulNBits",
      bits,
      blockSize,
      input: node.input[0],
      output: node.output[0],
      outputIndex: nodeIndex,
      scales: scales.name,
      zeroPoints: zp !== "" ? zp : undefined,
      // g_idx (act-order) reorders K: indexed so that branches can attach, but its weight is never read.
      groupIndex: (node.input[4] ?? "") !== "" ? node.input[4] : undefined,
    },
  };
}

function matchInteger(graph: GraphProto, nodeIndex: number, ctx: QuantizedMatchContext): QuantizedTarget | undefined {
  const node = graph.node[nodeIndex];
  const b = ctx.initializers.get(node.input[1] ?? "");
  const shape = dims(b);
  const int8 = b && (b.dataType === TensorProto_DataType.INT8 || b.dataType === TensorProto_DataType.UINT8);
  if (!b || !int8 || shape!.length !== 2) return undefined;
  const dql = ctx.producers.get(node.input[0]);
  if (!dql || dql.opType !== "DynamicQuantizeLinear" || (dql.domain ?? "") !== "" || dql.output[0] !== node.input[0]) {
    return undefined;
  }
  // MatMulInteger -> Cast(float) -> Mul(., x_scale * w_scale)
  const castIndex = readerOf(graph, node.output[0], "Cast");
  if (castIndex < 0 || intAttr(graph.node[castIndex], "to") !== TensorProto_DataType.FLOAT) return undefined;
  const castOut = graph.node[castIndex].output[0];
  const mulIndex = readerOf(graph, castOut, "Mul");
  if (mulIndex < 0) return undefined;
  const mul = graph.node[mulIndex];
  const scalesMul = ctx.producers.get(mul.input[mul.input[0] === castOut ? 1 : 0]);
  if (
    !scalesMul || scalesMul.opType !== "Mul" || (scalesMul.domain ?? "") !== "" ||
    !scalesMul.input.includes(dql.output[1])
  ) {
    return undefined;
  }
  const wScale = ctx.initializers.get(scalesMul.input[scalesMul.input[0] === dql.output[1] ? 1 : 0]);
  if (!wScale || !floatElementType(wScale.dataType)) return undefined;
  const [k, n] = shape!;
  const zp = node.input[3] ?? "";
  return {
    kind: "linear",
    nodeName: node.name,
    readerIndex: nodeIndex,
    inputIndex: 1,
    initializer: b.name,
    layout: "in_out",
    inFeatures: k,
    outFeatures: n,
    bias: ctx.addBias(mul.output[0], n),
    quantized: {
      op: "MatMulInteger",
      bits: 8,
      input: dql.input[0],
      output: mul.output[0],
      outputIndex: mulIndex,
      scales: wScale.name,
      zeroPoints: zp !== "" ? zp : undefined,
    },
  };
}

/** `Gather(table_quantized, ids)` -> `DequantizeLinear(., scale, zero_point)`, per tensor. */
function matchGather(graph: GraphProto, nodeIndex: number, ctx: QuantizedMatchContext): QuantizedTarget | undefined {
  const node = graph.node[nodeIndex];
  const table = ctx.initializers.get(node.input[0] ?? "");
  const shape = dims(table);
  const int8 = table && (table.dataType === TensorProto_DataType.INT8 || table.dataType === TensorProto_DataType.UINT8);
  if (!table || !int8 || shape!.length !== 2 || intAttr(node, "axis") !== undefined && intAttr(node, "axis") !== 0) {
    return undefined;
  }
  const dqlIndex = readerOf(graph, node.output[0], "DequantizeLinear");
  const dql = graph.node[dqlIndex];
  if (!dql || dql.input[0] !== node.output[0]) return undefined;
  const scale = ctx.initializers.get(dql.input[1] ?? "");
  const zp = dql.input[2] ?? "";
  const zpTensor = zp !== "" ? ctx.initializers.get(zp) : undefined;
  const perTensor = (t: TensorProto | undefined) => t !== undefined && elementCount(t) === 1;
  if (!scale || !floatElementType(scale.dataType) || !perTensor(scale)) return undefined;
  if (zp !== "" && (!perTensor(zpTensor) || zpTensor!.dataType !== table.dataType)) return undefined;
  const [num, dim] = shape!;
  return {
    kind: "embedding",
    nodeName: node.name,
    readerIndex: nodeIndex,
    inputIndex: 0,
    initializer: table.name,
    layout: "in_out",
    inFeatures: num,
    outFeatures: dim,
    quantized: {
      op: "Gather",
      bits: 8,
      input: node.input[1],
      output: dql.output[0],
      outputIndex: dqlIndex,
      scales: scale.name,
      zeroPoints: zp !== "" ? zp : undefined,
    },
  };
}

/**
 * Recognises the quantized projection computed by `graph.node[nodeIndex]`
 * (a `MatMulNBits`, or the `MatMulInteger` of a dynamic quantization
 * pattern) or the quantized embedding it gathers from, or returns undefined.
 *
 * @example
 * ```ts
 * import { matchQuantizedProjection } from "./quantized_weights.ts";
 * import type { QuantizedMatchContext } from "./quantized_weights.ts";
 * import type { GraphProto } from "../deps/onnx_proto.ts";
 * declare const graph: GraphProto, ctx: QuantizedMatchContext;
 * // indexWeights calls it for every node
 * const target = matchQuantizedProjection(graph, 0, ctx);
 * console.log(target === undefined);
 * ```
 */
export function matchQuantizedProjection(
  graph: GraphProto,
  nodeIndex: number,
  ctx: QuantizedMatchContext,
): QuantizedTarget | undefined {
  const node = graph.node[nodeIndex];
  const domain = node.domain ?? "";
  if (node.opType === "MatMulNBits" && domain === MS_DOMAIN) return matchNBits(graph, nodeIndex, ctx);
  if (node.opType === "MatMulInteger" && domain === "") return matchInteger(graph, nodeIndex, ctx);
  if (node.opType === "Gather" && domain === "") return matchGather(graph, nodeIndex, ctx);
  return undefined;
}

/** Bytes of a 1-byte integer tensor (uint8/int8), from raw data or int32_data. */
function byteData(tensor: TensorProto, file: string, raw?: Uint8Array): Uint8Array {
  const n = elementCount(tensor);
  const bytes = raw ??
    (tensor.rawData.length > 0 ? tensor.rawData : Uint8Array.from(tensor.int32Data, (v) => v & 0xff));
  if (bytes.length !== n) {
    throw new OnnxModelError(`has ${bytes.length} bytes but dims ${tensor.dims.join("x")} need ${n}`, {
      file,
      key: tensor.name,
    });
  }
  return bytes;
}

/**
 * External data of an initializer, when it has any (see `externalBytes`).
 *
 * @example
 * ```ts
 * import type { ExternalBytes } from "./quantized_weights.ts";
 * import { externalBytes } from "./external_data.ts";
 * declare const dataFiles: ReadonlyMap<string, Uint8Array>;
 * const external: ExternalBytes = (t) => externalBytes(t, dataFiles, "model.onnx");
 * const none: ExternalBytes = () => undefined;
 * ```
 */
export type ExternalBytes = (tensor: TensorProto) => Uint8Array | undefined;

/**
 * A quantized weight as its file stores it: the codes, scales and zero
 * points, and the float type of the scales.
 *
 * @example
 * ```ts
 * import type { StoredQuantized } from "./quantized_weights.ts";
 * const blocks = (s: StoredQuantized) => s.op === "MatMulNBits" ? s.weight.scales.length : 0;
 * ```
 */
export type StoredQuantized =
  | { op: "MatMulNBits"; weight: NBitsWeight; scaleType: ScaleType }
  | { op: "MatMulInteger" | "Gather"; weight: Q8Weight; scaleType: ScaleType };

/**
 * Reads a quantized target's codes, scales and zero points (see
 * {@linkcode StoredQuantized}), checked against the target's shape.
 *
 * @example
 * ```ts
 * import { readQuantizedWeight } from "./quantized_weights.ts";
 * import type { WeightTarget } from "./weight_target.ts";
 * import type { GraphProto } from "../deps/onnx_proto.ts";
 * declare const graph: GraphProto, target: WeightTarget;
 * const stored = readQuantizedWeight(graph, target, "model_q4.onnx");
 * console.log(stored.op);
 * ```
 */
export function readQuantizedWeight(
  graph: GraphProto,
  target: WeightTarget,
  file: string,
  external?: ExternalBytes,
): StoredQuantized {
  const q = target.quantized;
  if (!q) throw new UnsupportedError(`${target.initializer} is not a quantized weight`, { file, key: target.module });
  if (q.groupIndex) {
    // No onnxruntime tool writes act-order weights, so there are no bytes a re-quantization could be checked against.
    throw new UnsupportedError(
      `${target.nodeName} is a MatMulNBits with a g_idx input (${q.groupIndex}: act-order, its K rows assigned to ` +
        `blocks out of order); its weight is not read or re-quantized here, so merging into it (merged mode, ` +
        `mergeAndUnload, DoRA, saved base weights) is not supported; mode "dynamic" adds a LoRA beside it`,
      { file, key: target.module },
    );
  }
  const initializer = (name: string) => {
    const t = graph.initializer.find((i) => i.name === name);
    if (!t) throw new OnnxModelError(`no initializer named ${name}`, { file, key: target.module });
    return t;
  };
  const bytes = (name: string) => {
    const t = initializer(name);
    return { tensor: t, data: byteData(t, file, external?.(t)) };
  };
  const scalesTensor = initializer(q.scales);
  const scales = readFloatTensor(scalesTensor, file, external?.(scalesTensor));
  const scaleType: ScaleType = scalesTensor.dataType === TensorProto_DataType.FLOAT16 ? "float16" : "float32";
  const k = target.inFeatures;
  const n = target.outFeatures;
  if (q.op === "MatMulNBits") {
    let zeroPoints: Uint8Array | undefined;
    if (q.zeroPoints) {
      const zp = bytes(q.zeroPoints);
      if (zp.tensor.dataType !== TensorProto_DataType.UINT8) {
        throw new UnsupportedError(
          `MatMulNBits zero points of element type ${zp.tensor.dataType} (not packed uint8) are not supported`,
          { file, key: target.module },
        );
      }
      zeroPoints = zp.data;
    }
    const packed = bytes(target.initializer).data;
    const weight = { k, n, bits: q.bits, blockSize: q.blockSize!, packed, scales, zeroPoints };
    return { op: q.op, weight, scaleType };
  }
  const values = bytes(target.initializer);
  const signed = values.tensor.dataType === TensorProto_DataType.INT8;
  const view = (d: Uint8Array) => signed ? new Int8Array(d.buffer, d.byteOffset, d.length) : d;
  const zeroPoints = q.zeroPoints ? view(bytes(q.zeroPoints).data) : view(new Uint8Array(scales.length));
  if ((scales.length !== 1 && scales.length !== n) || zeroPoints.length !== scales.length) {
    throw new UnsupportedError(
      `${q.op} weight scale/zero point of ${scales.length}/${zeroPoints.length} values (need 1 or ${n})`,
      { file, key: target.module },
    );
  }
  return { op: q.op, weight: { k, n, values: view(values.data), scales, zeroPoints }, scaleType };
}

/**
 * The float weight a stored quantized weight stands for, in `layout`
 * (exactly what the quantized operator multiplies by).
 *
 * @example
 * ```ts
 * import { dequantizeStored } from "./quantized_weights.ts";
 * const w = dequantizeStored({
 *   op: "Gather",
 *   weight: { k: 1, n: 2, values: new Uint8Array([0, 255]), scales: new Float32Array([0.5]), zeroPoints: new Uint8Array([1]) },
 *   scaleType: "float32",
 * }, "in_out");
 * console.log(w); // Float32Array [-0.5, 127]
 * ```
 */
export function dequantizeStored(stored: StoredQuantized, layout: WeightLayout): Float32Array {
  return stored.op === "MatMulNBits" ? dequantizeNBits(stored.weight, layout) : dequantizeQ8(stored.weight, layout);
}

/**
 * Reads a target's weight as float32 in `target.layout`: the float
 * initializer itself, or, for a quantized projection, its dequantized
 * values (exactly what the quantized operator multiplies by).
 *
 * @example
 * ```ts
 * import { readTargetWeight } from "./quantized_weights.ts";
 * import type { WeightTarget } from "./weight_target.ts";
 * import type { GraphProto } from "../deps/onnx_proto.ts";
 * declare const graph: GraphProto, target: WeightTarget;
 * const w = readTargetWeight(graph, target, "model.onnx");
 * console.log(w.length);
 * ```
 */
export function readTargetWeight(
  graph: GraphProto,
  target: WeightTarget,
  file: string,
  external?: ExternalBytes,
): Float32Array {
  if (target.quantized) return dequantizeStored(readQuantizedWeight(graph, target, file, external), target.layout);
  const t = graph.initializer.find((i) => i.name === target.initializer);
  if (!t) throw new OnnxModelError(`no initializer named ${target.initializer}`, { file, key: target.module });
  return readFloatTensor(t, file, external?.(t));
}
