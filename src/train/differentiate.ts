/**
 * Reverse-mode differentiation of an ONNX graph: from a scalar output back
 * to chosen inputs (the trained tensors). Only nodes on a path from those
 * inputs to the loss are differentiated; shape arithmetic, masks and other
 * integer subgraphs stay as they are. An op on that path without a rule
 * is an error naming it.
 * @module
 */
import type { NodeProto } from "../deps/onnx_proto.ts";
import { UnsupportedError } from "../errors.ts";
import type { GradGraph } from "./grad_graph.ts";
import { endsGradient, GRADIENT_RULES, integerInputs } from "./grad_rules.ts";

/**
 * The part of a graph gradients flow through, and what must be probed to differentiate it.
 *
 * @example
 * ```ts
 * import { gradientRegion } from "./differentiate.ts";
 * const region = gradientRegion([], ["w"]);
 * console.log(region.reach.has("w")); // true
 * ```
 */
export interface GradientRegion {
  /** Tensors that depend on a trained tensor through differentiable ops. */
  reach: ReadonlySet<string>;
  /** Tensors whose static shapes the rules need. */
  shapes: ReadonlySet<string>;
  /** Small integer tensors whose values the rules need. */
  ints: ReadonlySet<string>;
}

/**
 * Finds the tensors that depend differentiably on `params`, in a
 * topologically sorted node list.
 *
 * @example
 * ```ts
 * import { gradientRegion } from "./differentiate.ts";
 * import { makeNode } from "../onnx/graph_parts.ts";
 * const r = gradientRegion([makeNode("Mul", ["x", "w"], ["y"], "m")], ["w"]);
 * console.log([...r.reach], [...r.shapes]); // ["w", "y"] ["x", "w", "y"]
 * ```
 */
export function gradientRegion(nodes: readonly NodeProto[], params: readonly string[]): GradientRegion {
  const reach = new Set(params);
  const shapes = new Set<string>();
  const ints = new Set<string>();
  for (const node of nodes) {
    if (endsGradient(node) || !node.input.some((i) => reach.has(i))) continue;
    for (const o of node.output) if (o) reach.add(o);
    for (const t of [...node.input, ...node.output]) if (t) shapes.add(t);
    for (const i of integerInputs(node)) if (node.input[i]) ints.add(node.input[i]);
  }
  return { reach, shapes, ints };
}

/**
 * Static facts about the forward pass for one batch shape.
 *
 * @example
 * ```ts
 * import type { Probed } from "./differentiate.ts";
 * const probed: Probed = { shapes: new Map([["x", [2, 3]]]), ints: new Map() };
 * ```
 */
export interface Probed {
  shapes: ReadonlyMap<string, number[]>;
  ints: ReadonlyMap<string, number[]>;
  /** One-element float constants of the graph (initializers, `Constant` nodes), which some rules specialise on. */
  constants?: ReadonlyMap<string, number>;
}

/**
 * Appends the backward pass of `nodes` to `g` and returns the gradient of
 * `loss` (a scalar) with respect to each param, by param name.
 *
 * @throws {UnsupportedError} naming the op and node when a node on the gradient path has no rule.
 * @example
 * ```ts
 * import { differentiate, gradientRegion } from "./differentiate.ts";
 * import { GradGraph } from "./grad_graph.ts";
 * import { makeNode } from "../onnx/graph_parts.ts";
 * const nodes = [makeNode("Mul", ["x", "w"], ["y"], "m"), makeNode("ReduceSum", ["y"], ["loss"], "s", { keepdims: 0 })];
 * const region = gradientRegion(nodes, ["w"]);
 * const shapes = new Map([["x", [3]], ["w", [3]], ["y", [3]], ["loss", []]]);
 * const g = new GradGraph(new Set(["x", "w", "y", "loss"]), "/grad", 17);
 * const grads = differentiate(nodes, region, "loss", ["w"], { shapes, ints: new Map() }, g);
 * console.log(grads.get("w")); // a tensor name in g's nodes
 * ```
 */
export function differentiate(
  nodes: readonly NodeProto[],
  region: GradientRegion,
  loss: string,
  params: readonly string[],
  probed: Probed,
  g: GradGraph,
): Map<string, string> {
  const contributions = new Map<string, string[]>([[loss, [g.scalar(1)]]]);
  const total = (name: string): string | undefined => {
    const parts = contributions.get(name);
    if (!parts || parts.length === 0) return undefined;
    const sum = parts.length === 1 ? parts[0] : g.sum(parts, shape(name));
    contributions.set(name, [sum]);
    return sum;
  };
  const shape = (name: string) => {
    const s = probed.shapes.get(name);
    if (!s) throw new UnsupportedError(`gradient: no probed shape for tensor ${name}`);
    return s;
  };
  const ints = (name: string) => {
    const v = probed.ints.get(name);
    if (!v) throw new UnsupportedError(`gradient: no probed value for integer tensor ${name}`);
    return v;
  };
  for (let n = nodes.length - 1; n >= 0; n--) {
    const node = nodes[n];
    if (!node.output.some((o) => contributions.has(o))) continue;
    const needs = node.input.map((i) => i !== "" && region.reach.has(i));
    if (!needs.some(Boolean) || endsGradient(node)) continue;
    const rule = node.domain === "" || node.domain === "ai.onnx" ? GRADIENT_RULES.get(node.opType) : undefined;
    if (!rule) {
      throw new UnsupportedError(
        `no gradient rule for ONNX op ${node.domain ? node.domain + "." : ""}${node.opType} (node ${node.name}), ` +
          "which lies between the trained tensors and the loss",
      );
    }
    const dy = node.output.map(total);
    const dx = rule({ node, g, shape, ints, dy, needs, constant: (name) => probed.constants?.get(name) });
    node.input.forEach((input, i) => {
      const d = dx[i];
      if (!needs[i] || !d) return;
      const list = contributions.get(input);
      if (list) list.push(d);
      else contributions.set(input, [d]);
    });
  }
  return new Map(params.map((p) => [p, total(p) ?? g.zeros(shape(p))]));
}
