/**
 * Reading a whole safetensors file held in memory.
 *
 * @module
 */

import { SafetensorsError } from "../errors.ts";
import { bytesToFloat32, bytesToTypedArray, type SafetensorsTypedArray } from "./convert.ts";
import type { Dtype } from "./dtype.ts";
import { parseSafetensorsHeader, readHeaderLength, type SafetensorsHeader, type TensorInfo } from "./header.ts";

/**
 * One tensor of a file: its dtype, shape and raw little-endian bytes.
 *
 * @example
 * ```ts
 * import type { TensorView } from "./read.ts";
 * const t: TensorView = { dtype: "U8", shape: [2], bytes: new Uint8Array([1, 2]) };
 * ```
 */
export interface TensorView {
  /** Element type. */
  dtype: Dtype;
  /** Dimensions, row-major (a copy: changing it does not change the file). */
  shape: number[];
  /**
   * The tensor's bytes: a view into the file's buffer, not a copy (for a
   * file read range by range, those bytes read from it just now).
   */
  bytes: Uint8Array;
}

/** Up to `count` names, those sharing the longest prefix with `name` first. */
function closestNames(name: string, names: string[], count: number): string[] {
  const shared = (other: string) => {
    let i = 0;
    while (i < name.length && name[i] === other[i]) i++;
    return i;
  };
  return names
    .map((n) => [n, shared(n)] as const)
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([n]) => n);
}

/**
 * A validated safetensors file. Build one with {@linkcode parseSafetensors}
 * (or `new Safetensors(bytes, file)`). `bytes` are the whole file, or a
 * stand-in for them whose `subarray` reads that range from the file
 * (`rangeBytes`, `storage/range_bytes.ts`): only the header is read then,
 * and each tensor when it is asked for, so nothing holds the file whole
 * (a file changed since is refused by those reads, naming it).
 *
 * @example
 * ```ts
 * import { Safetensors } from "./read.ts";
 * import { serializeSafetensors } from "./write.ts";
 * const bytes = serializeSafetensors({ w: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) } });
 * const st = new Safetensors(bytes, "w.safetensors");
 * console.log(st.names(), st.toFloat32("w")); // ["w"] Float32Array [1, 2]
 * ```
 */
export class Safetensors {
  /** The validated header. */
  readonly header: SafetensorsHeader;
  /** File name used in error messages, if given. */
  readonly file?: string;
  readonly #bytes: Uint8Array;

  /**
   * Validates `bytes` as a complete safetensors file.
   *
   * @throws {SafetensorsError} when the file is malformed.
   */
  constructor(bytes: Uint8Array, file?: string) {
    // The header through subarray only: free views of bytes in memory, two small reads of a ranged file.
    const headerLength = readHeaderLength(bytes.subarray(0, 8), bytes.length, file);
    this.header = parseSafetensorsHeader(bytes.subarray(0, 8 + headerLength), bytes.length, file);
    this.file = file;
    this.#bytes = bytes;
  }

  /** The `__metadata__` string map, when the file has one. */
  get metadata(): Record<string, string> | undefined {
    return this.header.metadata;
  }

  /** Tensor names, in the order of their data in the file. */
  names(): string[] {
    return [...this.header.tensors.keys()];
  }

  /** Whether the file has a tensor called `name`. */
  has(name: string): boolean {
    return this.header.tensors.has(name);
  }

  /**
   * Header entry of tensor `name`.
   *
   * @throws {SafetensorsError} naming the key (and some that exist) when there is no such tensor.
   */
  info(name: string): TensorInfo {
    const info = this.header.tensors.get(name);
    if (info) return info;
    const names = this.names();
    const hint = names.length === 0
      ? "the file has no tensors"
      : `the file has ${names.length} tensors, e.g. ${
        closestNames(name, names, 5).map((n) => JSON.stringify(n)).join(", ")
      }`;
    throw new SafetensorsError(`no such tensor; ${hint}`, {
      file: this.file,
      key: name,
    });
  }

  /** Dtype, shape and bytes (a view, no copy; read from the file where it is read by range) of tensor `name`. */
  get(name: string): TensorView {
    const { dtype, shape, dataOffsets: [begin, end] } = this.info(name);
    const start = this.header.dataOffset;
    return {
      dtype,
      shape: [...shape],
      bytes: this.#bytes.subarray(start + begin, start + end),
    };
  }

  /**
   * Values of tensor `name` as a new `Float32Array` (safe to modify),
   * converted from any dtype; see {@linkcode bytesToFloat32}.
   */
  toFloat32(name: string): Float32Array {
    const { dtype, bytes } = this.get(name);
    return bytesToFloat32(dtype, bytes);
  }

  /**
   * Values of tensor `name` as float32 without a copy where they are stored
   * so: an aligned F32 tensor is a view into the file (treat it as
   * read-only; it keeps the file's buffer alive; read by range, a buffer
   * of its own), any other is converted as by {@linkcode Safetensors.toFloat32}.
   *
   * @example
   * ```ts
   * import { Safetensors } from "./read.ts";
   * import { serializeSafetensors } from "./write.ts";
   * const bytes = serializeSafetensors({ w: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) } });
   * const w = new Safetensors(bytes).float32View("w");
   * console.log(w, w.buffer === bytes.buffer); // Float32Array [1, 2] true
   * ```
   */
  float32View(name: string): Float32Array {
    const { dtype, bytes } = this.get(name);
    if (dtype === "F32" && bytes.byteOffset % 4 === 0) {
      return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    }
    return bytesToFloat32(dtype, bytes);
  }

  /**
   * Tensor `name` as the typed array of its dtype (`BigInt64Array` for I64,
   * raw bits in a `Uint16Array` for F16/BF16...; see
   * {@linkcode bytesToTypedArray}). A view into the file when aligned, else
   * a copy: treat it as read-only.
   */
  toTypedArray(name: string): SafetensorsTypedArray {
    const { dtype, bytes } = this.get(name);
    return bytesToTypedArray(dtype, bytes);
  }
}

/**
 * Parses and validates a complete safetensors file held in memory. Tensor
 * data is not copied.
 *
 * @param bytes The whole file.
 * @param file File name for error messages.
 * @throws {SafetensorsError} when the file is malformed (see `parseSafetensorsHeader`).
 * @example
 * ```ts
 * import { parseSafetensors } from "./read.ts";
 * import { serializeSafetensors } from "./write.ts";
 * // e.g. new Uint8Array(await (await fetch(url)).arrayBuffer())
 * const bytes = serializeSafetensors({ "lora_A.weight": { dtype: "F16", shape: [2, 4], data: new Uint16Array(8) } });
 * const st = parseSafetensors(bytes, "adapter_model.safetensors");
 * for (const name of st.names()) console.log(name, st.get(name).shape);
 * ```
 */
export function parseSafetensors(
  bytes: Uint8Array,
  file?: string,
): Safetensors {
  return new Safetensors(bytes, file);
}
