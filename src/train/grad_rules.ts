/**
 * Per-op gradient rules for reverse-mode differentiation of ONNX graphs
 * (opset 13-17 semantics). Each rule receives the gradients of a node's
 * outputs and returns those of the inputs that need one, written as ONNX
 * nodes. Shapes are static (probed for the batch shape being trained), so
 * broadcasting, slicing and reductions are undone with constant axes.
 * Formulas follow PyTorch's derivatives.yaml and onnxruntime's training
 * gradient builders.
 * @module
 */
import type { NodeProto } from "../deps/onnx_proto.ts";
import { TensorProto_DataType } from "../deps/onnx_proto.ts";
import { UnsupportedError } from "../errors.ts";
import type { GradGraph } from "./grad_graph.ts";

/**
 * What a rule sees of its node.
 *
 * @example
 * ```ts
 * import type { RuleContext } from "./grad_rules.ts";
 * const outputShape = (c: RuleContext) => c.shape(c.node.output[0]);
 * ```
 */
export interface RuleContext {
  node: NodeProto;
  g: GradGraph;
  /** Static shape of a tensor of the forward graph. */
  shape(name: string): number[];
  /** Probed values of a small integer input (Slice bounds, axes, repeats). */
  ints(name: string): number[];
  /** The value of a float constant of the forward graph (an initializer or `Constant` of one element), if it is one. */
  constant?(name: string): number | undefined;
  /** Gradient of each output (undefined: the loss does not depend on it). */
  dy: readonly (string | undefined)[];
  /** Which inputs need a gradient. */
  needs: readonly boolean[];
}

/**
 * A gradient rule: the gradient tensor name of each input (undefined where not needed).
 *
 * @example
 * ```ts
 * import type { GradientRule } from "./grad_rules.ts";
 * const identity: GradientRule = (c) => [c.dy[0]];
 * ```
 */
export type GradientRule = (c: RuleContext) => (string | undefined)[];

function attr(node: NodeProto, name: string) {
  return node.attribute.find((a) => a.name === name);
}
function attrInt(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a ? Number(a.i) : fallback;
}
function attrInts(node: NodeProto, name: string): number[] | undefined {
  const a = attr(node, name);
  return a ? a.ints.map(Number) : undefined;
}
function attrFloat(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a ? a.f : fallback;
}
const norm = (axis: number, rank: number) => (axis < 0 ? axis + rank : axis);
const unsupported = (c: RuleContext, why: string) =>
  new UnsupportedError(`cannot differentiate ${c.node.opType} node ${c.node.name}: ${why}`);

/** dy of output 0, or zeros of its shape when only another output is used. */
function dy0(c: RuleContext): string {
  return c.dy[0] ?? c.g.zeros(c.shape(c.node.output[0]));
}

const x = (c: RuleContext, i: number) => c.node.input[i];
const y = (c: RuleContext, i = 0) => c.node.output[i];

/** Binary elementwise ops: gradients summed back over broadcast axes. */
function binary(
  da: (c: RuleContext, d: string) => string,
  db: (c: RuleContext, d: string) => string,
): GradientRule {
  return (c) => {
    const d = dy0(c);
    const sy = c.shape(y(c));
    return [
      c.needs[0] ? c.g.sumTo(da(c, d), sy, c.shape(x(c, 0))) : undefined,
      c.needs[1] ? c.g.sumTo(db(c, d), sy, c.shape(x(c, 1))) : undefined,
    ];
  };
}

/**
 * `d` for an elementwise product with input `other`: the tensor it was
 * expanded from when `other` has the output's full shape (broadcasting
 * restores it, and the product reads fewer elements).
 */
function full(c: RuleContext, d: string, other: number): string {
  const [so, sy] = [c.shape(x(c, other)), c.shape(y(c))];
  return so.length === sy.length && so.every((v, i) => v === sy[i]) ? c.g.unexpanded(d) : d;
}

/** Elementwise unary ops: `dx = dy * f'(x, y)`. */
function unary(derivative: (c: RuleContext) => string): GradientRule {
  return (c) => [c.g.op("Mul", [dy0(c), derivative(c)])];
}

/** Swaps the last two axes. */
function swapLast(g: GradGraph, t: string, rank: number): string {
  const perm = [...Array(rank).keys()];
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
  return g.op("Transpose", [t], { perm });
}

const matMul: GradientRule = (c) => {
  const { g } = c;
  const [sa, sb, sy] = [c.shape(x(c, 0)), c.shape(x(c, 1)), c.shape(y(c))];
  if (sa.length < 2 || sb.length < 2) throw unsupported(c, "1-D operands");
  const d = dy0(c);
  const out: (string | undefined)[] = [undefined, undefined];
  if (c.needs[0]) {
    const full = g.op("MatMul", [d, swapLast(g, x(c, 1), sb.length)]);
    out[0] = g.sumTo(full, [...sy.slice(0, -1), sa[sa.length - 1]], sa);
  }
  if (c.needs[1]) {
    const [k, n] = [sa[sa.length - 1], sy[sy.length - 1]];
    const lead = sy.slice(0, -2).reduce((p, v) => p * v, 1);
    const rows = lead * sy[sy.length - 2];
    if (sb.length === 2 && sa.length > 2 && lead * k * n < rows * (k + n)) {
      // A weight shared by every row with a small side (a LoRA factor): per-batch products summed, which reads the
      // activations where they are instead of copying both into [rows, K] and [rows, N].
      out[1] = g.sumTo(g.op("MatMul", [swapLast(g, x(c, 0), sa.length), d]), [...sy.slice(0, -2), k, n], sb);
    } else if (sb.length === 2) {
      // A weight shared by every row: one [K, rows] @ [rows, N] product instead of a batched one.
      const a2 = g.reshape(x(c, 0), sa, [-1, k]);
      const d2 = g.reshape(d, sy, [-1, n]);
      out[1] = g.op("MatMul", [g.op("Transpose", [a2], { perm: [1, 0] }), d2]);
    } else {
      const full = g.op("MatMul", [swapLast(g, x(c, 0), sa.length), d]);
      out[1] = g.sumTo(full, [...sy.slice(0, -2), k, n], sb);
    }
  }
  return out;
};

const gemm: GradientRule = (c) => {
  const { g, node } = c;
  const [ta, tb] = [attrInt(node, "transA", 0), attrInt(node, "transB", 0)];
  const alpha = { f: attrFloat(node, "alpha", 1) };
  const beta = attrFloat(node, "beta", 1);
  const d = dy0(c);
  const [a, b] = [x(c, 0), x(c, 1)];
  const out: (string | undefined)[] = [undefined, undefined, undefined];
  if (c.needs[0]) {
    out[0] = ta === 0
      ? g.op("Gemm", [d, b], { transB: tb ? 0 : 1, alpha })
      : g.op("Gemm", [b, d], { transA: tb ? 1 : 0, transB: 1, alpha });
  }
  if (c.needs[1]) {
    out[1] = tb === 0
      ? g.op("Gemm", [a, d], { transA: ta ? 0 : 1, alpha })
      : g.op("Gemm", [d, a], { transA: 1, transB: ta ? 1 : 0, alpha });
  }
  if (c.needs[2]) {
    const scaled = beta === 1 ? d : g.op("Mul", [d, g.scalar(beta)]);
    out[2] = g.sumTo(scaled, c.shape(y(c)), c.shape(x(c, 2)));
  }
  return out;
};

const reshapeBack: GradientRule = (c) => [c.g.reshape(dy0(c), c.shape(y(c)), c.shape(x(c, 0)))];

/** Gradient of a reduction over `axes` of x: dy broadcast back (and scaled for a mean). */
function reduction(mean: boolean): GradientRule {
  return (c) => {
    const sx = c.shape(x(c, 0));
    let axes = c.node.input.length > 1 && c.node.input[1] !== "" ? c.ints(x(c, 1)) : attrInts(c.node, "axes");
    if (!axes || axes.length === 0) {
      if (!mean && attrInt(c.node, "noop_with_empty_axes", 0)) return [dy0(c)];
      axes = [...sx.keys()];
    }
    const set = new Set(axes.map((a) => norm(a, sx.length)));
    const kept = sx.map((d, i) => (set.has(i) ? 1 : d));
    let d = c.g.reshape(dy0(c), c.shape(y(c)), kept);
    // A mean's 1/count scales the reduced tensor, before the broadcast.
    if (mean) d = c.g.scaled(d, 1 / [...set].reduce((n, i) => n * sx[i], 1));
    return [c.g.op("Expand", [d, c.g.ints(sx)])];
  };
}

const softmax: GradientRule = (c) => {
  const axis = attrInt(c.node, "axis", -1);
  const { g } = c;
  const d = dy0(c);
  const s = g.op("ReduceSum", [g.op("Mul", [d, y(c)]), g.ints([axis])], { keepdims: 1 });
  return [g.op("Mul", [y(c), g.op("Sub", [d, s])])];
};

const logSoftmax: GradientRule = (c) => {
  const axis = attrInt(c.node, "axis", -1);
  const { g } = c;
  const d = dy0(c);
  const s = g.op("ReduceSum", [d, g.ints([axis])], { keepdims: 1 });
  return [g.op("Sub", [d, g.op("Mul", [g.op("Exp", [y(c)]), s])])];
};

const transpose: GradientRule = (c) => {
  const rank = c.shape(x(c, 0)).length;
  const perm = attrInts(c.node, "perm") ?? [...Array(rank).keys()].reverse();
  const inverse = new Array<number>(rank);
  perm.forEach((p, i) => (inverse[p] = i));
  return [c.g.op("Transpose", [dy0(c)], { perm: inverse })];
};

const concat: GradientRule = (c) => {
  const rank = c.shape(y(c)).length;
  const axis = norm(attrInt(c.node, "axis", 0), rank);
  const sizes = c.node.input.map((i) => c.shape(i)[axis]);
  const parts = c.g.ops("Split", [dy0(c), c.g.ints(sizes)], sizes.length, { axis });
  return parts.map((p, i) => (c.needs[i] ? p : undefined));
};

const split: GradientRule = (c) => {
  const rank = c.shape(x(c, 0)).length;
  const axis = norm(attrInt(c.node, "axis", 0), rank);
  const parts = c.node.output.map((o, i) => c.dy[i] ?? c.g.zeros(c.shape(o)));
  return [c.g.op("Concat", parts, { axis })];
};

const slice: GradientRule = (c) => {
  const sx = c.shape(x(c, 0));
  const starts = c.ints(x(c, 1));
  const ends = c.ints(x(c, 2));
  const axes = c.node.input[3] ? c.ints(x(c, 3)) : starts.map((_, i) => i);
  const steps = c.node.input[4] ? c.ints(x(c, 4)) : starts.map(() => 1);
  const pads = new Array<number>(2 * sx.length).fill(0);
  axes.forEach((a0, i) => {
    if (steps[i] !== 1) throw unsupported(c, `step ${steps[i]} (only step 1 is differentiated)`);
    const a = norm(a0, sx.length);
    const dim = sx[a];
    const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + dim : v, 0), dim);
    const begin = clamp(starts[i]);
    const end = Math.max(begin, clamp(ends[i]));
    pads[a] = begin;
    pads[sx.length + a] = dim - end;
  });
  if (pads.every((p) => p === 0)) return [dy0(c)];
  return [c.g.pad(dy0(c), pads)];
};

const gather: GradientRule = (c) => {
  if (!c.needs[0]) return [undefined, undefined];
  const { g } = c;
  const sd = c.shape(x(c, 0));
  const si = c.shape(x(c, 1));
  const axis = norm(attrInt(c.node, "axis", 0), sd.length);
  let d = dy0(c);
  // Bring the gathered axis to the front, scatter-add whole slices into zeros, move it back.
  const dyRank = sd.length - 1 + si.length;
  if (axis !== 0) {
    const perm = [
      ...Array.from({ length: si.length }, (_, i) => axis + i),
      ...Array.from({ length: axis }, (_, i) => i),
      ...Array.from({ length: dyRank - axis - si.length }, (_, i) => axis + si.length + i),
    ];
    d = g.op("Transpose", [d], { perm });
  }
  const front = [sd[axis], ...sd.slice(0, axis), ...sd.slice(axis + 1)];
  const idx = g.op("Unsqueeze", [g.op("Cast", [x(c, 1)], { to: TensorProto_DataType.INT64 }), g.ints([-1])]);
  let out = g.op("ScatterND", [g.zeros(front), idx, d], { reduction: { s: "add" } });
  if (axis !== 0) {
    const back = [
      ...Array.from({ length: axis }, (_, i) => i + 1),
      0,
      ...Array.from({ length: sd.length - axis - 1 }, (_, i) => axis + 1 + i),
    ];
    out = g.op("Transpose", [out], { perm: back });
  }
  return [out, undefined];
};

const gatherElements: GradientRule = (c) => {
  const sd = c.shape(x(c, 0));
  const axis = attrInt(c.node, "axis", 0);
  return [
    c.g.op("ScatterElements", [c.g.zeros(sd), x(c, 1), dy0(c)], { axis, reduction: { s: "add" } }),
    undefined,
  ];
};

const where: GradientRule = (c) => {
  const { g } = c;
  const d = dy0(c);
  const zero = g.scalar(0);
  const sy = c.shape(y(c));
  return [
    undefined,
    c.needs[1] ? g.sumTo(g.op("Where", [x(c, 0), d, zero]), sy, c.shape(x(c, 1))) : undefined,
    c.needs[2] ? g.sumTo(g.op("Where", [x(c, 0), zero, d]), sy, c.shape(x(c, 2))) : undefined,
  ];
};

const expand: GradientRule = (c) => [c.g.sumTo(dy0(c), c.shape(y(c)), c.shape(x(c, 0))), undefined];

const tile: GradientRule = (c) => {
  const sx = c.shape(x(c, 0));
  const reps = c.ints(x(c, 1));
  const interleaved = sx.flatMap((d, i) => [reps[i], d]);
  const r = c.g.reshape(dy0(c), c.shape(y(c)), interleaved);
  const summed = c.g.op("ReduceSum", [r, c.g.ints(sx.map((_, i) => 2 * i))], { keepdims: 0 });
  return [summed, undefined];
};

const pow: GradientRule = (c) => {
  if (c.needs[1]) throw unsupported(c, "the exponent depends on trained tensors");
  const { g } = c;
  const [sx, sy] = [c.shape(x(c, 0)), c.shape(y(c))];
  const value = c.constant?.(x(c, 1));
  if (value !== undefined && sx.length === sy.length && sx.every((v, i) => v === sy[i])) {
    // A constant exponent (RMSNorm's x^2): e·x^(e-1) without a generic pow where e is 1 or 2.
    if (value === 0) return [g.zeros(sx), undefined];
    const d = g.scaled(dy0(c), value);
    if (value === 1) return [d, undefined];
    const xe = value === 2 ? x(c, 0) : g.op("Pow", [x(c, 0), g.scalar(value - 1)]);
    return [g.op("Mul", [g.unexpanded(d), xe]), undefined];
  }
  const e = x(c, 1);
  const dx = g.op("Mul", [e, g.op("Pow", [x(c, 0), g.op("Sub", [e, g.scalar(1)])])]);
  return [g.sumTo(g.op("Mul", [dy0(c), dx]), sy, sx), undefined];
};

const layerNorm: GradientRule = (c) => {
  const { g, node } = c;
  const sx = c.shape(x(c, 0));
  const axis = norm(attrInt(node, "axis", -1), sx.length);
  const eps = attrFloat(node, "epsilon", 1e-5);
  const mean = (t: string) => g.reduceMean(t, sx.slice(axis).map((_, i) => axis + i));
  const d = dy0(c);
  const xc = g.op("Sub", [x(c, 0), mean(x(c, 0))]);
  const inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [mean(g.op("Mul", [xc, xc])), g.scalar(eps)])])]);
  const xhat = g.op("Mul", [xc, inv]);
  const out: (string | undefined)[] = [undefined, undefined, undefined];
  if (c.needs[0]) {
    const dh = g.op("Mul", [d, x(c, 1)]);
    const inner = g.op("Sub", [g.op("Sub", [dh, mean(dh)]), g.op("Mul", [xhat, mean(g.op("Mul", [dh, xhat]))])]);
    out[0] = g.op("Mul", [inv, inner]);
  }
  if (c.needs[1]) out[1] = g.sumTo(g.op("Mul", [d, xhat]), sx, c.shape(x(c, 1)));
  if (c.needs[2] && node.input[2]) out[2] = g.sumTo(d, sx, c.shape(x(c, 2)));
  return out;
};

/** Max/Min of two inputs: the gradient goes to the chosen one (ties to the first, as a tie-break). */
function extremum(first: "GreaterOrEqual" | "LessOrEqual"): GradientRule {
  return (c) => {
    if (c.node.input.length !== 2) throw unsupported(c, `${c.node.input.length} inputs (two are differentiated)`);
    const { g } = c;
    const d = dy0(c);
    const sy = c.shape(y(c));
    const pick = g.op(first, [x(c, 0), x(c, 1)]);
    const zero = g.scalar(0);
    return [
      c.needs[0] ? g.sumTo(g.op("Where", [pick, d, zero]), sy, c.shape(x(c, 0))) : undefined,
      c.needs[1] ? g.sumTo(g.op("Where", [pick, zero, d]), sy, c.shape(x(c, 1))) : undefined,
    ];
  };
}

const clip: GradientRule = (c) => {
  const { g } = c;
  let keep: string | undefined;
  const bound = (i: number, cmp: "GreaterOrEqual" | "LessOrEqual") => {
    if (!c.node.input[i]) return;
    const inside = g.op(cmp, [x(c, 0), x(c, i)]);
    keep = keep ? g.op("And", [keep, inside]) : inside;
  };
  bound(1, "GreaterOrEqual");
  bound(2, "LessOrEqual");
  return [keep ? g.op("Where", [keep, dy0(c), g.scalar(0)]) : dy0(c), undefined, undefined];
};

const pad: GradientRule = (c) => {
  const mode = c.node.attribute.find((a) => a.name === "mode");
  if (mode && new TextDecoder().decode(mode.s) !== "constant") throw unsupported(c, "a non-constant mode");
  if (c.node.input[3]) throw unsupported(c, "axes");
  const sx = c.shape(x(c, 0));
  const pads = c.ints(x(c, 1));
  if (pads.some((p) => p < 0)) throw unsupported(c, "negative pads");
  const starts = sx.map((_, i) => pads[i]);
  const ends = sx.map((d, i) => pads[i] + d);
  return [c.g.op("Slice", [dy0(c), c.g.ints(starts), c.g.ints(ends)]), undefined, undefined];
};

const trilu: GradientRule = (c) => {
  const upper = attrInt(c.node, "upper", 1);
  const input = c.node.input[1] ? [dy0(c), x(c, 1)] : [dy0(c)];
  return [c.g.op("Trilu", input, { upper }), undefined];
};

const castRule: GradientRule = (c) => {
  const to = attrInt(c.node, "to", 0);
  if (to !== TensorProto_DataType.FLOAT) throw unsupported(c, `a float path cast to type ${to}`);
  return [dy0(c)];
};

/** The ops whose outputs carry no gradient (shapes, comparisons, indices, constants). */
export const NON_DIFFERENTIABLE: ReadonlySet<string> = new Set([
  "Shape",
  "Size",
  "Equal",
  "Greater",
  "GreaterOrEqual",
  "Less",
  "LessOrEqual",
  "Not",
  "And",
  "Or",
  "Xor",
  "ArgMax",
  "ArgMin",
  "NonZero",
  "Range",
  "ConstantOfShape",
  "Constant",
  "OneHot",
  "IsNaN",
  "IsInf",
  "Sign",
  "Floor",
  "Ceil",
  "Round",
  "EyeLike",
]);

/** Cast to a non-float type also ends a gradient path. */
export function endsGradient(node: NodeProto): boolean {
  if (NON_DIFFERENTIABLE.has(node.opType)) return true;
  if (node.opType === "Cast") {
    const to = attrInt(node, "to", 0);
    return to !== TensorProto_DataType.FLOAT && to !== TensorProto_DataType.FLOAT16 &&
      to !== TensorProto_DataType.DOUBLE && to !== TensorProto_DataType.BFLOAT16;
  }
  return false;
}

/**
 * Gradient rules by op type (default ONNX domain).
 *
 * @example
 * ```ts
 * import { GRADIENT_RULES } from "./grad_rules.ts";
 * console.log(GRADIENT_RULES.has("MatMul"), GRADIENT_RULES.has("Loop")); // true false
 * ```
 */
export const GRADIENT_RULES: ReadonlyMap<string, GradientRule> = new Map<string, GradientRule>([
  ["Add", binary((_, d) => d, (_, d) => d)],
  ["Sub", binary((_, d) => d, (c, d) => c.g.op("Neg", [d]))],
  ["Mul", binary((c, d) => c.g.op("Mul", [full(c, d, 1), x(c, 1)]), (c, d) => c.g.op("Mul", [full(c, d, 0), x(c, 0)]))],
  [
    "Div",
    binary(
      (c, d) => c.g.op("Div", [full(c, d, 1), x(c, 1)]),
      (c, d) => c.g.op("Neg", [c.g.op("Mul", [d, c.g.op("Div", [y(c), x(c, 1)])])]),
    ),
  ],
  ["Pow", pow],
  ["Sqrt", (c) => [c.g.op("Div", [c.g.op("Mul", [dy0(c), c.g.scalar(0.5)]), y(c)])]],
  ["Reciprocal", (c) => [c.g.op("Neg", [c.g.op("Mul", [dy0(c), c.g.op("Mul", [y(c), y(c)])])])]],
  ["Neg", (c) => [c.g.op("Neg", [dy0(c)])]],
  ["Identity", (c) => [dy0(c)]],
  ["Cast", castRule],
  ["Exp", unary((c) => y(c))],
  ["Log", (c) => [c.g.op("Div", [dy0(c), x(c, 0)])]],
  ["Sigmoid", unary((c) => c.g.op("Mul", [y(c), c.g.op("Sub", [c.g.scalar(1), y(c)])]))],
  ["Tanh", unary((c) => c.g.op("Sub", [c.g.scalar(1), c.g.op("Mul", [y(c), y(c)])]))],
  ["Relu", unary((c) => c.g.op("Cast", [c.g.op("Greater", [x(c, 0), c.g.scalar(0)])], { to: 1 }))],
  [
    "Erf",
    unary((c) =>
      c.g.op("Mul", [
        c.g.scalar(2 / Math.sqrt(Math.PI)),
        c.g.op("Exp", [c.g.op("Neg", [c.g.op("Mul", [x(c, 0), x(c, 0)])])]),
      ])
    ),
  ],
  ["Sin", unary((c) => c.g.op("Cos", [x(c, 0)]))],
  ["Cos", unary((c) => c.g.op("Neg", [c.g.op("Sin", [x(c, 0)])]))],
  ["Softmax", softmax],
  ["LogSoftmax", logSoftmax],
  ["MatMul", matMul],
  ["Gemm", gemm],
  ["Transpose", transpose],
  ["Reshape", (c) => [...reshapeBack(c), undefined]],
  ["Flatten", reshapeBack],
  ["Unsqueeze", (c) => [...reshapeBack(c), undefined]],
  ["Squeeze", (c) => [...reshapeBack(c), undefined]],
  ["ReduceMean", reduction(true)],
  ["ReduceSum", reduction(false)],
  ["Concat", concat],
  ["Split", split],
  ["Slice", slice],
  ["Gather", gather],
  ["GatherElements", gatherElements],
  ["Where", where],
  ["Expand", expand],
  ["Tile", tile],
  ["LayerNormalization", layerNorm],
  ["Max", extremum("GreaterOrEqual")],
  ["Min", extremum("LessOrEqual")],
  ["Clip", clip],
  ["Abs", unary((c) => c.g.op("Sign", [x(c, 0)]))],
  ["Sum", (c) => c.node.input.map((i, k) => (c.needs[k] ? c.g.sumTo(dy0(c), c.shape(y(c)), c.shape(i)) : undefined))],
  ["Pad", pad],
  ["Trilu", trilu],
]);

/**
 * Which inputs of a node take small integer values the rules need (probed once per batch shape).
 *
 * @example
 * ```ts
 * import { integerInputs } from "./grad_rules.ts";
 * import type { NodeProto } from "../deps/onnx_proto.ts";
 * declare const sliceNode: NodeProto;
 * console.log(integerInputs(sliceNode)); // [1, 2, 3, 4]
 * ```
 */
export function integerInputs(node: NodeProto): number[] {
  switch (node.opType) {
    case "Slice":
      return [1, 2, 3, 4];
    case "Tile":
    case "Pad":
    case "ReduceSum":
    case "ReduceMean":
      return [1];
    default:
      return [];
  }
}
