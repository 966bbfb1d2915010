// LoRA kernel benchmarks:
//   node_modules/.bin/deno bench -A --json bench/kernel_bench.ts
//
// Groups "merge 2048x2048 r16" and "merge 4096x4096 r64" time W += s * B @ A
// with the wasm-simd kernel (baseline), the js reference, and onnxruntime-web
// running the same math as a tiny ONNX graph MatMul(B, A) * s + W (session
// created up front, at ORT's default thread count). Group "f16-to-f32 16M"
// times src/numeric's half-to-float conversion of 16 Mi values: the runtime's
// Float16Array against the portable bit code. Merge flops per call:
// 2 * out * in * rank + out * in.
import { loadKernels } from "../src/kernels/mod.ts";
import type { LoraDims } from "../src/kernels/mod.ts";
import { f16ToF32, hasNativeFloat16 } from "../src/numeric/mod.ts";
import { f16ToF32Portable } from "../src/numeric/float16_portable.ts";
import { create, ModelProtoSchema, TensorProto_DataType, toBinary } from "../src/deps/onnx_proto.ts";
import { ort, Tensor } from "../src/deps/ort.ts";

const wasm = await loadKernels({ backend: "wasm-simd" });
const js = await loadKernels({ backend: "js" });

function randomArray(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** The ONNX model `Y = MatMul(B, A) * s + W` with W, A, B as graph inputs. */
function mergeModel(dims: LoraDims, scale: number): Uint8Array {
  const { outFeatures: out, inFeatures: inf, rank } = dims;
  const input = (name: string, shape: number[]) => ({
    name,
    type: {
      value: {
        case: "tensorType" as const,
        value: {
          elemType: TensorProto_DataType.FLOAT,
          shape: {
            dim: shape.map((d) => ({
              value: { case: "dimValue" as const, value: BigInt(d) },
            })),
          },
        },
      },
    },
  });
  const model = create(ModelProtoSchema, {
    irVersion: 8n,
    opsetImport: [{ domain: "", version: 17n }],
    producerName: "peft-edge kernel_bench",
    graph: {
      name: "lora_merge",
      input: [
        input("W", [out, inf]),
        input("A", [rank, inf]),
        input("B", [out, rank]),
      ],
      output: [input("Y", [out, inf])],
      initializer: [{
        name: "s",
        dims: [],
        dataType: TensorProto_DataType.FLOAT,
        floatData: [scale],
      }],
      node: [
        { opType: "MatMul", input: ["B", "A"], output: ["BA"], name: "delta" },
        { opType: "Mul", input: ["BA", "s"], output: ["D"], name: "scale" },
        { opType: "Add", input: ["D", "W"], output: ["Y"], name: "merge" },
      ],
    },
  });
  return toBinary(ModelProtoSchema, model);
}

async function mergeGroup(dims: LoraDims, scale: number): Promise<void> {
  const { outFeatures: out, inFeatures: inf, rank } = dims;
  const group = `merge ${out}x${inf} r${rank}`;
  const w = randomArray(out * inf, 1);
  const a = randomArray(rank * inf, 2);
  const b = randomArray(out * rank, 3);
  const session = await ort.InferenceSession.create(mergeModel(dims, scale));
  const feeds = {
    W: new Tensor("float32", w, [out, inf]),
    A: new Tensor("float32", a, [rank, inf]),
    B: new Tensor("float32", b, [out, rank]),
  };
  const big = out * inf >= 4096 * 4096;
  Deno.bench({
    name: "wasm-simd",
    group,
    baseline: true,
    ...(big ? { n: 20, warmup: 3 } : {}),
    fn: () => wasm.mergeLora(w, a, b, dims, scale, "out_in"),
  });
  Deno.bench({
    name: "js",
    group,
    ...(big ? { n: 2, warmup: 1 } : { n: 10, warmup: 2 }),
    fn: () => js.mergeLora(w, a, b, dims, scale, "out_in"),
  });
  Deno.bench({
    name: "ort-wasm",
    group,
    ...(big ? { n: 20, warmup: 3 } : {}),
    fn: async () => {
      const result = await session.run(feeds);
      if ((result.Y.data as Float32Array).length !== out * inf) {
        throw new Error("bad Y");
      }
    },
  });
}

await mergeGroup({ outFeatures: 2048, inFeatures: 2048, rank: 16 }, 2);
await mergeGroup({ outFeatures: 4096, inFeatures: 4096, rank: 64 }, 0.25);

{
  const n = 16 * 2 ** 20;
  const halves = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    halves[i] = (Math.imul(i, 2654435761) >>> 16) & 0xfbff;
  }
  // src/numeric: the runtime's Float16Array (where it exists) against the portable bit code.
  const group = "f16-to-f32 16M";
  const dst = new Float32Array(n);
  Deno.bench({
    name: hasNativeFloat16() ? "Float16Array" : "f16ToF32 (no Float16Array here)",
    group,
    baseline: true,
    fn: () => void f16ToF32(halves, dst),
  });
  Deno.bench({
    name: "portable",
    group,
    n: 10,
    warmup: 2,
    fn: () => void f16ToF32Portable(halves, dst),
  });
}
