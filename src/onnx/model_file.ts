/**
 * Decoding and encoding of ONNX `ModelProto` bytes through the generated
 * bufbuild schema. bufbuild keeps unknown fields, so a re-encoded model
 * loses nothing this version of the schema does not know about.
 * @module
 */
import { fromBinary, type ModelProto, ModelProtoSchema, toBinary } from "../deps/onnx_proto.ts";
import { OnnxModelError } from "../errors.ts";

/**
 * Parses ONNX model bytes, raising a typed error that names the file.
 *
 * @example
 * ```ts
 * import { decodeModel } from "./model_file.ts";
 * import { readFile } from "node:fs/promises";
 * const model = decodeModel(await readFile("tests/fixtures/llama-tiny/onnx/model.onnx"), "model.onnx");
 * console.log(model.graph?.node.length);
 * ```
 */
export function decodeModel(bytes: Uint8Array, file: string): ModelProto {
  let model: ModelProto;
  try {
    model = fromBinary(ModelProtoSchema, bytes);
  } catch (cause) {
    throw new OnnxModelError(`not a valid ONNX ModelProto (${(cause as Error).message})`, {
      file,
      cause,
    });
  }
  if (!model.graph || model.graph.node.length === 0) {
    throw new OnnxModelError("ONNX model has no graph nodes", { file });
  }
  return model;
}

/**
 * Serializes a model back to bytes.
 *
 * @example
 * ```ts
 * import { decodeModel, encodeModel } from "./model_file.ts";
 * import { readFile } from "node:fs/promises";
 * const model = decodeModel(await readFile("tests/fixtures/gpt2-tiny/onnx/model.onnx"), "model.onnx");
 * const bytes = encodeModel(model);
 * ```
 */
export function encodeModel(model: ModelProto): Uint8Array {
  return toBinary(ModelProtoSchema, model);
}
