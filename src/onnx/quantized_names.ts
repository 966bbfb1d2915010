/**
 * How onnxruntime's quantizers name what they put in place of a node, as
 * their source (`onnxruntime/python/tools/quantization`) does it:
 *
 * - `MatMulNBitsQuantizer` (`matmul_nbits_quantizer.py`, QOperator format):
 *   MatMul `n` reading constant `w` becomes `com.microsoft.MatMulNBits`
 *   `n_Q<bits>` reading the same activation, `w_Q<bits>`, `w_scales` (and
 *   `w_zero_points`), writing the MatMul's output (or `<out>_pre_reshape`,
 *   reshaped to `<out>`, when B had more than two dims); with Gather in
 *   `op_types_to_quantize`, Gather `n` of `w` becomes `GatherBlockQuantized`
 *   `n_Q4` of `w_Q4` (always `_Q4`, whatever the bits) and the same indices.
 * - `quantize_dynamic` (`operators/matmul.py`, IntegerOps): MatMul `n`
 *   becomes `MatMulInteger` `n_quant` reading `<x>_quantized` (the
 *   activation quantized by `<x>_QuantizeLinear`) and `w_quantized`
 *   (`TENSOR_NAME_QUANT_SUFFIX`), writing `<out>_output_quantized`, which a
 *   Cast and a Mul bring back to `<out>`.
 *
 * The new nodes carry no `metadata_props`, so a dynamo export's module
 * paths (kept only there) are lost; these rules lead back to the node that
 * was replaced, in the unquantized graph.
 * @module
 */
import type { NodeProto } from "../deps/onnx_proto.ts";
import { intAttribute } from "./graph_parts.ts";

/**
 * The node a quantizer replaced, as the unquantized graph names it.
 *
 * @example
 * ```ts
 * import type { QuantizedOrigin } from "./quantized_names.ts";
 * const q: QuantizedOrigin = { node: "node_linear_3", opType: "MatMul", inputs: ["view_5", "val_238"], outputs: ["linear_3"] };
 * ```
 */
export interface QuantizedOrigin {
  /** The replaced node's name. */
  node: string;
  /** Its op (default domain). */
  opType: "MatMul" | "Gather";
  /** Its two inputs: MatMul `[activation, weight]`, Gather `[weight, indices]`. */
  inputs: [string, string];
  /** Its output: one of these (a name ending `_pre_reshape` may be the quantizer's or the original). */
  outputs: string[];
}

/** `name` without `suffix`, or undefined when it does not end with it (or is only the suffix). */
function strip(name: string, suffix: string): string | undefined {
  return name.length > suffix.length && name.endsWith(suffix) ? name.slice(0, -suffix.length) : undefined;
}

function origin(
  node: string | undefined,
  opType: QuantizedOrigin["opType"],
  inputs: Array<string | undefined>,
  outputs: Array<string | undefined>,
): QuantizedOrigin | undefined {
  const [a, b] = inputs;
  const names = outputs.filter((o): o is string => o !== undefined);
  if (node === undefined || a === undefined || b === undefined || names.length === 0) return undefined;
  return { node, opType, inputs: [a, b], outputs: names };
}

/**
 * The node an onnxruntime quantizer replaced with `node`, by the quantizers'
 * naming rules, or undefined when `node` is not one such replacement (or an
 * unnamed one: the quantizers give no name to the replacement of an unnamed
 * node).
 *
 * @example
 * ```ts
 * import { makeNode } from "./graph_parts.ts";
 * import { quantizedOrigin } from "./quantized_names.ts";
 * const q4 = makeNode("MatMulNBits", ["view_5", "val_238_Q4", "val_238_scales"], ["linear_3"], "node_linear_3_Q4", {
 *   bits: 4,
 * }, "com.microsoft");
 * quantizedOrigin(q4)?.node; // "node_linear_3"
 * ```
 */
export function quantizedOrigin(node: NodeProto): QuantizedOrigin | undefined {
  const domain = node.domain ?? "";
  const [first = "", second = ""] = node.input;
  const out = node.output[0] ?? "";
  if (node.opType === "MatMulNBits" && domain === "com.microsoft") {
    const q = `_Q${intAttribute(node, "bits", 4)}`;
    return origin(strip(node.name, q), "MatMul", [first, strip(second, q)], [out, strip(out, "_pre_reshape")]);
  }
  if (node.opType === "GatherBlockQuantized" && domain === "com.microsoft") {
    return origin(strip(node.name, "_Q4"), "Gather", [strip(first, "_Q4"), second], [out]);
  }
  if (node.opType === "MatMulInteger" && domain === "") {
    return origin(
      strip(node.name, "_quant"),
      "MatMul",
      [strip(first, "_quantized"), strip(second, "_quantized")],
      [strip(out, "_output_quantized")],
    );
  }
  return undefined;
}
