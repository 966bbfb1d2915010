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
import { readModelSkeleton } from "./ranged_graph.ts";
import type { RangeFile } from "../storage/file_source.ts";

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
  const placed = new Map<number, { offset: number; length: number }>();
  model.graph!.initializer.forEach(({ rawData: raw }, i) => {
    if (raw.length < MIN_EXTERNAL_BYTES || raw.buffer !== bytes.buffer) return;
    placed.set(i, { offset: raw.byteOffset - bytes.byteOffset, length: raw.length });
  });
  return splitPlacedWeights(model, placed, file);
}

/** Where inline weights lie in their file, by their index in the top-level graph's initializers. */
export type PlacedWeights = ReadonlyMap<number, { offset: number; length: number }>;

/**
 * Reads an ONNX file opened for ranged reads without reading its large
 * inline weights (`readModelSkeleton`): the model as the file has it, those
 * weights left empty, and where each lies in the file, for
 * {@linkcode splitPlacedWeights} (which then gives what
 * {@linkcode splitInlineWeights} gives for the whole file's bytes).
 *
 * @param name The file, for errors.
 * @throws {OnnxModelError} when the file is not a valid ONNX model.
 * @example
 * ```ts
 * import { localSource } from "../storage/local.ts";
 * import { readModelWithoutWeights, splitPlacedWeights } from "./weight_split.ts";
 * const file = await localSource("tests/fixtures/llama-tiny").openRanges!("onnx/model.onnx");
 * const { model, placed } = readModelWithoutWeights(file!, "onnx/model.onnx");
 * console.log(splitPlacedWeights(model, placed, "onnx/model.onnx").location); // "model.onnx.inline_weights"
 * ```
 */
export function readModelWithoutWeights(file: RangeFile, name: string): { model: ModelProto; placed: PlacedWeights } {
  const { bytes, weights } = readModelSkeleton(file, name, MIN_EXTERNAL_BYTES);
  return { model: decodeModel(bytes, name), placed: new Map(weights.map((w) => [w.index, w])) };
}

/**
 * `model` with the initializers at the indices of `placed` as references to
 * where their bytes lie in the file itself, under a location no existing
 * external data uses; re-decoded, so it shares no memory with any buffer.
 *
 * @example
 * ```ts
 * import { readFile } from "node:fs/promises";
 * import { decodeModel } from "./model_file.ts";
 * import { splitPlacedWeights } from "./weight_split.ts";
 * const model = decodeModel(await readFile("tests/fixtures/llama-tiny/onnx/model.onnx"), "model.onnx");
 * console.log(splitPlacedWeights(model, new Map(), "model.onnx").location); // undefined: nothing moved
 * ```
 */
export function splitPlacedWeights(model: ModelProto, placed: PlacedWeights, file: string): SplitModel {
  const graph = model.graph!;
  const taken = new Set(graph.initializer.map((t) => externalLocation(t, file)?.location).filter((l) => l));
  const name = file.slice(file.lastIndexOf("/") + 1);
  let location = `${name}.inline_weights`;
  while (taken.has(location)) location += "_";
  const initializer = graph.initializer.map((t, i) => {
    const at = placed.get(i);
    if (!at) return t;
    return edited(TensorProtoSchema, t, {
      rawData: new Uint8Array(0),
      dataLocation: TensorProto_DataLocation.EXTERNAL,
      externalData: [
        { key: "location", value: location },
        { key: "offset", value: String(at.offset) },
        { key: "length", value: String(at.length) },
      ].map((e) => create(StringStringEntryProtoSchema, e)),
    });
  });
  // Re-decoding the (small) encoded graph gives fields that view a buffer of their own, not the file's.
  const split = edited(ModelProtoSchema, model, { graph: edited(GraphProtoSchema, graph, { initializer }) });
  return { model: decodeModel(encodeModel(split), file), location: placed.size > 0 ? location : undefined };
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
