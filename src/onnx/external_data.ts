/**
 * ONNX external data: large models keep initializer bytes in side files
 * (`model.onnx_data`) named by each tensor's `external_data` entries.
 * @module
 */
import { type ModelProto, type TensorProto, TensorProto_DataLocation } from "../deps/onnx_proto.ts";
import { OnnxModelError } from "../errors.ts";

/** Where an external tensor's bytes live. */
export interface ExternalLocation {
  /** File path relative to the ONNX file's folder. */
  location: string;
  /** Byte offset in that file. */
  offset: number;
  /** Byte length, or undefined for "to the end of the file". */
  length?: number;
}

/**
 * The external location of a tensor, or undefined when it is stored inline.
 *
 * @example
 * ```ts
 * import { externalLocation } from "./external_data.ts";
 * import type { TensorProto } from "../deps/onnx_proto.ts";
 * declare const tensor: TensorProto;
 * console.log(externalLocation(tensor, "model.onnx")); // { location: "model.onnx_data", offset: 0, length: 4096 }
 * ```
 */
export function externalLocation(tensor: TensorProto, file: string): ExternalLocation | undefined {
  if (tensor.dataLocation !== TensorProto_DataLocation.EXTERNAL) return undefined;
  const entry = (key: string) => tensor.externalData.find((e) => e.key === key)?.value;
  const location = entry("location");
  if (!location || location.includes("..") || location.startsWith("/")) {
    throw new OnnxModelError(
      `external data location ${JSON.stringify(location)} is missing or escapes the model folder`,
      {
        file,
        key: tensor.name,
      },
    );
  }
  const offset = Number(entry("offset") ?? 0);
  const lengthText = entry("length");
  const length = lengthText === undefined ? undefined : Number(lengthText);
  if (
    !Number.isSafeInteger(offset) || offset < 0 ||
    (length !== undefined && (!Number.isSafeInteger(length) || length < 0))
  ) {
    throw new OnnxModelError(`bad external data offset/length`, { file, key: tensor.name });
  }
  return { location, offset, length };
}

/**
 * The distinct external data files a model's initializers refer to.
 *
 * @example
 * ```ts
 * import { externalDataFiles } from "./external_data.ts";
 * import type { ModelProto } from "../deps/onnx_proto.ts";
 * declare const model: ModelProto;
 * console.log(externalDataFiles(model, "model.onnx")); // ["model.onnx_data"]
 * ```
 */
export function externalDataFiles(model: ModelProto, file: string): string[] {
  const files = new Set<string>();
  for (const tensor of model.graph?.initializer ?? []) {
    const loc = externalLocation(tensor, file);
    if (loc) files.add(loc.location);
  }
  return [...files];
}

/**
 * The bytes of an external tensor, a view into its loaded data file.
 *
 * @example
 * ```ts
 * import { externalBytes } from "./external_data.ts";
 * import type { TensorProto } from "../deps/onnx_proto.ts";
 * declare const tensor: TensorProto, bytes: Uint8Array;
 * const raw = externalBytes(tensor, new Map([["model.onnx_data", bytes]]), "model.onnx");
 * console.log(raw?.length);
 * ```
 */
export function externalBytes(
  tensor: TensorProto,
  dataFiles: ReadonlyMap<string, Uint8Array>,
  file: string,
): Uint8Array | undefined {
  const loc = externalLocation(tensor, file);
  if (!loc) return undefined;
  const data = dataFiles.get(loc.location);
  if (!data) throw new OnnxModelError(`external data file ${loc.location} was not loaded`, { file, key: tensor.name });
  const end = loc.length === undefined ? data.length : loc.offset + loc.length;
  if (end > data.length) {
    throw new OnnxModelError(
      `external data [${loc.offset}, ${end}) runs past the end of ${loc.location} (${data.length} bytes)`,
      {
        file,
        key: tensor.name,
      },
    );
  }
  return data.subarray(loc.offset, end);
}
