/**
 * Small builders for the ONNX parts graph rewrites add: nodes with
 * attributes, typed graph inputs with symbolic dims, raw-data initializers,
 * and fresh tensor names that cannot collide with the graph's own.
 * @module
 */
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  create,
  type GraphProto,
  type NodeProto,
  NodeProtoSchema,
  type TensorProto,
  TensorProto_DataLocation,
  TensorProto_DataType,
  TensorProtoSchema,
  type ValueInfoProto,
  ValueInfoProtoSchema,
} from "../deps/onnx_proto.ts";

/**
 * An attribute value: an integer, a float (`{ f }`) or a list of integers.
 *
 * @example
 * ```ts
 * import type { AttributeValue } from "./graph_parts.ts";
 * const attrs: Record<string, AttributeValue> = { axis: 0, alpha: { f: 1 }, perm: [1, 0] };
 * ```
 */
export type AttributeValue = number | { f: number } | number[];

/**
 * Builds a node. Integers become INT attributes, `{ f }` FLOAT, arrays INTS.
 *
 * @example
 * ```ts
 * import { makeNode } from "./graph_parts.ts";
 * const t = makeNode("Transpose", ["A"], ["At"], "/lora/Transpose", { perm: [1, 0] });
 * console.log(t.attribute[0].name); // "perm"
 * ```
 */
export function makeNode(
  opType: string,
  input: string[],
  output: string[],
  name: string,
  attributes: Record<string, AttributeValue> = {},
  domain = "",
): NodeProto {
  const attribute = Object.entries(attributes).map(([key, value]) => {
    if (Array.isArray(value)) {
      return create(AttributeProtoSchema, {
        name: key,
        type: AttributeProto_AttributeType.INTS,
        ints: value.map(BigInt),
      });
    }
    if (typeof value === "object") {
      return create(AttributeProtoSchema, { name: key, type: AttributeProto_AttributeType.FLOAT, f: value.f });
    }
    return create(AttributeProtoSchema, { name: key, type: AttributeProto_AttributeType.INT, i: BigInt(value) });
  });
  return create(NodeProtoSchema, { opType, input, output, name, domain, attribute });
}

/**
 * A tensor-typed graph input or output; string dims are symbolic (`dim_param`).
 *
 * @example
 * ```ts
 * import { tensorValueInfo } from "./graph_parts.ts";
 * const a = tensorValueInfo("lora.q.A", 1, ["lora.q.rank", 64]); // float32 [r, 64]
 * ```
 */
export function tensorValueInfo(name: string, elemType: number, dims: ReadonlyArray<number | string>): ValueInfoProto {
  const dim = dims.map((d) => ({
    value: typeof d === "string"
      ? { case: "dimParam" as const, value: d }
      : { case: "dimValue" as const, value: BigInt(d) },
  }));
  return create(ValueInfoProtoSchema, {
    name,
    type: { value: { case: "tensorType", value: { elemType, shape: { dim } } } },
  });
}

/**
 * An initializer holding `bytes` (little-endian) inline as raw data.
 *
 * @example
 * ```ts
 * import { rawTensor } from "./graph_parts.ts";
 * const zp = rawTensor("w_zero_point", 3, [4], new Uint8Array(4)); // int8 zeros
 * ```
 */
export function rawTensor(name: string, dataType: number, dims: readonly number[], bytes: Uint8Array): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dataType,
    dims: dims.map(BigInt),
    rawData: bytes as Uint8Array<ArrayBuffer>,
    dataLocation: TensorProto_DataLocation.DEFAULT,
  });
}

/**
 * A `Constant` node holding an int64 tensor (shapes, split sizes, axes).
 *
 * @example
 * ```ts
 * import { int64Constant } from "./graph_parts.ts";
 * const axes = int64Constant([0], [1], "axes_0", "peft_edge::axes_0");
 * ```
 */
export function int64Constant(
  values: readonly number[],
  dims: readonly number[],
  output: string,
  name: string,
): NodeProto {
  const bytes = new Uint8Array(BigInt64Array.from(values, BigInt).buffer);
  const node = makeNode("Constant", [], [output], name);
  node.attribute.push(create(AttributeProtoSchema, {
    name: "value",
    type: AttributeProto_AttributeType.TENSOR,
    t: rawTensor(output, TensorProto_DataType.INT64, dims, bytes),
  }));
  return node;
}

/**
 * Every tensor name a graph uses (inputs, outputs, initializers, node outputs), its subgraphs' included.
 *
 * @example
 * ```ts
 * import { usedNames } from "./graph_parts.ts";
 * import type { GraphProto } from "../deps/onnx_proto.ts";
 * declare const graph: GraphProto;
 * console.log(usedNames(graph).has("logits")); // true for a causal LM export
 * ```
 */
export function usedNames(graph: GraphProto, names = new Set<string>()): Set<string> {
  for (const v of graph.input) names.add(v.name);
  for (const v of graph.output) names.add(v.name);
  for (const t of graph.initializer) names.add(t.name);
  for (const n of graph.node) {
    for (const o of n.output) names.add(o);
    // Subgraphs (If/Loop bodies) share the model's name space with the outer graph.
    for (const a of n.attribute) if (a.g) usedNames(a.g, names);
  }
  return names;
}

/**
 * Returns a function giving fresh names: the wanted name if free, else the
 * wanted name with the first free `_<n>` suffix. Names it gives are taken.
 *
 * @example
 * ```ts
 * import { nameAllocator } from "./graph_parts.ts";
 * const fresh = nameAllocator(new Set(["x"]));
 * console.log(fresh("x"), fresh("x"), fresh("y")); // "x_1" "x_2" "y"
 * ```
 */
export function nameAllocator(taken: Set<string>): (wanted: string) => string {
  return (wanted) => {
    let name = wanted;
    for (let i = 1; taken.has(name); i++) name = `${wanted}_${i}`;
    taken.add(name);
    return name;
  };
}

/**
 * An integer attribute of a node, or `fallback` when absent.
 *
 * @example
 * ```ts
 * import { intAttribute } from "./graph_parts.ts";
 * import type { NodeProto } from "../deps/onnx_proto.ts";
 * declare const gemm: NodeProto;
 * const transB = intAttribute(gemm, "transB", 0);
 * console.log(transB === 1);
 * ```
 */
export function intAttribute(node: NodeProto, name: string, fallback: number): number {
  const attr = node.attribute.find((a) => a.name === name);
  return attr ? Number(attr.i) : fallback;
}

/**
 * A float attribute of a node, or `fallback` when absent.
 *
 * @example
 * ```ts
 * import { floatAttribute } from "./graph_parts.ts";
 * import type { NodeProto } from "../deps/onnx_proto.ts";
 * declare const gemm: NodeProto;
 * console.log(floatAttribute(gemm, "alpha", 1));
 * ```
 */
export function floatAttribute(node: NodeProto, name: string, fallback: number): number {
  const attr = node.attribute.find((a) => a.name === name);
  return attr ? attr.f : fallback;
}
