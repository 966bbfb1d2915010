/**
 * The node builder gradient rules write through: fresh names, constant
 * initializers and the nodes of the backward pass, kept apart from the
 * forward graph so the forward graph is never copied or edited.
 * @module
 */
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  create,
  type NodeProto,
  NodeProtoSchema,
  type TensorProto,
  TensorProto_DataType,
} from "../deps/onnx_proto.ts";
import { rawTensor } from "../onnx/graph_parts.ts";

/** An attribute: integer, `{ f }` float, integer list, or `{ s }` string. */
export type GradAttribute = number | { f: number } | number[] | { s: string };

/**
 * Collects the nodes and constants of a backward pass.
 *
 * @example
 * ```ts
 * import { GradGraph } from "./grad_graph.ts";
 * const g = new GradGraph(new Set(["x"]), "/grad", 17);
 * const two = g.scalar(2);
 * const y = g.op("Mul", ["x", two]);
 * console.log(g.nodes.length, y); // 1 "/grad/Mul"
 * ```
 */
export class GradGraph {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  readonly #taken: Set<string>;
  readonly #prefix: string;
  readonly #scalars = new Map<number, string>();
  /** Outputs of identical nodes made before (common subexpressions: one node per op, inputs and attributes). */
  readonly #made = new Map<string, string[]>();
  readonly #constants = new Map<string, string>();
  /** Zero pads made here: output -> the tensor padded and ONNX pads (begins then ends). */
  readonly #pads = new Map<string, { input: string; pads: number[] }>();
  /** Reshapes made here to static shapes: output -> its input and that input's shape. */
  readonly #reshapes = new Map<string, { input: string; from: number[] }>();
  /** Expand outputs made here: output -> the tensor expanded. */
  readonly #expanded = new Map<string, string>();

  /** The model's default-domain opset, which decides some ops' forms. */
  readonly opset: number;

  constructor(taken: Set<string>, prefix: string, opset = 17) {
    this.#taken = taken;
    this.#prefix = prefix;
    this.opset = opset;
  }

  /** `ReduceMean` over `axes`, keeping dims (axes an attribute before opset 18, an input from 18). */
  reduceMean(x: string, axes: readonly number[]): string {
    return this.opset >= 18
      ? this.op("ReduceMean", [x, this.ints(axes)], { keepdims: 1 })
      : this.op("ReduceMean", [x], { axes: [...axes], keepdims: 1 });
  }

  /** A fresh tensor name under this pass's prefix. */
  fresh(hint: string): string {
    const wanted = `${this.#prefix}/${hint}`;
    let name = wanted;
    for (let i = 1; this.#taken.has(name); i++) name = `${wanted}_${i}`;
    this.#taken.add(name);
    return name;
  }

  /** Adds a node with one output and returns that output's name. */
  op(opType: string, input: string[], attributes: Record<string, GradAttribute> = {}): string {
    return this.ops(opType, input, 1, attributes)[0];
  }

  /**
   * Adds a node with `outputs` outputs and returns their names; a node
   * identical to one made before (every op here is a pure function) is not
   * made again: its outputs are returned.
   */
  ops(opType: string, input: string[], outputs: number, attributes: Record<string, GradAttribute> = {}): string[] {
    const key = JSON.stringify([opType, input, outputs, attributes]);
    const made = this.#made.get(key);
    if (made) return made;
    const out = this.named(opType, input, Array.from({ length: outputs }, () => this.fresh(opType)), attributes);
    this.#made.set(key, out);
    if (opType === "Expand") this.#expanded.set(out[0], input[0]);
    return out;
  }

  /**
   * The tensor `x` was expanded from, when `x` is an `Expand` made here, else `x`:
   * an elementwise op whose other operand already has the full shape broadcasts it.
   */
  unexpanded(x: string): string {
    return this.#expanded.get(x) ?? x;
  }

  /** `x * value`, computed before the broadcast when `x` is an `Expand` made here (fewer elements). */
  scaled(x: string, value: number): string {
    if (value === 1) return x;
    const src = this.#expanded.get(x);
    if (src === undefined) return this.op("Mul", [x, this.scalar(value)]);
    const expand = this.nodes.find((n) => n.output[0] === x)!;
    return this.op("Expand", [this.op("Mul", [src, this.scalar(value)]), expand.input[1]]);
  }

  /** `x` zero-padded by ONNX `pads` (begins, then ends, per axis). */
  pad(x: string, pads: readonly number[]): string {
    const out = this.op("Pad", [x, this.ints(pads)], { mode: { s: "constant" } });
    this.#pads.set(out, { input: x, pads: [...pads] });
    return out;
  }

  /**
   * The sum of gradient contributions to a tensor of shape `dims`. Pads
   * made here that tile it along one axis (the halves of a rotate-half's
   * slices) are joined by one `Concat` instead of summed padded copies.
   */
  sum(parts: readonly string[], dims: readonly number[]): string {
    const rest = [...parts];
    const byAxis = new Map<number, { input: string; begin: number; end: number; part: string }[]>();
    for (const part of parts) {
      const pad = this.#pads.get(part);
      if (!pad) continue;
      const r = dims.length;
      const axes = dims.map((_, a) => a).filter((a) => pad.pads[a] !== 0 || pad.pads[r + a] !== 0);
      if (axes.length !== 1) continue;
      const a = axes[0];
      byAxis.set(a, [...(byAxis.get(a) ?? []), { input: pad.input, begin: pad.pads[a], end: pad.pads[r + a], part }]);
    }
    const joined: string[] = [];
    for (const [axis, pieces] of byAxis) {
      pieces.sort((p, q) => p.begin - q.begin);
      let at = 0;
      for (const p of pieces) at = p.begin === at ? dims[axis] - p.end : -1;
      if (at !== dims[axis] || pieces.length < 2) continue;
      joined.push(this.op("Concat", pieces.map((p) => p.input), { axis }));
      for (const p of pieces) rest.splice(rest.indexOf(p.part), 1);
    }
    return [...joined, ...rest].reduce((acc, p) => this.op("Add", [acc, p]));
  }

  /**
   * Drops the nodes (and constants) nothing needs: every node whose outputs
   * no kept node reads and that writes none of `outputs`.
   */
  prune(outputs: Iterable<string>): void {
    const live = new Set(outputs);
    const kept: NodeProto[] = [];
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const n = this.nodes[i];
      if (!n.output.some((o) => live.has(o))) continue;
      kept.push(n);
      for (const x of n.input) live.add(x);
    }
    this.nodes.splice(0, this.nodes.length, ...kept.reverse());
    const constants = this.initializers.filter((t) => live.has(t.name));
    this.initializers.splice(0, this.initializers.length, ...constants);
  }

  /** Adds a node writing the given output names (taken by the caller). */
  named(opType: string, input: string[], output: string[], attributes: Record<string, GradAttribute> = {}): string[] {
    const attribute = Object.entries(attributes).map(([name, v]) => {
      if (Array.isArray(v)) {
        return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INTS, ints: v.map(BigInt) });
      }
      if (typeof v === "number") {
        return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: BigInt(v) });
      }
      if ("s" in v) {
        return create(AttributeProtoSchema, {
          name,
          type: AttributeProto_AttributeType.STRING,
          s: new TextEncoder().encode(v.s),
        });
      }
      return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.FLOAT, f: v.f });
    });
    this.nodes.push(create(NodeProtoSchema, { opType, input, output, name: output[0], domain: "", attribute }));
    return output;
  }

  /** An int64 constant. */
  ints(values: readonly number[], dims: readonly number[] = [values.length]): string {
    const key = `i64:${dims.join("x")}:${values.join(",")}`;
    const known = this.#constants.get(key);
    if (known) return known;
    const name = this.fresh("const_i64");
    this.#constants.set(key, name);
    const bytes = new Uint8Array(new BigInt64Array(values.map(BigInt)).buffer);
    this.initializers.push(rawTensor(name, TensorProto_DataType.INT64, dims, bytes));
    return name;
  }

  /** A float32 constant of the given shape filled with `value` (a scalar when `dims` is empty). */
  floats(value: number, dims: readonly number[] = []): string {
    const name = this.fresh("const_f32");
    const n = dims.reduce((a, b) => a * b, 1);
    const bytes = new Uint8Array(new Float32Array(n).fill(value).buffer);
    this.initializers.push(rawTensor(name, TensorProto_DataType.FLOAT, dims, bytes));
    return name;
  }

  /** A float32 scalar constant, shared by every use of the same value. */
  scalar(value: number): string {
    let name = this.#scalars.get(value);
    if (!name) this.#scalars.set(value, name = this.floats(value));
    return name;
  }

  /** Zeros of a static shape, made at run time (no initializer as large as the tensor). */
  zeros(dims: readonly number[]): string {
    return this.op("ConstantOfShape", [this.ints(dims)], {});
  }

  /** `x` reshaped to a static shape (no node when it already has it). */
  reshape(x: string, from: readonly number[], to: readonly number[]): string {
    const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);
    if (same(from, to)) return x;
    // A reshape of a reshape made here reshapes the first one's input (one copy, not two).
    const earlier = this.#reshapes.get(x);
    if (earlier) return this.reshape(earlier.input, earlier.from, to);
    const out = this.op("Reshape", [x, this.ints(to)]);
    if (!to.includes(-1)) this.#reshapes.set(out, { input: x, from: [...from] });
    return out;
  }

  /**
   * Sums `dy` (shape `from`) down to `to` as broadcasting expanded it:
   * leading axes dropped, axes of size 1 summed.
   */
  sumTo(dy: string, from: readonly number[], to: readonly number[]): string {
    const padded = [...Array(from.length - to.length).fill(1), ...to];
    const axes = from.map((d, i) => (padded[i] === 1 && d !== 1 ? i : -1)).filter((i) => i >= 0);
    const summed = axes.length ? this.op("ReduceSum", [dy, this.ints(axes)], { keepdims: 1 }) : dy;
    const now = from.map((d, i) => (axes.includes(i) ? 1 : d));
    return this.reshape(summed, now, to);
  }
}
