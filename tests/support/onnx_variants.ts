/**
 * Rewrites of the fixture models into the other layouts exporters produce,
 * so the weight mapping is tested on each: `[out, in]` weights behind a
 * Transpose with their parameter names, Gemm with `transB=1`, a tied
 * embedding/lm_head, and initializers stored as external data.
 * @module
 */
import { readFile } from "node:fs/promises";
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  create,
  type ModelProto,
  NodeProtoSchema,
  type TensorProto,
  TensorProto_DataLocation,
  TensorProtoSchema,
} from "../../src/deps/onnx_proto.ts";
import { decodeModel, encodeModel } from "../../src/onnx/model_file.ts";
import { fixture } from "./fixtures.ts";

/** Reads a fixture base's ONNX model. */
export async function fixtureModel(base: string): Promise<ModelProto> {
  const file = `${fixture(base)}/onnx/model.onnx`;
  return decodeModel(new Uint8Array(await readFile(file)), file);
}

function floats(t: TensorProto): Float32Array {
  const raw = t.rawData.slice();
  return new Float32Array(raw.buffer, 0, raw.length / 4);
}

function tensor(name: string, dims: number[], values: Float32Array): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dims: dims.map(BigInt),
    dataType: 1,
    rawData: new Uint8Array(
      values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength) as ArrayBuffer,
    ),
  });
}

function transposed(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c];
  return out;
}

/**
 * Every MatMul weight becomes `[out, in]` under its PyTorch name
 * (`model.layers.0.self_attn.q_proj.weight`) read through a Transpose, and the
 * nodes get generic names, as newer exporters produce.
 */
export function transposeWeights(model: ModelProto): ModelProto {
  const graph = model.graph!;
  const inits = new Map(graph.initializer.map((t) => [t.name, t]));
  const nodes = [];
  const initializer = [...graph.initializer];
  let n = 0;
  for (const node of graph.node) {
    const w = node.opType === "MatMul" ? inits.get(node.input[1]) : undefined;
    if (!w || w.dims.length !== 2) {
      nodes.push(node);
      continue;
    }
    const [inF, outF] = w.dims.map(Number);
    const module = node.name.split("/").filter(Boolean).slice(0, -1).join(".");
    const name = `${module}.weight`;
    initializer.splice(initializer.indexOf(w), 1, tensor(name, [outF, inF], transposed(floats(w), inF, outF)));
    const t = `${name}_transposed`;
    nodes.push(create(NodeProtoSchema, {
      name: `node_Transpose_${n}`,
      opType: "Transpose",
      input: [name],
      output: [t],
      attribute: [
        create(AttributeProtoSchema, { name: "perm", type: AttributeProto_AttributeType.INTS, ints: [1n, 0n] }),
      ],
    }));
    nodes.push({ ...node, name: `node_MatMul_${n++}`, input: [node.input[0], t] });
  }
  return { ...model, graph: { ...graph, node: nodes, initializer } };
}

/** GPT-2's `Gemm(transB=0)` weights become `[out, in]` with `transB=1`. */
export function gemmTransB(model: ModelProto): ModelProto {
  const graph = model.graph!;
  const inits = new Map(graph.initializer.map((t) => [t.name, t]));
  const replaced = new Map<string, TensorProto>();
  const node = graph.node.map((node) => {
    if (node.opType !== "Gemm") return node;
    const w = inits.get(node.input[1])!;
    const [inF, outF] = w.dims.map(Number);
    replaced.set(w.name, tensor(w.name, [outF, inF], transposed(floats(w), inF, outF)));
    const attribute = node.attribute.filter((a) => a.name !== "transB");
    attribute.push(create(AttributeProtoSchema, { name: "transB", type: AttributeProto_AttributeType.INT, i: 1n }));
    return { ...node, attribute };
  });
  const initializer = graph.initializer.map((t) => replaced.get(t.name) ?? t);
  return { ...model, graph: { ...graph, node, initializer } };
}

/**
 * llama-tiny with `lm_head` tied to `embed_tokens`: the lm_head MatMul reads
 * `Transpose(model.embed_tokens.weight)`. `untied: true` gives the same model
 * with an explicit copy instead (the reference for the tied one).
 */
export function tieEmbeddings(model: ModelProto, untied = false): ModelProto {
  const graph = model.graph!;
  const embed = graph.initializer.find((t) => t.name === "model.embed_tokens.weight")!;
  const lmHead = graph.node.find((n) => n.name === "/lm_head/MatMul")!;
  const oldWeight = lmHead.input[1];
  const [vocab, hidden] = embed.dims.map(Number);
  const copy = tensor("lm_head.explicit_copy", [hidden, vocab], transposed(floats(embed), vocab, hidden));
  const transpose = create(NodeProtoSchema, {
    name: "/lm_head/Transpose",
    opType: "Transpose",
    input: [embed.name],
    output: ["/lm_head/tied_weight"],
    attribute: [
      create(AttributeProtoSchema, { name: "perm", type: AttributeProto_AttributeType.INTS, ints: [1n, 0n] }),
    ],
  });
  const node = graph.node.flatMap((n) => {
    if (n !== lmHead) return [n];
    const head = { ...n, input: [n.input[0], untied ? copy.name : transpose.output[0]] };
    return untied ? [head] : [transpose, head];
  });
  const initializer = graph.initializer.filter((t) => t.name !== oldWeight).concat(untied ? [copy] : []);
  return { ...model, graph: { ...graph, node, initializer } };
}

/** Moves every initializer of 1 KiB or more into one external data file. */
export function toExternalData(model: ModelProto, location: string): { model: ModelProto; data: Uint8Array } {
  const chunks: Uint8Array[] = [];
  let offset = 0;
  const initializer = model.graph!.initializer.map((t) => {
    if (t.rawData.length < 1024) return t;
    const entry = (key: string, value: string) => ({ $typeName: "onnx.StringStringEntryProto" as const, key, value });
    const moved = {
      ...t,
      rawData: new Uint8Array(),
      dataLocation: TensorProto_DataLocation.EXTERNAL,
      externalData: [
        entry("location", location),
        entry("offset", String(offset)),
        entry("length", String(t.rawData.length)),
      ],
    };
    chunks.push(t.rawData);
    offset += t.rawData.length;
    return moved;
  });
  const data = new Uint8Array(offset);
  let at = 0;
  for (const c of chunks) {
    data.set(c, at);
    at += c.length;
  }
  return { model: { ...model, graph: { ...model.graph!, initializer } }, data };
}

export { encodeModel };
