/**
 * MoE expert stacks as LoRA targets (`target_parameters` on a 3-D parameter,
 * PEFT's `ParamWrapper` with `num_experts > 1`): finding the export's
 * initializer of the parameter's name, its layout, and the whole-stack
 * target merged mode patches (`WeightTarget.experts`).
 * @module
 */
import { UnsupportedError } from "../errors.ts";
import type { GraphProto } from "../deps/onnx_proto.ts";
import type { WeightIndex, WeightTarget } from "../onnx/weight_target.ts";

/**
 * A stack the export keeps: its initializer's name and dims.
 *
 * @example
 * ```ts
 * import type { ExpertStack } from "./expert_stacks.ts";
 * const stack: ExpertStack = { name: "model.layers.0.mlp.experts.down_proj", dims: [4, 16, 32] };
 * ```
 */
export interface ExpertStack {
  name: string;
  dims: number[];
}

/**
 * The 3-D initializers of the graph that some node reads (MoE expert stacks), found by parameter key: the
 * initializer named `key`, or the one whose name and `key` differ by a leading prefix.
 *
 * @example
 * ```ts
 * import { expertStacks } from "./expert_stacks.ts";
 * import type { GraphProto } from "../deps/onnx_proto.ts";
 * import type { WeightIndex } from "../onnx/weight_target.ts";
 * declare const graph: GraphProto, index: WeightIndex;
 * console.log(expertStacks(graph, index).find("model.layers.0.mlp.experts.down_proj")?.dims);
 * ```
 */
export function expertStacks(
  graph: GraphProto | undefined,
  index: WeightIndex,
): { find(key: string): ExpertStack | undefined } {
  const all = (graph?.initializer ?? []).filter((t) => t.dims.length === 3);
  return {
    find(key: string): ExpertStack | undefined {
      const hits = all.filter((t) => t.name === key || t.name.endsWith(`.${key}`) || key.endsWith(`.${t.name}`));
      const exact = hits.find((t) => t.name === key);
      const hit = exact ?? (hits.length === 1 ? hits[0] : undefined);
      if (!hit || index.consumers(hit.name).length === 0) return undefined;
      return { name: hit.name, dims: hit.dims.map(Number) };
    },
  };
}

/**
 * How a stack `[experts, d1, d2]` holds a 3-D LoRA (`lora_A` `[r·E, in]`, `lora_B` `[out, r·E]`): PEFT's default
 * `[experts, out, in]` ("out_in"), or `[experts, in, out]` ("in_out") for layers marked `is_transposed`;
 * undefined when neither fits (or both do: a square stack, whose marking the export does not keep).
 *
 * @example
 * ```ts
 * import { stackLayout } from "./expert_stacks.ts";
 * console.log(stackLayout([4, 16, 32], [8, 32], [16, 8], 2)); // "out_in"
 * ```
 */
export function stackLayout(
  dims: readonly number[],
  aShape: readonly number[],
  bShape: readonly number[],
  r: number,
): "out_in" | "in_out" | undefined {
  const [experts, d1, d2] = dims;
  if (aShape[0] !== r * experts || bShape[1] !== r * experts) return undefined;
  const outIn = bShape[0] === d1 && aShape[1] === d2;
  const inOut = bShape[0] === d2 && aShape[1] === d1;
  return outIn === inOut ? undefined : outIn ? "out_in" : "in_out";
}

/**
 * A whole expert stack as a target: every reader of the initializer reads it; features are one expert's.
 *
 * @throws {UnsupportedError} when the LoRA's shapes fit the stack in no single layout.
 * @example
 * ```ts
 * import { stackTarget } from "./expert_stacks.ts";
 * import type { GraphProto } from "../deps/onnx_proto.ts";
 * declare const graph: GraphProto;
 * const stack = { name: "model.layers.0.mlp.experts.down_proj", dims: [4, 16, 32] };
 * console.log(stackTarget("model.layers.0.mlp.experts.down_proj", stack, [8, 32], [16, 8], 2, graph).experts); // 4
 * ```
 */
export function stackTarget(
  key: string,
  stack: ExpertStack,
  aShape: readonly number[],
  bShape: readonly number[],
  r: number,
  graph: GraphProto,
): WeightTarget {
  const layout = stackLayout(stack.dims, aShape, bShape, r);
  if (!layout) {
    throw new UnsupportedError(
      `the LoRA of the 3-D parameter ${key} (lora_A [${aShape.join(", ")}], lora_B [${bShape.join(", ")}]) does ` +
        `not fit the export's ${stack.name} [${stack.dims.join(", ")}] in one layout`,
      { key },
    );
  }
  const readerIndex = graph.node.findIndex((n) => n.input.includes(stack.name));
  const reader = graph.node[readerIndex];
  return {
    module: key,
    kind: "linear",
    nodeName: reader.name,
    readerIndex,
    inputIndex: reader.input.indexOf(stack.name),
    initializer: stack.name,
    layout,
    inFeatures: aShape[1],
    outFeatures: bShape[0],
    experts: stack.dims[0],
  };
}
