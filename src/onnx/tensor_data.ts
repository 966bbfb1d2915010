/**
 * Float weights in and out of ONNX `TensorProto`s. ONNX stores floats either
 * as little-endian `raw_data` or in the typed `float_data`/`int32_data`
 * fields; both are read, and patched tensors are always written as
 * `raw_data` in the tensor's original element type.
 * @module
 */
import {
  create,
  type TensorProto,
  TensorProto_DataLocation,
  TensorProto_DataType,
  TensorProtoSchema,
} from "../deps/onnx_proto.ts";
import { OnnxModelError } from "../errors.ts";
import { bf16ToF32, f16ToF32, f32ToF16 } from "../numeric/float16.ts";

/** ONNX float element types peft-edge can patch. */
export type FloatElementType = "float32" | "float16" | "bfloat16";

/**
 * The patchable float type of a tensor, or undefined for other types.
 *
 * @example
 * ```ts
 * import { floatElementType } from "./tensor_data.ts";
 * floatElementType(1); // "float32"
 * ```
 */
export function floatElementType(dataType: number): FloatElementType | undefined {
  switch (dataType) {
    case TensorProto_DataType.FLOAT:
      return "float32";
    case TensorProto_DataType.FLOAT16:
      return "float16";
    case TensorProto_DataType.BFLOAT16:
      return "bfloat16";
  }
  return undefined;
}

/** Number of elements of a tensor from its dims. */
export function elementCount(tensor: TensorProto): number {
  return tensor.dims.reduce((n, d) => n * Number(d), 1);
}

/** Copies possibly unaligned little-endian bytes into a fresh aligned buffer view. */
function aligned(bytes: Uint8Array, elementSize: number): ArrayBuffer {
  if (bytes.byteOffset % elementSize === 0) {
    return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  }
  // new Uint8Array(view) copies; a Node Buffer's slice() would be a view whose .buffer is its whole pool.
  return new Uint8Array(bytes).buffer;
}

/**
 * Reads a float initializer as a fresh Float32Array (a copy the caller may
 * mutate). `rawData` overrides the tensor's own bytes (external data).
 *
 * @example
 * ```ts
 * import { readFloatTensor } from "./tensor_data.ts";
 * import type { TensorProto } from "../deps/onnx_proto.ts";
 * declare const tensor: TensorProto;
 * const w = readFloatTensor(tensor, "model.onnx");
 * console.log(w.length);
 * ```
 */
export function readFloatTensor(tensor: TensorProto, file: string, rawData?: Uint8Array): Float32Array {
  const type = floatElementType(tensor.dataType);
  const n = elementCount(tensor);
  const fail = (why: string) => new OnnxModelError(why, { file, key: tensor.name });
  if (!type) throw fail(`initializer has element type ${tensor.dataType}, not a float type`);
  const raw = rawData ?? tensor.rawData;
  if (raw.length > 0) {
    const size = type === "float32" ? 4 : 2;
    if (raw.length !== n * size) {
      throw fail(`raw data is ${raw.length} bytes but dims ${tensor.dims.join("x")} need ${n * size}`);
    }
    if (type === "float32") return new Float32Array(aligned(raw, 4));
    const bits = new Uint16Array(aligned(raw, 2));
    return type === "float16" ? f16ToF32(bits) : bf16ToF32(bits);
  }
  if (type === "float32") {
    if (tensor.floatData.length !== n) throw fail(`float_data has ${tensor.floatData.length} values, dims need ${n}`);
    return Float32Array.from(tensor.floatData);
  }
  // FLOAT16/BFLOAT16 without raw_data keep their bits in int32_data.
  if (tensor.int32Data.length !== n) throw fail(`int32_data has ${tensor.int32Data.length} values, dims need ${n}`);
  const bits = Uint16Array.from(tensor.int32Data);
  return type === "float16" ? f16ToF32(bits) : bf16ToF32(bits);
}

/** Rounds float32 to bfloat16 bits, nearest even (NaN kept quiet). */
function f32ToBf16(values: Float32Array): Uint16Array {
  const words = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if ((w & 0x7fffffff) > 0x7f800000) out[i] = (w >>> 16) | 0x40;
    else out[i] = (w + 0x7fff + ((w >>> 16) & 1)) >>> 16;
  }
  return out;
}

/**
 * Builds a new initializer with the given float values stored in the element
 * type of `like` (the tensor it replaces), inline as raw data.
 *
 * @example
 * ```ts
 * import { writeFloatTensor } from "./tensor_data.ts";
 * import type { TensorProto } from "../deps/onnx_proto.ts";
 * declare const original: TensorProto, merged: Float32Array;
 * const patched = writeFloatTensor(original, "new_name", merged);
 * console.log(patched.name); // "new_name"
 * ```
 */
export function writeFloatTensor(like: TensorProto, name: string, values: Float32Array): TensorProto {
  const type = floatElementType(like.dataType);
  let raw: Uint8Array;
  if (type === "float16") {
    const bits = f32ToF16(values);
    raw = new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
  } else if (type === "bfloat16") {
    const bits = f32ToBf16(values);
    raw = new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
  } else {
    raw = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  }
  return create(TensorProtoSchema, {
    name,
    dims: like.dims,
    dataType: like.dataType,
    rawData: raw as Uint8Array<ArrayBuffer>,
    dataLocation: TensorProto_DataLocation.DEFAULT,
  });
}
