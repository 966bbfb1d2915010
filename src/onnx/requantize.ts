/**
 * Merging into a quantized weight, as PEFT merges into bitsandbytes layers:
 * the merged float weight (dequantized base plus the adapter's delta) is
 * quantized again in the layer's own format, the way the tool that made the
 * file quantizes (`quant_math.ts`): same bits, block size, symmetry, scale
 * type and granularity, so the merged file runs on the same operators. A
 * weight that did not change re-quantizes to the bytes it had (symmetric
 * formats), and a saved float weight (PEFT's `base_layer.weight`) to the
 * bytes the tool wrote for it.
 * @module
 */
import type { GraphProto, TensorProto } from "../deps/onnx_proto.ts";
import { UnsupportedError } from "../errors.ts";
import { f16BitsToF32, f32ToF16Bits } from "../numeric/mod.ts";
import { rawTensor } from "./graph_parts.ts";
import { type NBitsWeight, type Q8Weight, quantizeNBits, quantizeQ8 } from "./quant_math.ts";
import { type ExternalBytes, readQuantizedWeight, type StoredQuantized } from "./quantized_weights.ts";
import { writeFloatTensor } from "./tensor_data.ts";
import type { WeightTarget } from "./weight_target.ts";

/**
 * New contents for one initializer of a quantized weight, and the node
 * inputs through which this module reads it (patching gives those their own
 * copy when other nodes read the initializer too).
 *
 * @example
 * ```ts
 * import type { TensorUpdate } from "./requantize.ts";
 * const describe = (u: TensorUpdate) => `${u.initializer} (${u.uses.length} reader inputs)`;
 * ```
 */
export interface TensorUpdate {
  module: string;
  initializer: string;
  /** `inputIndex` -1: read inside the branches of the `If` node `readerIndex` (patched in place only). */
  uses: readonly { readerIndex: number; inputIndex: number }[];
  /** The new tensor, named like the original. */
  tensor: TensorProto;
}

/**
 * 8-bit symmetry as `quantize_dynamic` decides it: int8 is symmetric (its
 * zero points are all 0), uint8 asymmetric; an int8 file with non-zero
 * zero points was made asymmetric (`WeightSymmetric=False`) and stays so.
 */
function q8Symmetric(w: Q8Weight): boolean {
  return w.values instanceof Int8Array && w.zeroPoints.every((z) => z === 0);
}

const f16 = (values: Float32Array) => values.map((v) => f16BitsToF32(f32ToF16Bits(v)));

/**
 * Quantizes `values` (float, in `layout`) in the format of `stored`.
 *
 * @example
 * ```ts
 * import { requantize } from "./requantize.ts";
 * import { quantizeNBits } from "./quant_math.ts";
 * const w = Float32Array.from({ length: 32 }, (_, i) => i / 7 - 2);
 * const weight = quantizeNBits(w, 16, 2, { bits: 4, blockSize: 16, symmetric: true }, "in_out");
 * const again = requantize({ op: "MatMulNBits", weight, scaleType: "float32" }, w, "in_out");
 * console.log(again.op); // "MatMulNBits"
 * ```
 */
export function requantize(
  stored: StoredQuantized,
  values: Float32Array,
  layout: WeightTarget["layout"],
): StoredQuantized {
  const { k, n } = stored.weight;
  // A float16-scaled file was quantized from float16 weights (q4f16: the fp16 model, then MatMulNBits).
  const input = stored.scaleType === "float16" ? f16(values) : values;
  if (stored.op === "MatMulNBits") {
    const { bits, blockSize, zeroPoints } = stored.weight;
    const format = { bits, blockSize, symmetric: zeroPoints === undefined, scaleType: stored.scaleType };
    return { ...stored, weight: quantizeNBits(input, k, n, format, layout) };
  }
  const w = stored.weight;
  const format = {
    signed: w.values instanceof Int8Array,
    symmetric: q8Symmetric(w),
    perColumn: w.scales.length !== 1,
    scaleType: stored.scaleType,
  };
  return { ...stored, weight: quantizeQ8(input, k, n, format, layout) };
}

const bytesOf = (a: Uint8Array | Int8Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const sameBytes = (a: Uint8Array | Int8Array, b: Uint8Array | Int8Array) => {
  const [x, y] = [bytesOf(a), bytesOf(b)];
  return x.length === y.length && x.every((v, i) => v === y[i]);
};
const sameFloats = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((v, i) => v === b[i]);

/**
 * Whether two stored forms are the same bytes (codes, scales, zero points).
 *
 * @example
 * ```ts
 * import { sameStored } from "./requantize.ts";
 * import { type ExternalBytes, readQuantizedWeight, type StoredQuantized } from "./quantized_weights.ts";
 * declare const a: StoredQuantized;
 * console.log(sameStored(a, a)); // true
 * ```
 */
export function sameStored(a: StoredQuantized, b: StoredQuantized): boolean {
  if (a.op === "MatMulNBits" || b.op === "MatMulNBits") {
    const [x, y] = [a.weight as NBitsWeight, b.weight as NBitsWeight];
    const zp = x.zeroPoints === undefined || y.zeroPoints === undefined
      ? x.zeroPoints === y.zeroPoints
      : sameBytes(x.zeroPoints, y.zeroPoints);
    return a.op === b.op && sameBytes(x.packed, y.packed) && sameFloats(x.scales, y.scales) && zp;
  }
  return sameBytes(a.weight.values, b.weight.values) && sameFloats(a.weight.scales, b.weight.scales) &&
    sameBytes(a.weight.zeroPoints, b.weight.zeroPoints);
}

/**
 * Whether a float weight (in the target's layout) is what the graph stores
 * for a quantized target: quantized in the file's own format, it gives the
 * stored bytes (PEFT's saved `base_layer.weight` of an embedding LoRA, on a
 * file quantized from that weight).
 *
 * @example
 * ```ts
 * import { storesWeight } from "./requantize.ts";
 * import type { WeightTarget } from "./weight_target.ts";
 * import type { GraphProto } from "../deps/onnx_proto.ts";
 * declare const graph: GraphProto, target: WeightTarget, saved: Float32Array;
 * console.log(storesWeight(graph, target, saved, "model_quantized.onnx"));
 * ```
 */
export function storesWeight(
  graph: GraphProto,
  target: WeightTarget,
  values: Float32Array,
  file: string,
  external?: ExternalBytes,
): boolean {
  const stored = readQuantizedWeight(graph, target, file, external);
  return sameStored(requantize(stored, values, target.layout), stored);
}

/** The node reading `tensor` whose output feeds node `consumer` (the `x_scale * w_scale` Mul of a q8 projection). */
function feederReading(graph: GraphProto, tensor: string, consumer: number): number {
  const inputs = new Set(graph.node[consumer].input);
  return graph.node.findIndex((n) => n.input.includes(tensor) && n.output.some((o) => inputs.has(o)));
}

/**
 * The initializer updates that store `quantized` (from {@linkcode requantize})
 * in place of a target's weight: codes, scales and zero points, each with
 * the node inputs that read it for this module.
 *
 * @example
 * ```ts
 * import { quantizedUpdates } from "./requantize.ts";
 * import { type ExternalBytes, readQuantizedWeight, type StoredQuantized } from "./quantized_weights.ts";
 * import type { WeightTarget } from "./weight_target.ts";
 * import type { GraphProto } from "../deps/onnx_proto.ts";
 * declare const graph: GraphProto, target: WeightTarget, merged: StoredQuantized;
 * const updates = quantizedUpdates(graph, target, merged);
 * console.log(updates.map((u) => u.initializer));
 * ```
 */
export function quantizedUpdates(graph: GraphProto, target: WeightTarget, quantized: StoredQuantized): TensorUpdate[] {
  const q = target.quantized!;
  const like = (name: string) => graph.initializer.find((t) => t.name === name)!;
  const integer = (name: string, bytes: Uint8Array | Int8Array) => {
    const original = like(name);
    return rawTensor(name, original.dataType, original.dims.map(Number), bytesOf(bytes).slice());
  };
  // [initializer, its new tensor, the node reading it], for the codes, the scales and the zero points.
  const parts: [string, TensorProto, number][] = [];
  const scales = writeFloatTensor(like(q.scales), q.scales, quantized.weight.scales);
  if (quantized.op === "MatMulNBits") {
    // MatMulNBits(x, codes, scales, zero_points) reads all three.
    parts.push([target.initializer, integer(target.initializer, quantized.weight.packed), target.readerIndex]);
    parts.push([q.scales, scales, target.readerIndex]);
    if (q.zeroPoints) {
      parts.push([q.zeroPoints, integer(q.zeroPoints, quantized.weight.zeroPoints!), target.readerIndex]);
    }
  } else {
    const { values, zeroPoints } = quantized.weight;
    parts.push([target.initializer, integer(target.initializer, values), target.readerIndex]);
    // Gather's scale and zero point go to DequantizeLinear; MatMulInteger reads the zero point and the
    // `x_scale * w_scale` Mul the scale.
    const [scaleReader, zpReader] = quantized.op === "Gather"
      ? [q.outputIndex, q.outputIndex]
      : [target.inSubgraph ? -1 : feederReading(graph, q.scales, q.outputIndex), target.readerIndex];
    parts.push([q.scales, scales, scaleReader]);
    if (q.zeroPoints) parts.push([q.zeroPoints, integer(q.zeroPoints, zeroPoints), zpReader]);
    else if (zeroPoints.some((z) => z !== 0)) {
      throw new UnsupportedError(
        `${target.nodeName} has no zero point input, and its merged weight needs one; cannot re-quantize it`,
        { key: target.module },
      );
    }
  }
  return parts.map(([initializer, tensor, readerIndex]) => {
    // Inside an If's branches (merged decoders) the If node is the reader, and only in-place patches are possible.
    if (target.inSubgraph) {
      return {
        module: target.module,
        initializer,
        uses: [{ readerIndex: target.readerIndex, inputIndex: -1 }],
        tensor,
      };
    }
    const inputIndex = graph.node[readerIndex]?.input.indexOf(initializer) ?? -1;
    if (inputIndex < 0) {
      throw new UnsupportedError(`no node reads ${initializer} for ${target.nodeName}`, { key: target.module });
    }
    return { module: target.module, initializer, uses: [{ readerIndex, inputIndex }], tensor };
  });
}
