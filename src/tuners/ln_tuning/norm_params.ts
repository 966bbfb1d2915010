/**
 * Where a norm's parameter (`model.norm.weight`) lives in an ONNX graph:
 * an initializer of that name, or (TorchScript exports deduplicate equal
 * initializers, e.g. every RMSNorm weight of ones) an `Identity` of that
 * output name reading a shared initializer. The node input given here is
 * the one to rewire so only this module's parameter changes.
 * @module
 */
import type { GraphProto } from "../../deps/onnx_proto.ts";
import { ModuleNotInExportError } from "../../lora/plan.ts";
import type { InitializerUse } from "../../onnx/weight_target.ts";
import { UnsupportedError } from "../../errors.ts";

/**
 * The node input reading `name` (a parameter's full name), or `undefined`
 * when the graph has no tensor of that name.
 *
 * @example
 * ```ts
 * import { normParamUse } from "./norm_params.ts";
 * // normParamUse(base.onnx.graph!, "model.norm.weight", "model.norm", "onnx/model.onnx");
 * ```
 */
export function normParamUse(
  graph: GraphProto,
  name: string,
  module: string,
  file: string,
): InitializerUse | undefined {
  const initializers = new Set(graph.initializer.map((t) => t.name));
  const identity = graph.node.findIndex((n) =>
    n.opType === "Identity" && (n.domain ?? "") === "" && n.output[0] === name && initializers.has(n.input[0])
  );
  if (identity >= 0) return { initializer: graph.node[identity].input[0], readerIndex: identity, inputIndex: 0 };
  if (!initializers.has(name)) return undefined;
  const readers: InitializerUse[] = [];
  graph.node.forEach((n, readerIndex) => {
    if (n.opType === "Identity") return; // other modules' aliases of a deduplicated initializer
    n.input.forEach((input, inputIndex) => {
      if (input === name) readers.push({ initializer: name, readerIndex, inputIndex });
    });
  });
  if (readers.length !== 1) {
    if (readers.length === 0) throw new ModuleNotInExportError(module, file, `no node reads ${name}`);
    throw new UnsupportedError(`${name} is read by ${readers.length} nodes; it cannot be replaced for one module`, {
      key: module,
    });
  }
  return readers[0];
}
