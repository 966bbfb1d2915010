import { test } from "node:test";
import assert from "node:assert/strict";
import { fromPretrained, loadBaseModel, memorySource, Tensor } from "../mod.ts";
import { create, ModelProtoSchema, TensorProto_DataType } from "../src/deps/onnx_proto.ts";
import { makeNode, rawTensor, tensorValueInfo } from "../src/onnx/graph_parts.ts";
import { encodeModel } from "../src/onnx/model_file.ts";
import { f16ToF32, f32ToF16 } from "../src/numeric/float16.ts";
import { serializeSafetensors } from "../src/safetensors/mod.ts";

const F16 = TensorProto_DataType.FLOAT16;
const [IN, MID, OUT, R, ALPHA] = [8, 6, 8, 2, 4];

/** Deterministic values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}
const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
/** float16 tensor data as float32: onnxruntime gives a Float16Array where the runtime has one, else raw bits. */
const f16Data = (
  data: unknown,
) => (data instanceof Uint16Array ? f16ToF32(data) : Float32Array.from(data as ArrayLike<number>));
/** Rounds float32 values to what float16 can hold. */
const asF16 = (v: Float32Array) => f16ToF32(f32ToF16(v));

const w1 = asF16(values(IN * MID, 1)); // [in, out] as exporters store MatMul weights
const w2 = asF16(values(MID * OUT, 2));

/** A float16 two-projection model: y = (x W1) W2, module names in exporter scope style. */
function f16Model(): Uint8Array {
  return encodeModel(create(ModelProtoSchema, {
    irVersion: 8n,
    opsetImport: [{ domain: "", version: 17n }],
    graph: {
      name: "f16",
      node: [
        makeNode("MatMul", ["x", "w1"], ["h"], "/model/layers.0/mlp/up_proj/MatMul"),
        makeNode("MatMul", ["h", "w2"], ["y"], "/model/layers.0/mlp/down_proj/MatMul"),
      ],
      initializer: [
        rawTensor("w1", F16, [IN, MID], bytesOf(f32ToF16(w1))),
        rawTensor("w2", F16, [MID, OUT], bytesOf(f32ToF16(w2))),
      ],
      input: [tensorValueInfo("x", F16, ["batch", IN])],
      output: [tensorValueInfo("y", F16, ["batch", OUT])],
    },
  }));
}

const a1 = values(R * IN, 3), b1 = values(MID * R, 4), a2 = values(R * MID, 5), b2 = values(OUT * R, 6);
const adapter = memorySource("f16-adapter", {
  "adapter_config.json": new TextEncoder().encode(
    JSON.stringify({ peft_type: "LORA", r: R, lora_alpha: ALPHA, target_modules: ["up_proj", "down_proj"] }),
  ),
  "adapter_model.safetensors": serializeSafetensors({
    "base_model.model.model.layers.0.mlp.up_proj.lora_A.weight": { dtype: "F32", shape: [R, IN], data: a1 },
    "base_model.model.model.layers.0.mlp.up_proj.lora_B.weight": { dtype: "F32", shape: [MID, R], data: b1 },
    "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight": { dtype: "F32", shape: [R, MID], data: a2 },
    "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight": { dtype: "F32", shape: [OUT, R], data: b2 },
  }),
});

/** float64 reference: y = x (W1 + s (B1 A1)^T) (W2 + s (B2 A2)^T). */
function reference(x: Float32Array, rows: number): Float64Array {
  const s = ALPHA / R;
  const merged = (w: Float32Array, a: Float32Array, b: Float32Array, inF: number, outF: number) =>
    Float64Array.from({ length: inF * outF }, (_, idx) => {
      const [i, o] = [Math.floor(idx / outF), idx % outF];
      let d = 0;
      for (let k = 0; k < R; k++) d += b[o * R + k] * a[k * inF + i];
      return w[idx] + s * d;
    });
  const mm = (x: ArrayLike<number>, w: Float64Array, inF: number, outF: number) =>
    Float64Array.from({ length: rows * outF }, (_, idx) => {
      const [r, o] = [Math.floor(idx / outF), idx % outF];
      let acc = 0;
      for (let i = 0; i < inF; i++) acc += x[r * inF + i] * w[i * outF + o];
      return acc;
    });
  const h = mm(x, merged(w1, a1, b1, IN, MID), IN, MID);
  return mm(h, merged(w2, a2, b2, MID, OUT), MID, OUT);
}

test("a float16 base takes a float32 adapter in both modes: branches in float16, merged weights written back as float16", async () => {
  const base = await loadBaseModel(
    memorySource("f16-base", { "config.json": new TextEncoder().encode("{}"), "onnx/model.onnx": f16Model() }),
  );
  const x = asF16(values(3 * IN, 7));
  const feeds = { x: new Tensor("float16", f32ToF16(x), [3, IN]) };
  const want = reference(x, 3);
  const plain = f16Data((await base.run(feeds)).y.data);
  for (const mode of ["dynamic", "merged"] as const) {
    const model = await fromPretrained(base, adapter, { mode });
    const out = await model.run(feeds);
    assert.equal(out.y.type, "float16");
    const got = f16Data(out.y.data);
    // float16 keeps ~3 significant digits: compare relative to the output's scale.
    const scale = Math.max(...want.map(Math.abs));
    let worst = 0;
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / scale);
    assert.ok(worst < 1e-2, `${mode}: worst relative error ${worst}`);
    // And the adapter matters far beyond that tolerance.
    let moved = 0;
    for (let i = 0; i < got.length; i++) moved = Math.max(moved, Math.abs(got[i] - plain[i]) / scale);
    assert.ok(moved > 0.1, `${mode}: adapter moved the output by only ${moved}`);
    await model.release();
  }
  await base.release();
});
