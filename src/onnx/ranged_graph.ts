/**
 * An ONNX file's structure read through ranged reads: only the bytes of
 * what is kept and the few bytes that say how long each skipped field is,
 * so a file with its weights inline (hundreds of MiB of `raw_data`) costs a
 * few MiB of reads to learn its structure. Two readings: the graph's nodes
 * alone (another file's module paths), and the whole model without its
 * large inline weights (the model being loaded; where each weight lies is
 * kept, so onnxruntime reads it from the file).
 * @module
 */
import { BinaryReader, BinaryWriter, type GraphProto, WireType } from "../deps/onnx_proto.ts";
import { OnnxModelError, PeftEdgeError } from "../errors.ts";
import type { RangeFile } from "../storage/file_source.ts";
import { graphFromNodeFields } from "./model_file.ts";

/** Field numbers of onnx.proto used here: `ModelProto.graph`, `GraphProto.node` and `.initializer`, `TensorProto.raw_data`. */
const MODEL_GRAPH = 7;
const GRAPH_NODE = 1;
const GRAPH_INITIALIZER = 5;
const TENSOR_RAW_DATA = 9;

/**
 * Bytes read ahead at a time: most nodes fit and follow one another; a skipped field (a weight) costs one window
 * for the tag and length after it.
 */
const WINDOW = 1 << 13;
/** The most bytes a field's head takes: a tag (5-byte varint) and a length (10). */
const HEAD = 15;

/** A field's head: its number and wire type; `start`..`end` are a delimited field's bytes (both the position after the value for other wire types). */
interface FieldHead {
  field: number;
  wire: WireType;
  start: number;
  end: number;
}

/** Reads a file's bytes through a window that moves forward as the parse does. */
class Window {
  #file: RangeFile;
  #bytes = new Uint8Array(0);
  #at = 0;
  constructor(file: RangeFile) {
    this.#file = file;
  }

  /** Fills the window from `pos`. */
  #fill(pos: number): void {
    const length = Math.min(WINDOW, this.#file.size - pos);
    if (length <= 0) throw new RangeError(`the file ends before byte ${pos}`);
    if (this.#bytes.length !== length) this.#bytes = new Uint8Array(length);
    this.#file.readInto(pos, this.#bytes);
    this.#at = pos;
  }

  /** `length` bytes from `pos`, in a buffer of their own. */
  bytes(pos: number, length: number): Uint8Array {
    if (pos + length > this.#file.size) throw new RangeError(`the file ends before byte ${pos + length}`);
    const out = new Uint8Array(length);
    if (length > WINDOW) {
      this.#file.readInto(pos, out);
      return out;
    }
    if (pos < this.#at || pos + length > this.#at + this.#bytes.length) this.#fill(pos);
    out.set(this.#bytes.subarray(pos - this.#at, pos - this.#at + length));
    return out;
  }

  /**
   * The head of the field at `pos`, read by protobuf's own wire reader from
   * the window: a delimited value's length is read, its bytes are not.
   */
  head(pos: number): FieldHead {
    const need = Math.min(HEAD, this.#file.size - pos);
    if (pos < this.#at || pos + need > this.#at + this.#bytes.length) this.#fill(pos);
    const reader = new BinaryReader(this.#bytes.subarray(pos - this.#at));
    const [field, wire] = reader.tag();
    let length = 0;
    if (wire === WireType.LengthDelimited) length = reader.uint32();
    else if (wire === WireType.StartGroup || wire === WireType.EndGroup) {
      throw new RangeError(`wire type ${wire} at byte ${pos} is not one ONNX files use`);
    } else reader.skip(wire);
    const start = pos + reader.pos;
    const end = start + length;
    if (end > this.#file.size) throw new RangeError(`a field at byte ${pos} ends after the file`);
    return { field, wire, start, end };
  }
}

/**
 * Parses only the nodes of the graph of an ONNX file opened for ranged
 * reads, as `decodeGraphNodes` does from the whole file's bytes (same
 * result, same errors), reading the nodes and skipping everything else
 * unread: the initializers' data, inputs, outputs, value infos.
 *
 * @param name The file, for errors.
 * @example
 * ```ts
 * import { localSource } from "../storage/local.ts";
 * import { readGraphNodes } from "./ranged_graph.ts";
 * const file = await localSource("tests/fixtures/llama-tiny").openRanges!("onnx/model.onnx");
 * const graph = readGraphNodes(file!, "onnx/model.onnx");
 * console.log(graph.node.length, graph.initializer.length); // n 0
 * ```
 */
export function readGraphNodes(file: RangeFile, name: string): GraphProto {
  const nodes: Uint8Array[] = [];
  try {
    const window = new Window(file);
    for (let pos = 0; pos < file.size;) {
      const model = window.head(pos);
      pos = model.end;
      if (model.field !== MODEL_GRAPH || model.wire !== WireType.LengthDelimited) continue;
      for (let entry = model.start; entry < model.end;) {
        const { field, wire, end } = window.head(entry);
        if (end > model.end) throw new RangeError(`a field of the graph at byte ${entry} ends after the graph`);
        // Each kept entry is the node's whole field (tag, length, message), as decodeGraphNodes keeps them.
        if (field === GRAPH_NODE && wire === WireType.LengthDelimited) nodes.push(window.bytes(entry, end - entry));
        entry = end;
      }
    }
  } catch (cause) {
    if (cause instanceof PeftEdgeError) throw cause; // the file changed since it was opened, or cannot be read
    throw new OnnxModelError(`not a valid ONNX ModelProto (${(cause as Error).message})`, { file: name, cause });
  }
  return graphFromNodeFields(nodes, name);
}

/** Where one initializer's left-out `raw_data` lies in the file. */
export interface LeftOutWeight {
  /** The initializer's index in the top-level graph's `initializer` list. */
  index: number;
  offset: number;
  length: number;
}

/** A model's bytes without its large inline weights, and where each left-out weight lies in the file. */
export interface ModelSkeleton {
  bytes: Uint8Array;
  weights: LeftOutWeight[];
}

/** A length-delimited field: tag, length, then the parts' bytes. */
function delimited(field: number, parts: readonly Uint8Array[]): Uint8Array {
  const writer = new BinaryWriter().tag(field, WireType.LengthDelimited).fork();
  for (const part of parts) writer.raw(part);
  return writer.join().finish();
}

/**
 * Reads an ONNX file opened for ranged reads as a ModelProto's bytes
 * without the `raw_data` of its top-level initializers of at least
 * `minBytes` bytes (every other field kept as it is), and where each of
 * those lies in the file: decoding the bytes gives the model the whole
 * file gives, those weights left empty. Read: the kept fields, and the
 * head (tag and length) of each skipped one.
 *
 * @param name The file, for errors.
 * @throws {OnnxModelError} when the file is not a well-formed protobuf (a field ending past its message or the file).
 * @example
 * ```ts
 * import { localSource } from "../storage/local.ts";
 * import { readModelSkeleton } from "./ranged_graph.ts";
 * const file = await localSource("tests/fixtures/llama-tiny").openRanges!("onnx/model.onnx");
 * const { bytes, weights } = readModelSkeleton(file!, "onnx/model.onnx", 4096);
 * console.log(bytes.length < file!.size, weights.length > 0); // true true
 * ```
 */
export function readModelSkeleton(file: RangeFile, name: string, minBytes: number): ModelSkeleton {
  const window = new Window(file);
  const weights: LeftOutWeight[] = [];
  let index = 0;
  /** The fields of the message in `start..end`, each read whole, unless `take` returns its own bytes for it. */
  const fields = (start: number, end: number, take: (head: FieldHead, at: number) => Uint8Array | undefined) => {
    const out: Uint8Array[] = [];
    for (let at = start; at < end;) {
      const head = window.head(at);
      if (head.end > end) throw new RangeError(`a field at byte ${at} ends after its message`);
      out.push(take(head, at) ?? window.bytes(at, head.end - at));
      at = head.end;
    }
    return out;
  };
  const tensor = (t: FieldHead): Uint8Array => {
    let raw: { offset: number; length: number } | undefined;
    const kept = fields(t.start, t.end, (f) => {
      if (f.field !== TENSOR_RAW_DATA || f.wire !== WireType.LengthDelimited) return;
      // A bytes field given twice is its last value: a later small one (kept inline) wins over a large one.
      raw = f.end - f.start < minBytes ? undefined : { offset: f.start, length: f.end - f.start };
      return raw && new Uint8Array(0);
    });
    if (raw) weights.push({ index, ...raw });
    return delimited(GRAPH_INITIALIZER, kept);
  };
  try {
    const parts = fields(0, file.size, (model) => {
      if (model.field !== MODEL_GRAPH || model.wire !== WireType.LengthDelimited) return;
      const graph = fields(model.start, model.end, (g) => {
        if (g.field !== GRAPH_INITIALIZER || g.wire !== WireType.LengthDelimited) return;
        // Small initializers are read whole; a large one's fields are read but its raw_data.
        const bytes = g.end - g.start < minBytes ? undefined : tensor(g);
        index++;
        return bytes;
      });
      return delimited(MODEL_GRAPH, graph);
    });
    const writer = new BinaryWriter();
    for (const part of parts) writer.raw(part);
    return { bytes: writer.finish(), weights };
  } catch (cause) {
    if (cause instanceof PeftEdgeError) throw cause; // the file changed since it was opened, or cannot be read
    throw new OnnxModelError(`not a valid ONNX ModelProto (${(cause as Error).message})`, { file: name, cause });
  }
}
