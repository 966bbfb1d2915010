/**
 * Decoding and encoding of ONNX `ModelProto` bytes through the generated
 * bufbuild schema. bufbuild keeps unknown fields, so a re-encoded model
 * loses nothing this version of the schema does not know about.
 * @module
 */
import {
  BinaryReader,
  BinaryWriter,
  fromBinary,
  type GraphProto,
  GraphProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  toBinary,
  WireType,
} from "../deps/onnx_proto.ts";
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

/** Field numbers of onnx.proto: `ModelProto.graph`, `GraphProto.node`. */
const MODEL_GRAPH = 7;
const GRAPH_NODE = 1;

/**
 * Parses only the nodes of a model's graph (their attributes and subgraphs
 * included), skipping its initializers, inputs, outputs and value infos
 * unread: for reading another file's structure (names, ops, metadata)
 * without copying its weights. External data is never touched.
 *
 * @example
 * ```ts
 * import { decodeGraphNodes } from "./model_file.ts";
 * import { readFile } from "node:fs/promises";
 * const graph = decodeGraphNodes(await readFile("tests/fixtures/llama-tiny/onnx/model.onnx"), "model.onnx");
 * console.log(graph.node.length, graph.initializer.length); // n 0
 * ```
 */
export function decodeGraphNodes(bytes: Uint8Array, file: string): GraphProto {
  const nodes: Uint8Array[] = [];
  try {
    const model = new BinaryReader(bytes);
    while (model.pos < model.len) {
      const [field, wire] = model.tag();
      if (field !== MODEL_GRAPH || wire !== WireType.LengthDelimited) {
        model.skip(wire, field);
        continue;
      }
      const graphBytes = model.bytes();
      const reader = new BinaryReader(graphBytes);
      while (reader.pos < reader.len) {
        const start = reader.pos;
        const [f, w] = reader.tag();
        reader.skip(w, f);
        // Each kept entry is the node's whole field (tag, length, message), so their concatenation is a GraphProto.
        if (f === GRAPH_NODE && w === WireType.LengthDelimited) nodes.push(graphBytes.subarray(start, reader.pos));
      }
    }
  } catch (cause) {
    throw new OnnxModelError(`not a valid ONNX ModelProto (${(cause as Error).message})`, { file, cause });
  }
  return graphFromNodeFields(nodes, file);
}

/**
 * A graph of these nodes only, each given as its whole `GraphProto.node`
 * field (tag, length, message), in order: their concatenation is a `GraphProto`.
 *
 * @param file The model, for errors.
 * @throws {OnnxModelError} when a node does not parse, or there is none.
 * @example
 * ```ts
 * import { graphFromNodeFields } from "./model_file.ts";
 * // `GraphProto.node` is field 1 (tag byte 0x0a), then the message's length: an empty NodeProto here.
 * const graph = graphFromNodeFields([new Uint8Array([0x0a, 0x00])], "model.onnx");
 * console.log(graph.node.length); // 1
 * ```
 */
export function graphFromNodeFields(nodes: readonly Uint8Array[], file: string): GraphProto {
  let graph: GraphProto;
  try {
    const joined = new BinaryWriter();
    for (const node of nodes) joined.raw(node);
    graph = fromBinary(GraphProtoSchema, joined.finish());
  } catch (cause) {
    throw new OnnxModelError(`not a valid ONNX ModelProto (${(cause as Error).message})`, { file, cause });
  }
  if (graph.node.length === 0) throw new OnnxModelError("ONNX model has no graph nodes", { file });
  return graph;
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
