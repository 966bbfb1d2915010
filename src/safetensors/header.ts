/**
 * Parsing and validation of the safetensors header: an 8-byte little-endian
 * length N, then N bytes of UTF-8 JSON describing each tensor. Validation
 * follows the Rust reference implementation, and adds duplicate-key
 * detection (which `JSON.parse` would otherwise hide).
 *
 * @module
 */

import { SafetensorsError } from "../errors.ts";
import { type Dtype, DTYPES, dtypeSize, isDtype } from "./dtype.ts";
import { type JsonPath, scanJson } from "../json/scan.ts";
import { describeValue as describe, isPlainObject } from "../json/values.ts";
import { jsonSyntaxError } from "../json/syntax.ts";

/**
 * Largest header the reference implementation accepts, in bytes.
 *
 * @example
 * ```ts
 * import { MAX_HEADER_LENGTH } from "./header.ts";
 * console.log(MAX_HEADER_LENGTH); // 100000000
 * ```
 */
export const MAX_HEADER_LENGTH = 100_000_000;

/**
 * What the header says about one tensor.
 *
 * @example
 * ```ts
 * import type { TensorInfo } from "./header.ts";
 * const info: TensorInfo = { dtype: "F32", shape: [2, 3], dataOffsets: [0, 24] };
 * ```
 */
export interface TensorInfo {
  /** Element type. */
  dtype: Dtype;
  /** Dimensions, row-major; `[]` for a scalar. */
  shape: number[];
  /** `[begin, end)` byte range, relative to the start of the data section. */
  dataOffsets: [number, number];
}

/**
 * A validated safetensors header.
 *
 * @example
 * ```ts
 * import type { SafetensorsHeader } from "./header.ts";
 * function dataBytes(h: SafetensorsHeader, name: string): [number, number] {
 *   const [b, e] = h.tensors.get(name)!.dataOffsets;
 *   return [h.dataOffset + b, h.dataOffset + e];
 * }
 * ```
 */
export interface SafetensorsHeader {
  /** N, the length of the JSON header in bytes (padding included). */
  headerLength: number;
  /** Where tensor data starts in the file: 8 + N. */
  dataOffset: number;
  /** Tensors by name, in the order of their data in the file. */
  tensors: Map<string, TensorInfo>;
  /** The `__metadata__` string map, when the file has one. */
  metadata?: Record<string, string>;
}

const TENSOR_FIELDS = ["dtype", "shape", "data_offsets"] as const;

function fail(message: string, file?: string, key?: string): never {
  throw new SafetensorsError(message, { file, key });
}

/**
 * Reads and checks the 8-byte header length N. Needs only the first 8 bytes.
 *
 * @param bytes At least the first 8 bytes of the file.
 * @param fileSize Size of the whole file in bytes.
 * @param file File name for error messages.
 * @returns N.
 * @example
 * ```ts
 * import { readHeaderLength } from "./header.ts";
 * const prefix = new Uint8Array([8, 0, 0, 0, 0, 0, 0, 0]);
 * console.log(readHeaderLength(prefix, 16)); // 8
 * ```
 */
export function readHeaderLength(
  bytes: Uint8Array,
  fileSize: number,
  file?: string,
): number {
  if (fileSize < 8) {
    fail(
      `file is ${fileSize} bytes, shorter than the 8-byte header length prefix`,
      file,
    );
  }
  if (bytes.length < 8) {
    fail(
      `only ${bytes.length} bytes given; the header length prefix needs 8`,
      file,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, 8);
  const low = view.getUint32(0, true);
  const high = view.getUint32(4, true);
  if (high !== 0 || low > MAX_HEADER_LENGTH) {
    const n = (BigInt(high) << 32n) | BigInt(low);
    fail(
      `header length ${n} exceeds the ${MAX_HEADER_LENGTH}-byte limit`,
      file,
    );
  }
  if (8 + low > fileSize) {
    fail(
      `header length ${low} runs past the end of the file (8 + ${low} > ${fileSize} bytes)`,
      file,
    );
  }
  return low;
}

/** Validates an unsigned integer taken from the header (shape or offset entry). */
function checkUnsigned(
  value: unknown,
  what: string,
  file: string | undefined,
  key: string,
): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    fail(
      `${what} must be a non-negative integer, got ${describe(value)}`,
      file,
      key,
    );
  }
  if (!Number.isSafeInteger(value)) {
    fail(`${what} = ${value} exceeds Number.MAX_SAFE_INTEGER`, file, key);
  }
  return value;
}

function parseTensorEntry(
  name: string,
  entry: unknown,
  file: string | undefined,
): TensorInfo {
  if (!isPlainObject(entry)) {
    fail(
      `entry must be an object with dtype, shape and data_offsets, got ${describe(entry)}`,
      file,
      name,
    );
  }
  for (const field of Object.keys(entry)) {
    if (!(TENSOR_FIELDS as readonly string[]).includes(field)) {
      fail(
        `unexpected field ${JSON.stringify(field)} (allowed: ${TENSOR_FIELDS.join(", ")})`,
        file,
        name,
      );
    }
  }
  for (const field of TENSOR_FIELDS) {
    if (!Object.hasOwn(entry, field)) {
      fail(`missing field "${field}"`, file, name);
    }
  }

  const dtype = entry.dtype;
  if (typeof dtype !== "string") {
    fail(`dtype must be a string, got ${describe(dtype)}`, file, name);
  }
  if (!isDtype(dtype)) {
    fail(
      `unknown dtype ${JSON.stringify(dtype)} (known: ${DTYPES.join(", ")})`,
      file,
      name,
    );
  }

  const rawShape = entry.shape;
  if (!Array.isArray(rawShape)) {
    fail(`shape must be an array, got ${describe(rawShape)}`, file, name);
  }
  const shape = rawShape.map((d, i) => checkUnsigned(d, `shape[${i}]`, file, name));

  const rawOffsets = entry.data_offsets;
  if (!Array.isArray(rawOffsets) || rawOffsets.length !== 2) {
    fail(
      `data_offsets must be an array [begin, end], got ${describe(rawOffsets)}`,
      file,
      name,
    );
  }
  const begin = checkUnsigned(rawOffsets[0], "data_offsets[0]", file, name);
  const end = checkUnsigned(rawOffsets[1], "data_offsets[1]", file, name);
  if (begin > end) {
    fail(`data_offsets [${begin}, ${end}] has begin > end`, file, name);
  }

  // Multiply step by step so an overflow is caught where it happens, like
  // the reference's checked_mul.
  let elements = 1;
  for (const d of shape) {
    elements *= d;
    if (!Number.isSafeInteger(elements)) {
      fail(
        `shape [${shape}] has more than Number.MAX_SAFE_INTEGER elements`,
        file,
        name,
      );
    }
  }
  const byteLength = elements * dtypeSize(dtype);
  if (!Number.isSafeInteger(byteLength)) {
    fail(
      `shape [${shape}] of ${dtype} needs more than Number.MAX_SAFE_INTEGER bytes`,
      file,
      name,
    );
  }
  if (end - begin !== byteLength) {
    fail(
      `data_offsets [${begin}, ${end}] span ${end - begin} bytes but shape [${shape}] of ${dtype} needs ${byteLength}`,
      file,
      name,
    );
  }
  return { dtype, shape, dataOffsets: [begin, end] };
}

function parseMetadata(
  value: unknown,
  file: string | undefined,
): Record<string, string> | undefined {
  // The reference reads `__metadata__` as an optional map, so null means absent.
  if (value === null) return undefined;
  if (!isPlainObject(value)) {
    fail(
      `must be an object of string to string, got ${describe(value)}`,
      file,
      "__metadata__",
    );
  }
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== "string") {
      fail(
        `value of ${JSON.stringify(k)} must be a string, got ${describe(v)}`,
        file,
        "__metadata__",
      );
    }
  }
  return Object.fromEntries(Object.entries(value as Record<string, string>));
}

function pathKey(path: JsonPath): { key?: string; rest: string } {
  const [first, ...rest] = path;
  const restText = rest.map((p) => typeof p === "number" ? `[${p}]` : `.${p}`)
    .join("").replace(/^\./, "");
  return {
    key: first === undefined ? undefined : String(first),
    rest: restText,
  };
}

/** Checks that the data ranges, sorted by offset, tile [0, end) exactly; returns end. */
function checkLayout(
  tensors: [string, TensorInfo][],
  file: string | undefined,
): number {
  let cursor = 0;
  let previous: string | undefined;
  for (const [name, { dataOffsets: [begin, end] }] of tensors) {
    if (begin > cursor) {
      fail(
        previous === undefined
          ? `data starts at offset ${begin}, not 0: the first ${begin} bytes of the data section belong to no tensor`
          : `gap of ${begin - cursor} bytes: tensor ${
            JSON.stringify(previous)
          } ends at ${cursor} but this one starts at ${begin}`,
        file,
        name,
      );
    }
    if (begin < cursor) {
      fail(
        `data_offsets [${begin}, ${end}] overlap tensor ${JSON.stringify(previous)}, which ends at ${cursor}`,
        file,
        name,
      );
    }
    cursor = end;
    previous = name;
  }
  return cursor;
}

/**
 * Parses and validates a safetensors header. Only the header is needed:
 * `bytes` must hold at least the first 8 + N bytes of the file, while
 * `fileSize` is the size of the whole file, so the data layout can be
 * checked against it without reading the data.
 *
 * Rejects, with a {@linkcode SafetensorsError} naming the file and tensor:
 * a file under 8 bytes; a header length over 100,000,000 or past the end of
 * the file; a header that is not UTF-8, not JSON, or not a JSON object;
 * duplicate keys; entries that are not exactly `{dtype, shape, data_offsets}`
 * of the right types; unknown dtypes; shapes or offsets that are not
 * non-negative integers (or exceed `Number.MAX_SAFE_INTEGER`); byte ranges
 * that do not match shape × dtype size; data ranges that do not tile the
 * data section from 0 without gaps or overlaps; data that does not end
 * exactly at the end of the file; a `__metadata__` that is not a string map.
 *
 * @param bytes The file's first 8 + N bytes or more (the whole file is fine).
 * @param fileSize Size of the whole file in bytes.
 * @param file File name for error messages.
 * @example
 * ```ts
 * import { parseSafetensorsHeader } from "./header.ts";
 * const json = '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
 * const head = new TextEncoder().encode(json);
 * const bytes = new Uint8Array(8 + head.length);
 * new DataView(bytes.buffer).setUint32(0, head.length, true);
 * bytes.set(head, 8);
 * const header = parseSafetensorsHeader(bytes, bytes.length + 8, "w.safetensors");
 * console.log(header.tensors.get("w")?.shape); // [2]
 * ```
 */
export function parseSafetensorsHeader(
  bytes: Uint8Array,
  fileSize: number,
  file?: string,
): SafetensorsHeader {
  const headerLength = readHeaderLength(bytes, fileSize, file);
  const dataOffset = 8 + headerLength;
  if (bytes.length < dataOffset) {
    fail(
      `only ${bytes.length} bytes given but the header needs ${dataOffset} (8 + ${headerLength})`,
      file,
    );
  }

  let text: string;
  try {
    // ignoreBOM keeps a leading U+FEFF in the text, so JSON.parse rejects it
    // as the reference does, instead of it being silently dropped.
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
      .decode(bytes.subarray(8, dataOffset));
  } catch (cause) {
    throw new SafetensorsError(
      `header (bytes 8 to ${dataOffset}) is not valid UTF-8`,
      { file, cause },
    );
  }

  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new SafetensorsError(
      `header is not valid JSON (${jsonSyntaxError(cause)})`,
      { file, cause },
    );
  }
  if (!isPlainObject(json)) {
    fail(`header must be a JSON object, got ${describe(json)}`, file);
  }

  const scan = scanJson(text);
  if (scan.duplicate) {
    const { key, rest } = pathKey(scan.duplicate.path);
    const dup = JSON.stringify(scan.duplicate.key);
    fail(
      key === undefined
        ? `header lists ${dup} more than once`
        : `${rest ? `${rest}: ` : ""}key ${dup} appears more than once`,
      file,
      key ?? scan.duplicate.key,
    );
  }

  let metadata: Record<string, string> | undefined;
  const tensors: [string, TensorInfo][] = [];
  for (const [name, entry] of Object.entries(json)) {
    if (name === "__metadata__") metadata = parseMetadata(entry, file);
    else tensors.push([name, parseTensorEntry(name, entry, file)]);
  }

  if (scan.nonInteger) {
    // Only shapes and offsets can still hold numbers here; JSON.parse turned
    // e.g. `1.0` or `-0` into an integer, but the format needs plain digits.
    const { key, rest } = pathKey(scan.nonInteger.path);
    fail(
      `${rest} is written ${scan.nonInteger.literal}; it must be a plain non-negative integer`,
      file,
      key,
    );
  }

  tensors.sort(([, a], [, b]) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  const dataLength = checkLayout(tensors, file);
  const fileEnd = dataOffset + dataLength;
  if (fileEnd !== fileSize) {
    const last = tensors.length ? tensors[tensors.length - 1][0] : undefined;
    fail(
      fileEnd < fileSize
        ? `tensor data ends at byte ${fileEnd} but the file has ${fileSize} bytes (${
          fileSize - fileEnd
        } unaccounted bytes at the end)`
        : `tensor data ends at byte ${fileEnd}, past the end of the ${fileSize}-byte file (truncated by ${
          fileEnd - fileSize
        } bytes?)`,
      file,
      last,
    );
  }

  return {
    headerLength,
    dataOffset,
    tensors: new Map(tensors),
    ...(metadata ? { metadata } : {}),
  };
}

/**
 * Reads and validates the header of a safetensors `Blob` or `File`, reading
 * only the first 8 + N bytes through `blob.slice`, so the tensor data of a
 * lazily backed Blob is never read.
 *
 * @param blob A Blob, File, or anything with `size` and `slice`.
 * @param file File name for error messages; defaults to `blob.name` when it has one.
 * @example
 * ```ts
 * import { readSafetensorsHeader } from "./header.ts";
 * const blob = new Blob([new Uint8Array([8, 0, 0, 0, 0, 0, 0, 0]), "{}      "]);
 * const header = await readSafetensorsHeader(blob, "empty.safetensors");
 * console.log(header.tensors.size); // 0
 * ```
 */
export async function readSafetensorsHeader(
  blob: Pick<Blob, "size" | "slice">,
  file?: string,
): Promise<SafetensorsHeader> {
  if (file === undefined) {
    const name = (blob as { name?: unknown }).name;
    if (typeof name === "string" && name) file = name;
  }
  const size = blob.size;
  const prefix = size >= 8 ? new Uint8Array(await blob.slice(0, 8).arrayBuffer()) : new Uint8Array(0);
  const headerLength = readHeaderLength(prefix, size, file);
  const json = new Uint8Array(
    await blob.slice(8, 8 + headerLength).arrayBuffer(),
  );
  if (json.length !== headerLength) {
    fail(
      `reading header bytes 8 to ${8 + headerLength} returned ${json.length} bytes`,
      file,
    );
  }
  const bytes = new Uint8Array(8 + headerLength);
  bytes.set(prefix);
  bytes.set(json, 8);
  return parseSafetensorsHeader(bytes, size, file);
}
