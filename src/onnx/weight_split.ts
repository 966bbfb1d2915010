/**
 * Graph and weights kept apart. A model read from one file keeps its
 * weights inline (`raw_data`); the loader turns each large one into an
 * external data reference into the file's own bytes (no copy), so graph
 * rewrites re-encode only the small graph, onnxruntime copies each weight
 * once from the mounted bytes (instead of parsing them out of a copy of the
 * whole file), and the JavaScript copy is one buffer that can be dropped.
 * @module
 */
import {
  create,
  GraphProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  StringStringEntryProtoSchema,
  TensorProto_DataLocation,
  TensorProtoSchema,
} from "../deps/onnx_proto.ts";
import { decodeModel, encodeModel } from "./model_file.ts";
import { edited } from "./proto_edit.ts";
import { externalBytes, externalLocation } from "./external_data.ts";

/** Inline initializers smaller than this stay inline (shapes, scalars: read by graph code, not worth a reference). */
const MIN_EXTERNAL_BYTES = 4096;

/**
 * A model whose large inline weights are external data in `location` (the
 * bytes of the file it was decoded from); `location` is undefined when
 * nothing was moved.
 */
export interface SplitModel {
  model: ModelProto;
  location?: string;
}

/**
 * Moves the large inline initializers of the top-level graph out as
 * references into `bytes` (the file `model` was decoded from), under a
 * location no existing external data uses. The returned model shares no
 * memory with `bytes`: holding it never keeps the file's buffer alive.
 *
 * @example
 * ```ts
 * import { readFile } from "node:fs/promises";
 * import { decodeModel } from "./model_file.ts";
 * import { splitInlineWeights } from "./weight_split.ts";
 * const bytes = new Uint8Array(await readFile("tests/fixtures/llama-tiny/onnx/model.onnx"));
 * const { model, location } = splitInlineWeights(bytes, decodeModel(bytes, "model.onnx"), "model.onnx");
 * console.log(location, model.graph!.initializer.length);
 * ```
 */
export function splitInlineWeights(bytes: Uint8Array, model: ModelProto, file: string): SplitModel {
  const graph = model.graph!;
  const taken = new Set(graph.initializer.map((t) => externalLocation(t, file)?.location).filter((l) => l));
  const name = file.slice(file.lastIndexOf("/") + 1);
  let location = `${name}.inline_weights`;
  while (taken.has(location)) location += "_";
  let moved = 0;
  const initializer = graph.initializer.map((t) => {
    const raw = t.rawData;
    if (raw.length < MIN_EXTERNAL_BYTES || raw.buffer !== bytes.buffer) return t;
    moved++;
    return edited(TensorProtoSchema, t, {
      rawData: new Uint8Array(0),
      dataLocation: TensorProto_DataLocation.EXTERNAL,
      externalData: [
        { key: "location", value: location },
        { key: "offset", value: String(raw.byteOffset - bytes.byteOffset) },
        { key: "length", value: String(raw.length) },
      ].map((e) => create(StringStringEntryProtoSchema, e)),
    });
  });
  // Re-decoding the (small) encoded graph gives fields that view a buffer of their own, not the file's.
  const split = edited(ModelProtoSchema, model, { graph: edited(GraphProtoSchema, graph, { initializer }) });
  return { model: decodeModel(encodeModel(split), file), location: moved > 0 ? location : undefined };
}

/**
 * The model with the weights in `location` inline again (for writing a
 * model that was one file as one file).
 *
 * @example
 * ```ts
 * import { readFile } from "node:fs/promises";
 * import { decodeModel } from "./model_file.ts";
 * import { inlineWeights, splitInlineWeights } from "./weight_split.ts";
 * const bytes = new Uint8Array(await readFile("tests/fixtures/llama-tiny/onnx/model.onnx"));
 * const { model, location } = splitInlineWeights(bytes, decodeModel(bytes, "model.onnx"), "model.onnx");
 * const whole = inlineWeights(model, location!, new Map([[location!, bytes]]), "model.onnx");
 * ```
 */
export function inlineWeights(
  model: ModelProto,
  location: string,
  data: ReadonlyMap<string, Uint8Array>,
  file: string,
): ModelProto {
  const graph = model.graph!;
  const initializer = graph.initializer.map((t) => {
    if (externalLocation(t, file)?.location !== location) return t;
    return edited(TensorProtoSchema, t, {
      rawData: externalBytes(t, data, file)! as Uint8Array<ArrayBuffer>,
      dataLocation: TensorProto_DataLocation.DEFAULT,
      externalData: [],
    });
  });
  return edited(ModelProtoSchema, model, { graph: edited(GraphProtoSchema, graph, { initializer }) });
}
