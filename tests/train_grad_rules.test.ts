// Each gradient rule against central finite differences of onnxruntime's own
// forward runs (no math of ours on the expected side): for a one-node graph
// y = op(inputs), loss = sum(y * w) with random w, the directional derivative
// along a random direction v must equal <d loss/d x, v>. Covers the rules the
// fixture models do not reach (Gemm transposes, batched MatMul broadcasting,
// Gather on axis 1, Tile, Split, Pad-free slices, ...). float32 differences
// with eps 1e-2 agree to ~1e-3 relative; a wrong rule is off by O(1).
import { test } from "node:test";
import assert from "node:assert/strict";
import { create, ModelProtoSchema, OperatorSetIdProtoSchema, TensorProto_DataType } from "../src/deps/onnx_proto.ts";
import { ort, Tensor } from "../src/deps/ort.ts";
import { makeNode, rawTensor, tensorValueInfo } from "../src/onnx/graph_parts.ts";
import { encodeModel } from "../src/onnx/model_file.ts";
import { differentiate, gradientRegion } from "../src/train/differentiate.ts";
import { type GradAttribute, GradGraph } from "../src/train/grad_graph.ts";
import { createRng } from "../src/generate/rng.ts";

interface Input {
  name: string;
  shape: number[];
  /** Integer constant (an initializer) instead of a float input. */
  ints?: number[];
  /** Fixed float values (e.g. positive for Sqrt/Log). */
  positive?: boolean;
  trained?: boolean;
  bool?: boolean;
}

interface Case {
  op: string;
  inputs: Input[];
  y: number[];
  attrs?: Record<string, GradAttribute>;
}

const CASES: Record<string, Case> = {
  "Add broadcast": { op: "Add", inputs: [{ name: "a", shape: [2, 3, 4] }, { name: "b", shape: [3, 1] }], y: [2, 3, 4] },
  "Sub": { op: "Sub", inputs: [{ name: "a", shape: [2, 3] }, { name: "b", shape: [3] }], y: [2, 3] },
  "Mul": { op: "Mul", inputs: [{ name: "a", shape: [2, 3] }, { name: "b", shape: [2, 1] }], y: [2, 3] },
  "Div": { op: "Div", inputs: [{ name: "a", shape: [2, 3] }, { name: "b", shape: [3], positive: true }], y: [2, 3] },
  "Pow": {
    op: "Pow",
    inputs: [{ name: "a", shape: [5], positive: true }, { name: "e", shape: [], trained: false }],
    y: [5],
  },
  "Sqrt": { op: "Sqrt", inputs: [{ name: "a", shape: [6], positive: true }], y: [6] },
  "Reciprocal": { op: "Reciprocal", inputs: [{ name: "a", shape: [6], positive: true }], y: [6] },
  "Exp": { op: "Exp", inputs: [{ name: "a", shape: [6] }], y: [6] },
  "Log": { op: "Log", inputs: [{ name: "a", shape: [6], positive: true }], y: [6] },
  "Sigmoid": { op: "Sigmoid", inputs: [{ name: "a", shape: [6] }], y: [6] },
  "Tanh": { op: "Tanh", inputs: [{ name: "a", shape: [6] }], y: [6] },
  "Erf": { op: "Erf", inputs: [{ name: "a", shape: [6] }], y: [6] },
  "Sin": { op: "Sin", inputs: [{ name: "a", shape: [6] }], y: [6] },
  "Cos": { op: "Cos", inputs: [{ name: "a", shape: [6] }], y: [6] },
  "Neg": { op: "Neg", inputs: [{ name: "a", shape: [6] }], y: [6] },
  "Softmax": { op: "Softmax", inputs: [{ name: "a", shape: [2, 5] }], y: [2, 5], attrs: { axis: -1 } },
  "LogSoftmax": { op: "LogSoftmax", inputs: [{ name: "a", shape: [2, 5] }], y: [2, 5], attrs: { axis: 1 } },
  "MatMul batched x weight": {
    op: "MatMul",
    inputs: [{ name: "a", shape: [2, 3, 4] }, { name: "b", shape: [4, 5] }],
    y: [2, 3, 5],
  },
  "MatMul batch broadcast": {
    op: "MatMul",
    inputs: [{ name: "a", shape: [2, 2, 3, 4] }, { name: "b", shape: [2, 1, 4, 5] }],
    y: [2, 2, 3, 5],
  },
  "Gemm transA transB": {
    op: "Gemm",
    inputs: [{ name: "a", shape: [4, 3] }, { name: "b", shape: [5, 4] }, { name: "c", shape: [5] }],
    y: [3, 5],
    attrs: { transA: 1, transB: 1, alpha: { f: 0.5 }, beta: { f: 2 } },
  },
  "Gemm": {
    op: "Gemm",
    inputs: [{ name: "a", shape: [3, 4] }, { name: "b", shape: [4, 5] }, { name: "c", shape: [1, 5] }],
    y: [3, 5],
  },
  "Transpose": { op: "Transpose", inputs: [{ name: "a", shape: [2, 3, 4] }], y: [4, 2, 3], attrs: { perm: [2, 0, 1] } },
  "Reshape": {
    op: "Reshape",
    inputs: [{ name: "a", shape: [2, 6] }, { name: "s", shape: [3], ints: [3, 2, 2] }],
    y: [3, 2, 2],
  },
  "Unsqueeze": {
    op: "Unsqueeze",
    inputs: [{ name: "a", shape: [2, 3] }, { name: "ax", shape: [1], ints: [1] }],
    y: [2, 1, 3],
  },
  "Squeeze": {
    op: "Squeeze",
    inputs: [{ name: "a", shape: [2, 1, 3] }, { name: "ax", shape: [1], ints: [1] }],
    y: [2, 3],
  },
  "ReduceMean": { op: "ReduceMean", inputs: [{ name: "a", shape: [2, 3, 4] }], y: [2, 1, 4], attrs: { axes: [1] } },
  "ReduceSum": {
    op: "ReduceSum",
    inputs: [{ name: "a", shape: [2, 3, 4] }, { name: "ax", shape: [2], ints: [0, 2] }],
    y: [3],
    attrs: { keepdims: 0 },
  },
  "Concat": {
    op: "Concat",
    inputs: [{ name: "a", shape: [2, 3] }, { name: "b", shape: [2, 2] }],
    y: [2, 5],
    attrs: { axis: 1 },
  },
  "Slice": {
    op: "Slice",
    inputs: [
      { name: "a", shape: [4, 6] },
      { name: "st", shape: [2], ints: [1, -4] },
      { name: "en", shape: [2], ints: [3, 1000] },
      { name: "ax", shape: [2], ints: [0, 1] },
    ],
    y: [2, 4],
  },
  "Gather axis 1": {
    op: "Gather",
    inputs: [{ name: "a", shape: [3, 5, 2] }, { name: "i", shape: [2, 2], ints: [4, 0, 4, 2] }],
    y: [3, 2, 2, 2],
    attrs: { axis: 1 },
  },
  "Gather axis 0": {
    op: "Gather",
    inputs: [{ name: "a", shape: [5, 3] }, { name: "i", shape: [4], ints: [1, 1, 0, 4] }],
    y: [4, 3],
  },
  "GatherElements": {
    op: "GatherElements",
    inputs: [{ name: "a", shape: [2, 4] }, { name: "i", shape: [2, 3], ints: [0, 3, 3, 1, 1, 2] }],
    y: [2, 3],
    attrs: { axis: 1 },
  },
  "Where": {
    op: "Where",
    inputs: [{ name: "c", shape: [2, 3], bool: true }, { name: "a", shape: [2, 3] }, { name: "b", shape: [3] }],
    y: [2, 3],
  },
  "Expand": {
    op: "Expand",
    inputs: [{ name: "a", shape: [3, 1] }, { name: "s", shape: [3], ints: [2, 3, 4] }],
    y: [2, 3, 4],
  },
  "Tile": { op: "Tile", inputs: [{ name: "a", shape: [2, 3] }, { name: "r", shape: [2], ints: [2, 3] }], y: [4, 9] },
  "Max": { op: "Max", inputs: [{ name: "a", shape: [2, 3] }, { name: "b", shape: [3] }], y: [2, 3] },
  "Min": { op: "Min", inputs: [{ name: "a", shape: [2, 3] }, { name: "b", shape: [2, 3] }], y: [2, 3] },
  "Clip": {
    op: "Clip",
    inputs: [{ name: "a", shape: [8] }, { name: "lo", shape: [], trained: false }, {
      name: "hi",
      shape: [],
      trained: false,
    }],
    y: [8],
  },
  "Abs": { op: "Abs", inputs: [{ name: "a", shape: [6] }], y: [6] },
  "Relu": { op: "Relu", inputs: [{ name: "a", shape: [6] }], y: [6] },
  "Sum": {
    op: "Sum",
    inputs: [{ name: "a", shape: [2, 3] }, { name: "b", shape: [3] }, { name: "c", shape: [2, 1] }],
    y: [2, 3],
  },
  "Pad": {
    op: "Pad",
    inputs: [{ name: "a", shape: [2, 3] }, { name: "p", shape: [4], ints: [1, 0, 0, 2] }],
    y: [3, 5],
  },
  "Trilu": { op: "Trilu", inputs: [{ name: "a", shape: [2, 4, 4] }], y: [2, 4, 4], attrs: { upper: 0 } },
  "LayerNormalization": {
    op: "LayerNormalization",
    inputs: [{ name: "a", shape: [2, 3, 6] }, { name: "s", shape: [6] }, { name: "b", shape: [6] }],
    y: [2, 3, 6],
    attrs: { axis: -1, epsilon: { f: 1e-5 } },
  },
};

/** Inputs held at fixed values: Pow's exponent, Clip's bounds. */
const FIXED: Record<string, Float32Array> = {
  e: new Float32Array([2.5]),
  lo: new Float32Array([-0.4]),
  hi: new Float32Array([0.5]),
};

function values(rng: ReturnType<typeof createRng>, n: number, positive = false): Float32Array {
  return Float32Array.from({ length: n }, () => (positive ? 0.5 + rng.uniform() : rng.uniform() * 2 - 1));
}
const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

for (const [label, c] of Object.entries(CASES)) {
  test(`gradient rule ${label} matches finite differences of onnxruntime runs`, async () => {
    const rng = createRng(7);
    const F = TensorProto_DataType.FLOAT;
    const floats = c.inputs.filter((i) => !i.ints && !i.bool);
    const trained = floats.filter((i) => i.trained !== false).map((i) => i.name);
    const initializers = c.inputs.filter((i) => i.ints).map((i) =>
      rawTensor(
        i.name,
        TensorProto_DataType.INT64,
        i.shape,
        new Uint8Array(new BigInt64Array(i.ints!.map(BigInt)).buffer),
      )
    );
    const nodes = [
      makeNode(c.op, c.inputs.map((i) => i.name), ["y"], "/op", {}),
      makeNode("Mul", ["y", "w"], ["yw"], "/mul"),
      makeNode("ReduceSum", ["yw"], ["loss"], "/sum", { keepdims: 0 }),
    ];
    if (c.attrs) {
      const g0 = new GradGraph(new Set(), "/a", 17);
      g0.named(c.op, c.inputs.map((i) => i.name), ["y"], c.attrs);
      nodes[0] = g0.nodes[0];
    }
    const shapes = new Map<string, number[]>([
      ...c.inputs.map((i) => [i.name, i.shape] as [string, number[]]),
      ["y", c.y],
      [
        "w",
        c.y,
      ],
      ["yw", c.y],
      ["loss", []],
    ]);
    const ints = new Map(c.inputs.filter((i) => i.ints).map((i) => [i.name, i.ints!]));
    const region = gradientRegion(nodes, trained);
    const g = new GradGraph(new Set([...shapes.keys()]), "/grad", 17);
    const grads = differentiate(nodes, region, "loss", trained, { shapes, ints }, g);
    const gradNodes = [...grads].map(([p, t]) => makeNode("Identity", [t], [`grad.${p}`], `/out/${p}`));
    const graphInputs = [
      ...floats.map((i) => tensorValueInfo(i.name, F, i.shape)),
      ...c.inputs.filter((i) => i.bool).map((i) => tensorValueInfo(i.name, TensorProto_DataType.BOOL, i.shape)),
      tensorValueInfo("w", F, c.y),
    ];
    const model = (outputs: string[], extraNodes = [] as typeof nodes) =>
      create(ModelProtoSchema, {
        irVersion: 8n,
        opsetImport: [create(OperatorSetIdProtoSchema, { domain: "", version: 17n })],
        graph: {
          name: "g",
          node: [...nodes, ...extraNodes],
          input: graphInputs,
          output: outputs.map((o) => tensorValueInfo(o, F, o === "loss" ? [] : shapes.get(o.slice(5))!)),
          initializer: [...initializers, ...g.initializers],
        },
      });
    const backward = await ort.InferenceSession.create(
      encodeModel(model(["loss", ...trained.map((p) => `grad.${p}`)], [...g.nodes, ...gradNodes])),
    );
    const forward = await ort.InferenceSession.create(encodeModel(model(["loss"])));
    const data = new Map(
      floats.map((i) => [i.name, FIXED[i.name] ?? values(rng, size(i.shape), i.positive)]),
    );
    const w = values(rng, size(c.y));
    const feeds = (shift: Map<string, Float32Array>, eps: number) => {
      const f: Record<string, Tensor> = { w: new Tensor("float32", w, c.y) };
      for (const i of floats) {
        const base = data.get(i.name)!;
        const d = shift.get(i.name);
        f[i.name] = new Tensor("float32", d ? base.map((v, k) => v + eps * d[k]) : base, i.shape);
      }
      for (const i of c.inputs.filter((i) => i.bool)) {
        f[i.name] = new Tensor(
          "bool",
          Uint8Array.from({ length: size(i.shape) }, (_, k) => k % 3 === 0 ? 1 : 0),
          i.shape,
        );
      }
      return f;
    };
    const out = await backward.run(feeds(new Map(), 0));
    const direction = new Map(trained.map((p) => [p, values(rng, data.get(p)!.length)]));
    const eps = 1e-2;
    const loss = async (e: number) => ((await forward.run(feeds(direction, e))).loss.data as Float32Array)[0];
    const numeric = ((await loss(eps)) - (await loss(-eps))) / (2 * eps);
    let analytic = 0;
    for (const p of trained) {
      const gp = out[`grad.${p}`].data as Float32Array;
      assert.equal(gp.length, data.get(p)!.length, `${p} gradient shape`);
      direction.get(p)!.forEach((v, k) => (analytic += v * gp[k]));
    }
    const scale = Math.max(1, Math.abs(numeric));
    assert.ok(
      Math.abs(numeric - analytic) < 5e-3 * scale,
      `${label}: finite differences ${numeric}, gradient ${analytic}`,
    );
    await backward.release();
    await forward.release();
  });
}
