/**
 * The nodes of an ONNX file's graph read through ranged reads: only the
 * nodes' bytes and the few bytes that say how long each other field is are
 * read, so a file with its weights inline (hundreds of MiB of `raw_data`)
 * costs a few MiB of reads to learn its structure.
 * @module
 */
import type { GraphProto } from "../deps/onnx_proto.ts";
import { OnnxModelError, PeftEdgeError } from "../errors.ts";
import type { RangeFile } from "../storage/file_source.ts";
import { decodeGraphNodes } from "./model_file.ts";

/** Field numbers and wire types of onnx.proto used here: `ModelProto.graph`, `GraphProto.node`. */
const MODEL_GRAPH = 7;
const GRAPH_NODE = 1;
const VARINT = 0;
const FIXED64 = 1;
const DELIMITED = 2;
const FIXED32 = 5;

/**
 * Bytes read ahead at a time: most nodes fit and follow one another; a skipped field (a weight) costs one window
 * for the tag and length after it.
 */
const WINDOW = 1 << 13;

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

  byte(pos: number): number {
    if (pos < this.#at || pos >= this.#at + this.#bytes.length) this.#fill(pos);
    return this.#bytes[pos - this.#at];
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

  /** A protobuf varint at `pos`: its value (exact below 2^53) and the position after it. */
  varint(pos: number): [number, number] {
    let value = 0;
    for (let i = 0; i < 10; i++) {
      const b = this.byte(pos + i);
      value += (b & 0x7f) * 2 ** (7 * i);
      if (b < 0x80) return [value, pos + i + 1];
    }
    throw new RangeError(`a varint at byte ${pos} is longer than 10 bytes`);
  }

  /** The position after the value of a field of wire type `wire` starting at `pos`. */
  skip(wire: number, pos: number): number {
    switch (wire) {
      case VARINT:
        return this.varint(pos)[1];
      case FIXED64:
        return pos + 8;
      case FIXED32:
        return pos + 4;
      case DELIMITED: {
        const [length, at] = this.varint(pos);
        return at + length;
      }
    }
    throw new RangeError(`wire type ${wire} at byte ${pos} is not one ONNX files use`);
  }
}

/** The bytes of a protobuf varint. */
function encodeVarint(value: number): number[] {
  const out: number[] = [];
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
  return out;
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
      const [tag, at] = window.varint(pos);
      const [field, wire] = [Math.floor(tag / 8), tag % 8];
      if (field !== MODEL_GRAPH || wire !== DELIMITED) {
        pos = window.skip(wire, at);
        if (pos > file.size) throw new RangeError(`a field at byte ${at} ends after the file`);
        continue;
      }
      const [length, start] = window.varint(at);
      const end = start + length;
      if (end > file.size) throw new RangeError(`the graph ends after the file (byte ${end})`);
      for (let entry = start; entry < end;) {
        const [tag, at] = window.varint(entry);
        const next = window.skip(tag % 8, at);
        if (next > end) throw new RangeError(`a field of the graph at byte ${entry} ends after the graph`);
        // Each kept entry is the node's whole field (tag, length, message), as decodeGraphNodes keeps them.
        if (Math.floor(tag / 8) === GRAPH_NODE && tag % 8 === DELIMITED) nodes.push(window.bytes(entry, next - entry));
        entry = next;
      }
      pos = end;
    }
  } catch (cause) {
    if (cause instanceof PeftEdgeError) throw cause; // the file changed since it was opened, or cannot be read
    throw new OnnxModelError(`not a valid ONNX ModelProto (${(cause as Error).message})`, { file: name, cause });
  }
  // The nodes as a model of one graph holding only them: decodeGraphNodes parses and checks it as it does a file.
  const length = nodes.reduce((n, b) => n + b.length, 0);
  const head = [(MODEL_GRAPH << 3) | DELIMITED, ...encodeVarint(length)];
  const model = new Uint8Array(head.length + length);
  model.set(head);
  nodes.reduce((offset, b) => (model.set(b, offset), offset + b.length), head.length);
  return decodeGraphNodes(model, name);
}
