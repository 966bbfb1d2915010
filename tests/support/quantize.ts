/**
 * peft-edge's own weight quantization of ONNX models, producing the two
 * forms ONNX Runtime's tools produce and the operator specs define:
 *
 * - `"q4"`: every float projection becomes one `com.microsoft.MatMulNBits`
 *   node (bits 4, `block_size` 32 by default, asymmetric blocks with packed
 *   zero points), named `<node>_Q4` with weights `<W>_Q4`, `<W>_scales`,
 *   `<W>_zero_points`, as `matmul_nbits_quantizer` names them;
 * - `"q8"`: dynamic quantization as `quantize_dynamic` writes it:
 *   `DynamicQuantizeLinear(x)` (uint8, one per distinct input, shared),
 *   `MatMulInteger` with int8 weights (symmetric, per output column),
 *   `Cast` to float and `Mul` by `x_scale * w_scale`.
 *
 * A projection is a `MatMul` whose weight is a float initializer (or a
 * `Transpose` of one) and, unless `gemm: false`, a plain `Gemm`
 * (`transA=0`, `alpha=beta=1`, 1-D bias or none). ONNX Runtime's tools leave
 * `Gemm` in float; here it is rewritten as the same quantized projection
 * plus an `Add` of the bias, which is what exporters emit for a `Linear` on
 * 3-D inputs anyway, so `Conv1D`/`Gemm` models (GPT-2) get quantized too.
 * Node scopes are kept (`/transformer/h.0/attn/c_attn/Gemm_MatMul_Q4`), so
 * the weight index still names each projection by its module.
 *
 * With the quantized model comes its reference: the float model with every
 * quantized weight replaced by its dequantized values.
 * @module
 */
import {
  create,
  GraphProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  type NodeProto,
  OperatorSetIdProtoSchema,
  type TensorProto,
  TensorProto_DataType,
} from "../../src/deps/onnx_proto.ts";
import { UnsupportedError } from "../../src/errors.ts";
import type { WeightLayout } from "../../src/kernels/types.ts";
import {
  floatAttribute,
  intAttribute,
  makeNode,
  nameAllocator,
  rawTensor,
  usedNames,
} from "../../src/onnx/graph_parts.ts";
import { patchModel, type WeightUpdate } from "../../src/onnx/patch.ts";
import { edited } from "../../src/onnx/proto_edit.ts";
import { blockCount, dequantizeNBits, dequantizeQ8, quantizeNBits, quantizeQ8 } from "../../src/onnx/quant_math.ts";
import type { ExternalBytes } from "../../src/onnx/quantized_weights.ts";
import { readFloatTensor } from "../../src/onnx/tensor_data.ts";
import { indexWeights, type InitializerUse } from "../../src/onnx/weight_index.ts";

/**
 * The quantized forms {@linkcode quantizeModel} produces.
 *
 * @example
 * ```ts
 * import type { QuantizeFormat } from "./quantize.ts";
 * const format: QuantizeFormat = "q4";
 * ```
 */
export type QuantizeFormat = "q4" | "q8";

/**
 * Options of {@linkcode quantizeModel}.
 *
 * @example
 * ```ts
 * import type { QuantizeOptions } from "./quantize.ts";
 * const options: QuantizeOptions = { format: "q4", blockSize: 32, gemm: true };
 * ```
 */
export interface QuantizeOptions {
  format: QuantizeFormat;
  /** q4 block size along K: a power of two >= 16. Default 32. */
  blockSize?: number;
  /** Also quantize plain `Gemm` projections (rewritten as MatMul + Add). Default true. */
  gemm?: boolean;
  /** External data of initializers stored outside the model. */
  external?: ExternalBytes;
}

/**
 * What {@linkcode quantizeModel} returns.
 *
 * @example
 * ```ts
 * import type { QuantizedModel } from "./quantize.ts";
 * const count = (q: QuantizedModel) => q.quantized.length;
 * ```
 */
export interface QuantizedModel {
  /** The quantized model. */
  model: ModelProto;
  /** The float model whose quantized weights hold their dequantized values (the reference). */
  dequantized: ModelProto;
  /** Names of the nodes that were quantized. */
  quantized: string[];
}

/** One projection to quantize: `y = x W (+ bias)`, W with K inputs and N outputs. */
interface Projection {
  x: string;
  y: string;
  weight: TensorProto;
  values: Float32Array;
  layout: WeightLayout;
  k: number;
  n: number;
  bias?: string;
  /** Where the float weight is read (for the dequantized reference). */
  reader: InitializerUse;
  /** Index of a `Transpose` of the weight the quantized node no longer needs. */
  transpose?: number;
}

const FILE = "quantizeModel";

function f32Bytes(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

/**
 * Quantizes every float projection of a model (see the module docs) and
 * returns the quantized model and its dequantized float reference. The
 * input model is not mutated. Float32 weights only.
 *
 * @example
 * ```ts
 * import { quantizeModel } from "./quantize.ts";
 * import { decodeModel } from "./model_file.ts";
 * import { readFile } from "node:fs/promises";
 * const base = decodeModel(await readFile("tests/fixtures/llama-tiny/onnx/model.onnx"), "model.onnx");
 * const { model, dequantized, quantized } = quantizeModel(base, { format: "q4", blockSize: 32 });
 * console.log(quantized.length); // 15: 7 projections x 2 layers + lm_head
 * ```
 */
export function quantizeModel(model: ModelProto, options: QuantizeOptions): QuantizedModel {
  const { format, blockSize = 32, gemm = true, external } = options;
  if (format !== "q4" && format !== "q8") {
    throw new UnsupportedError(`format must be "q4" or "q8", got ${JSON.stringify(format)}`, { key: "format" });
  }
  const graph = model.graph!;
  const initializers = new Map(graph.initializer.map((t) => [t.name, t]));
  const producerIndex = new Map<string, number>();
  graph.node.forEach((n, i) => n.output.forEach((o) => producerIndex.set(o, i)));
  const float2d = (name: string | undefined) => {
    const t = initializers.get(name ?? "");
    if (!t || t.dims.length !== 2) return undefined;
    if (t.dataType === TensorProto_DataType.FLOAT) return t;
    if (t.dataType === TensorProto_DataType.FLOAT16 || t.dataType === TensorProto_DataType.BFLOAT16) {
      throw new UnsupportedError(`weight ${t.name} is not float32; quantizeModel quantizes float32 models`, {
        file: FILE,
      });
    }
    return undefined;
  };
  const read = (t: TensorProto) => readFloatTensor(t, FILE, external?.(t));

  const projection = (node: NodeProto, index: number): Projection | undefined => {
    if ((node.domain ?? "") !== "") return undefined;
    if (node.opType === "MatMul") {
      const w = float2d(node.input[1]);
      if (w) {
        const [k, n] = w.dims.map(Number);
        return {
          x: node.input[0],
          y: node.output[0],
          weight: w,
          values: read(w),
          layout: "in_out",
          k,
          n,
          reader: { initializer: w.name, readerIndex: index, inputIndex: 1 },
        };
      }
      const t = producerIndex.get(node.input[1]);
      const transpose = t === undefined ? undefined : graph.node[t];
      const perm = transpose?.attribute.find((a) => a.name === "perm")?.ints.map(Number);
      if (
        transpose?.opType !== "Transpose" || (transpose.domain ?? "") !== "" ||
        (perm && !(perm[0] === 1 && perm[1] === 0))
      ) {
        return undefined;
      }
      const wt = float2d(transpose.input[0]);
      if (!wt) return undefined;
      const [n, k] = wt.dims.map(Number);
      return {
        x: node.input[0],
        y: node.output[0],
        weight: wt,
        values: read(wt),
        layout: "out_in",
        k,
        n,
        reader: { initializer: wt.name, readerIndex: t!, inputIndex: 0 },
        transpose: t,
      };
    }
    if (node.opType === "Gemm" && gemm) {
      const w = float2d(node.input[1]);
      const plain = intAttribute(node, "transA", 0) === 0 && floatAttribute(node, "alpha", 1) === 1;
      if (!w || !plain) return undefined;
      const transB = intAttribute(node, "transB", 0) === 1;
      const [d0, d1] = w.dims.map(Number);
      const [k, n] = transB ? [d1, d0] : [d0, d1];
      const c = node.input[2] ?? "";
      if (c !== "") {
        const bias = initializers.get(c);
        const ok = bias && bias.dims.length === 1 && Number(bias.dims[0]) === n &&
          floatAttribute(node, "beta", 1) === 1;
        if (!ok) return undefined;
      }
      return {
        x: node.input[0],
        y: node.output[0],
        weight: w,
        values: read(w),
        layout: transB ? "out_in" : "in_out",
        k,
        n,
        bias: c !== "" ? c : undefined,
        reader: { initializer: w.name, readerIndex: index, inputIndex: 1 },
      };
    }
    return undefined;
  };

  const fresh = nameAllocator(usedNames(graph));
  const nodes: NodeProto[] = [];
  const added: TensorProto[] = [];
  const updates: WeightUpdate[] = [];
  const quantized: string[] = [];
  const freedTransposes = new Set<number>();
  const dynamicInputs = new Map<string, [q: string, scale: string, zeroPoint: string]>();

  graph.node.forEach((node, index) => {
    const p = projection(node, index);
    if (!p) {
      nodes.push(node);
      return;
    }
    const name = node.name || fresh(`${node.opType}_${index}`);
    const stem = node.opType === "Gemm" ? `${name}_MatMul` : name;
    const matmulOut = p.bias ? fresh(`${p.y}_matmul`) : p.y;
    const wName = p.weight.name;
    let dequantized: Float32Array;
    if (format === "q4") {
      const q = quantizeNBits(p.values, p.k, p.n, { bits: 4, blockSize, symmetric: false }, p.layout);
      const blocks = blockCount(p.k, blockSize);
      const b = fresh(`${wName}_Q4`);
      const scales = fresh(`${wName}_scales`);
      const zeroPoints = fresh(`${wName}_zero_points`);
      added.push(
        rawTensor(b, TensorProto_DataType.UINT8, [p.n, blocks, blockSize / 2], q.packed),
        rawTensor(scales, TensorProto_DataType.FLOAT, [p.n, blocks], f32Bytes(q.scales)),
        rawTensor(zeroPoints, TensorProto_DataType.UINT8, [p.n, Math.ceil(blocks / 2)], q.zeroPoints!),
      );
      nodes.push(makeNode("MatMulNBits", [p.x, b, scales, zeroPoints], [matmulOut], `${stem}_Q4`, {
        K: p.k,
        N: p.n,
        bits: 4,
        block_size: blockSize,
      }, "com.microsoft"));
      quantized.push(`${stem}_Q4`);
      dequantized = dequantizeNBits(q, p.layout);
    } else {
      const q = quantizeQ8(p.values, p.k, p.n, { signed: true, symmetric: true, perColumn: true }, p.layout);
      let dyn = dynamicInputs.get(p.x);
      if (!dyn) {
        dyn = [fresh(`${p.x}_quantized`), fresh(`${p.x}_scale`), fresh(`${p.x}_zero_point`)];
        dynamicInputs.set(p.x, dyn);
        nodes.push(makeNode("DynamicQuantizeLinear", [p.x], dyn, `${p.x}_QuantizeLinear`));
      }
      const [xq, xs, xz] = dyn;
      const b = fresh(`${wName}_quantized`);
      const scale = fresh(`${wName}_scale`);
      const zeroPoint = fresh(`${wName}_zero_point`);
      const values = q.values as Int8Array;
      added.push(
        rawTensor(
          b,
          TensorProto_DataType.INT8,
          [p.k, p.n],
          new Uint8Array(values.buffer, values.byteOffset, values.length),
        ),
        rawTensor(scale, TensorProto_DataType.FLOAT, [p.n], f32Bytes(q.scales)),
        rawTensor(zeroPoint, TensorProto_DataType.INT8, [p.n], new Uint8Array(p.n)),
      );
      const integerOut = fresh(`${p.y}_output_quantized`);
      const castOut = fresh(`${integerOut}_cast_output`);
      const scalesOut = fresh(`${stem}_quant_scales_mul:0`);
      nodes.push(
        makeNode("MatMulInteger", [xq, b, xz, zeroPoint], [integerOut], `${stem}_quant`),
        makeNode("Cast", [integerOut], [castOut], `${integerOut}_cast`, { to: TensorProto_DataType.FLOAT }),
        makeNode("Mul", [xs, scale], [scalesOut], `${stem}_quant_scales_mul`),
        makeNode("Mul", [castOut, scalesOut], [matmulOut], `${stem}_quant_output_scale_mul`),
      );
      quantized.push(`${stem}_quant`);
      dequantized = dequantizeQ8(q, p.layout);
    }
    if (p.bias) nodes.push(makeNode("Add", [matmulOut, p.bias], [p.y], `${name}_bias_Add`));
    if (p.transpose !== undefined) freedTransposes.add(p.transpose);
    updates.push({ module: stem, ...p.reader, values: dequantized });
  });

  // Drop weight Transposes and float weights nothing reads any more.
  const readBy = (list: NodeProto[]) => new Set(list.flatMap((n) => n.input).concat(graph.output.map((o) => o.name)));
  let read1 = readBy(nodes);
  const kept = nodes.filter((n) => {
    const i = graph.node.indexOf(n);
    return !(i >= 0 && freedTransposes.has(i) && n.output.every((o) => !read1.has(o)));
  });
  read1 = readBy(kept);
  const replacedWeights = new Set(updates.map((u) => u.initializer));
  const initializer = graph.initializer.filter((t) => !replacedWeights.has(t.name) || read1.has(t.name)).concat(added);

  let opsetImport = model.opsetImport;
  if (format === "q4" && !opsetImport.some((o) => (o.domain ?? "") === "com.microsoft")) {
    opsetImport = [...opsetImport, create(OperatorSetIdProtoSchema, { domain: "com.microsoft", version: 1n })];
  }
  if (format === "q8" && quantized.length > 0) {
    const onnxOpset = Number(opsetImport.find((o) => (o.domain ?? "") === "" || o.domain === "ai.onnx")?.version ?? 0);
    if (onnxOpset < 11) {
      throw new UnsupportedError(`q8 needs ONNX opset >= 11 (DynamicQuantizeLinear), model has ${onnxOpset}`);
    }
  }
  return {
    model: edited(ModelProtoSchema, model, {
      opsetImport,
      graph: edited(GraphProtoSchema, graph, { node: kept, initializer }),
    }),
    dequantized: patchModel(model, indexWeights(graph), updates),
    quantized,
  };
}
