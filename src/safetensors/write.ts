/**
 * Writing safetensors files, laid out as the Rust reference implementation
 * does, so files it would write come out byte for byte the same.
 *
 * @module
 */

import { SafetensorsError } from "../errors.ts";
import { type Dtype, DTYPES, dtypeSize, isDtype } from "./dtype.ts";
import { MAX_HEADER_LENGTH } from "./header.ts";

/**
 * One tensor to write. `data` is its raw bytes, row-major, little-endian:
 * any typed array or DataView of the right byte length (typed arrays are
 * little-endian on every platform this library runs on).
 *
 * @example
 * ```ts
 * import type { TensorInput } from "./write.ts";
 * const t: TensorInput = { dtype: "F32", shape: [2, 2], data: new Float32Array(4) };
 * ```
 */
export interface TensorInput {
  /** Element type. */
  dtype: Dtype;
  /** Dimensions, row-major; `[]` for a scalar. */
  shape: readonly number[];
  /** Raw bytes: exactly product(shape) × dtype size of them. */
  data: Uint8Array | ArrayBufferView;
}

/** Orders strings by Unicode code point, which is UTF-8 byte order (Rust's `str` order). */
function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a.charCodeAt(i) !== b.charCodeAt(i)) {
      return a.codePointAt(i)! - b.codePointAt(i)!;
    }
  }
  return a.length - b.length;
}

function checkTensor(name: string, tensor: TensorInput): Uint8Array {
  const fail = (message: string): never => {
    throw new SafetensorsError(message, { key: name });
  };
  if (name === "__metadata__") {
    fail(`"__metadata__" is reserved for the metadata map; rename the tensor`);
  }
  if (typeof tensor !== "object" || tensor === null) {
    fail(`tensor must be an object { dtype, shape, data }, got ${tensor}`);
  }
  const { dtype, shape, data } = tensor;
  if (!isDtype(dtype)) {
    fail(
      `unknown dtype ${JSON.stringify(dtype)} (known: ${DTYPES.join(", ")})`,
    );
  }
  if (!Array.isArray(shape)) fail(`shape must be an array, got ${shape}`);
  let elements = 1;
  shape.forEach((d, i) => {
    if (!Number.isSafeInteger(d) || d < 0) {
      fail(`shape[${i}] must be a non-negative safe integer, got ${d}`);
    }
    elements *= d;
  });
  if (!ArrayBuffer.isView(data)) {
    fail(
      `data must be a typed array or DataView, got ${Object.prototype.toString.call(data)}`,
    );
  }
  const expected = elements * dtypeSize(dtype);
  if (!Number.isSafeInteger(expected)) {
    fail(
      `shape [${shape}] of ${dtype} needs more than Number.MAX_SAFE_INTEGER bytes`,
    );
  }
  if (data.byteLength !== expected) {
    fail(
      `data has ${data.byteLength} bytes but shape [${shape}] of ${dtype} needs ${expected}`,
    );
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function checkMetadata(metadata: Record<string, string>): void {
  if (
    typeof metadata !== "object" || metadata === null || Array.isArray(metadata)
  ) {
    throw new SafetensorsError(`must be an object of string to string`, {
      key: "__metadata__",
    });
  }
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") {
      throw new SafetensorsError(
        `value of ${JSON.stringify(k)} must be a string, got ${typeof v}`,
        { key: "__metadata__" },
      );
    }
  }
}

/**
 * Serializes tensors (and optional string metadata) to safetensors bytes.
 *
 * Layout follows the reference implementation: tensors sorted by dtype
 * alignment, largest first, then by name (code point order); data packed
 * in that order from offset 0; header JSON compact, `__metadata__` first,
 * padded with spaces to a multiple of 8 bytes so every tensor is aligned to
 * its element size in the file.
 *
 * @param tensors Tensors by name, as a plain object or a Map.
 * @param metadata Optional `__metadata__` map (e.g. `{ format: "pt" }`).
 * @throws {SafetensorsError} naming the tensor when a dtype, shape or data length is wrong.
 * @example
 * ```ts
 * import { serializeSafetensors } from "./write.ts";
 * const bytes = serializeSafetensors(
 *   { "lora_A.weight": { dtype: "F32", shape: [2, 3], data: new Float32Array(6) } },
 *   { format: "pt" },
 * );
 * ```
 */
export function serializeSafetensors(
  tensors: Record<string, TensorInput> | Map<string, TensorInput>,
  metadata?: Record<string, string>,
): Uint8Array {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const items = entries.map(([name, tensor]) => ({
    name,
    tensor,
    bytes: checkTensor(name, tensor),
  }));
  items.sort((a, b) =>
    DTYPES.indexOf(b.tensor.dtype) - DTYPES.indexOf(a.tensor.dtype) ||
    compareCodePoints(a.name, b.name)
  );

  const parts: string[] = [];
  if (metadata !== undefined) {
    checkMetadata(metadata);
    parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  }
  let offset = 0;
  for (const { name, tensor, bytes } of items) {
    const end = offset + bytes.length;
    parts.push(
      `${JSON.stringify(name)}:{"dtype":"${tensor.dtype}","shape":[${
        tensor.shape.join(",")
      }],"data_offsets":[${offset},${end}]}`,
    );
    offset = end;
  }
  const json = new TextEncoder().encode(`{${parts.join(",")}}`);
  const headerLength = Math.ceil(json.length / 8) * 8;
  if (headerLength > MAX_HEADER_LENGTH) {
    throw new SafetensorsError(
      `header would be ${headerLength} bytes, over the ${MAX_HEADER_LENGTH}-byte limit readers enforce`,
    );
  }

  const out = new Uint8Array(8 + headerLength + offset);
  // headerLength < 2^32, so the high 32 bits of the u64 stay zero.
  new DataView(out.buffer).setUint32(0, headerLength, true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLength);
  let position = 8 + headerLength;
  for (const { bytes } of items) {
    out.set(bytes, position);
    position += bytes.length;
  }
  return out;
}
