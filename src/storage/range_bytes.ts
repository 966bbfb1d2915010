/**
 * A whole file's bytes that are never held whole: a `Uint8Array` stand-in
 * over a {@linkcode RangeFile} whose `subarray` and `slice` read that range
 * from the file. It serves where bytes are only ever read range by range:
 * a local adapter's safetensors file (`Safetensors` reads its header and
 * each tensor with `subarray`), external data lookups
 * (`subarray(offset, end)`) and onnxruntime-web's
 * mounted external data, whose C++ side (1.30, `Module.MountedFiles`) checks
 * `byteLength` and copies each initializer's `subarray(offset, offset +
 * length)` into its heap. Any other use (an element, `buffer`, iteration)
 * throws rather than reading nothing.
 * @module
 */
import type { RangeFile } from "./file_source.ts";

const RANGES: unique symbol = Symbol("peft-edge.rangeFile");

/** Options of {@linkcode rangeBytes}. */
export interface RangeBytesOptions {
  /**
   * Each range read goes into this one buffer, grown where it is too small:
   * a range is valid only until the next read through it (for readers that
   * copy it at once, as onnxruntime does). Default: every range in a buffer
   * of its own.
   */
  reuse?: { bytes: Uint8Array };
}

/** TypedArray's relative indexes: negative from the end, clamped to `[0, size]`. */
function index(at: number | undefined, size: number, fallback: number): number {
  if (at === undefined) return fallback;
  const i = Math.trunc(at) || 0;
  return i < 0 ? Math.max(size + i, 0) : Math.min(i, size);
}

/**
 * Bytes of `file` read range by range when asked.
 *
 * @param name The file, for the error a use other than reading ranges throws.
 * @example
 * ```ts
 * import { localSource } from "./local.ts";
 * import { rangeBytes } from "./range_bytes.ts";
 * const file = await localSource("tests/fixtures/llama-tiny").openRanges!("onnx/model.onnx");
 * const bytes = rangeBytes(file!, "onnx/model.onnx");
 * console.log(bytes.length, bytes.subarray(0, 4)); // the file's size, its first 4 bytes
 * ```
 */
export function rangeBytes(file: RangeFile, name: string, options: RangeBytesOptions = {}): Uint8Array {
  const size = file.size;
  const scratch = options.reuse;
  const read = (begin?: number, end?: number): Uint8Array => {
    const from = index(begin, size, 0);
    const length = Math.max(index(end, size, size) - from, 0);
    if (scratch && scratch.bytes.length < length) scratch.bytes = new Uint8Array(length);
    const bytes = scratch ? scratch.bytes.subarray(0, length) : new Uint8Array(length);
    file.readInto(from, bytes);
    return bytes;
  };
  return new Proxy(new Uint8Array(0), {
    get(target, key) {
      switch (key) {
        case "length":
        case "byteLength":
          return size;
        case "byteOffset":
          return 0;
        case "subarray":
        case "slice":
          return read;
        case RANGES:
          return file;
        case "then": // not a thenable: it may be returned from async functions
          return undefined;
      }
      if (typeof key === "symbol") return Reflect.get(target, key);
      throw new TypeError(`${name}: its bytes are read range by range (subarray) and have no ${key}`);
    },
  });
}

/**
 * The file behind bytes made by {@linkcode rangeBytes}; undefined for
 * ordinary bytes.
 *
 * @example
 * ```ts
 * import { rangeFileOf } from "./range_bytes.ts";
 * console.log(rangeFileOf(new Uint8Array(4))); // undefined
 * ```
 */
export function rangeFileOf(bytes: Uint8Array): RangeFile | undefined {
  return (bytes as { [RANGES]?: RangeFile })[RANGES];
}

/**
 * Ordinary bytes: `bytes` itself, or the whole file read at once where they
 * come from {@linkcode rangeBytes} (for writers and native code that take
 * whole buffers).
 *
 * @example
 * ```ts
 * import { wholeBytes } from "./range_bytes.ts";
 * const bytes = new Uint8Array(4);
 * console.log(wholeBytes(bytes) === bytes); // true
 * ```
 */
export function wholeBytes(bytes: Uint8Array): Uint8Array {
  return rangeFileOf(bytes) ? bytes.subarray(0, bytes.length) : bytes;
}

/**
 * Frees a buffer of one's own now (detaching it) rather than at some later
 * garbage collection; every view of it is empty afterwards. Where the
 * runtime cannot detach it, it goes with its last reference as usual.
 *
 * @example
 * ```ts
 * import { freeNow } from "./range_bytes.ts";
 * const bytes = new Uint8Array(1024);
 * freeNow(bytes);
 * console.log(bytes.length); // 0
 * ```
 */
export function freeNow(bytes: Uint8Array): void {
  const buffer = bytes.buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer };
  try {
    buffer.transfer?.(0);
  } catch {
    // A buffer that cannot be detached (shared, or a wasm memory's) is left to the garbage collector.
  }
}
