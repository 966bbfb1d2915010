/**
 * The re-quantization arithmetic against onnxruntime's own quantizers
 * (tests/fixtures/real/quant_formats, made by MatMulNBitsQuantizer's block
 * quantizer and quantize_dynamic's quantize_data): quantizing the same float
 * weight gives the same bytes, scales and zero points, in every format a
 * merged weight is re-quantized into.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { parseSafetensors } from "../src/safetensors/mod.ts";
import { dequantizeNBits, dequantizeQ8, quantizeNBits, quantizeQ8 } from "../src/onnx/quant_math.ts";
import { dequantizeStored, readQuantizedWeight } from "../src/onnx/quantized_weights.ts";
import { requantize, sameStored, storesWeight } from "../src/onnx/requantize.ts";
import { loadBaseModel } from "../mod.ts";
import { realPath } from "./support/real_fixtures.ts";

interface Case {
  name: string;
  op: "MatMulNBits" | "MatMulInteger";
  k: number;
  n: number;
  bits?: number;
  block_size?: number;
  symmetric: boolean;
  scale_type?: "float32" | "float16";
  signed?: boolean;
  per_column?: boolean;
}

const cases = JSON.parse(await readFile(realPath("quant_formats/cases.json"), "utf8")) as Case[];
const st = parseSafetensors(new Uint8Array(await readFile(realPath("quant_formats/quantized.safetensors"))));
const bytes = (name: string) => {
  const a = st.toTypedArray(name) as Uint8Array | Int8Array;
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
};

/** [K, N] row-major to [N, K] (and, called with the dims swapped, back). */
function transposed(w: Float32Array, k: number, n: number): Float32Array {
  return Float32Array.from({ length: k * n }, (_, i) => w[(i % k) * n + Math.floor(i / k)]);
}

for (const c of cases) {
  test(`${c.op} ${c.name}: quantizing onnxruntime's float weight gives onnxruntime's bytes`, () => {
    const w = st.toFloat32(`${c.name}.weight`);
    for (const layout of ["in_out", "out_in"] as const) {
      const input = layout === "in_out" ? w : transposed(w, c.k, c.n);
      if (c.op === "MatMulNBits") {
        const format = { bits: c.bits!, blockSize: c.block_size!, symmetric: c.symmetric, scaleType: c.scale_type };
        const q = quantizeNBits(input, c.k, c.n, format, layout);
        assert.deepEqual(q.packed, bytes(`${c.name}.packed`), `${layout} codes`);
        assert.deepEqual(q.scales, st.toFloat32(`${c.name}.scales`), `${layout} scales`);
        if (c.symmetric) assert.equal(q.zeroPoints, undefined);
        else assert.deepEqual(q.zeroPoints, bytes(`${c.name}.zero_points`), `${layout} zero points`);
        // A symmetric weight's dequantized values quantize back to the same bytes (re-quantizing an unchanged weight changes nothing).
        if (c.symmetric) {
          const again = quantizeNBits(dequantizeNBits(q, layout), c.k, c.n, format, layout);
          assert.deepEqual(again.packed, q.packed);
          // (An all-zero block's scale may come back as +0 for -0.)
          assert.deepEqual([...again.scales].map((v) => v + 0), [...q.scales].map((v) => v + 0));
        }
      } else {
        const format = { signed: c.signed!, symmetric: c.symmetric, perColumn: c.per_column! };
        const q = quantizeQ8(input, c.k, c.n, format, layout);
        assert.deepEqual(new Uint8Array(q.values.buffer), bytes(`${c.name}.values`), `${layout} codes`);
        assert.deepEqual(q.scales, st.toFloat32(`${c.name}.scales`), `${layout} scales`);
        assert.deepEqual(new Uint8Array(q.zeroPoints.buffer), bytes(`${c.name}.zero_points`), `${layout} zero points`);
        const back = dequantizeQ8(q, layout);
        for (let i = 0; i < back.length; i++) {
          const scale = q.scales[c.per_column ? (layout === "in_out" ? i % c.n : Math.floor(i / c.k)) : 0];
          assert.ok(Math.abs(back[i] - input[i]) <= scale / 2 + 1e-7, `${layout} value ${i} within half a step`);
        }
      }
    }
  });
}

test("the files onnxruntime quantized: each weight re-quantized from its float original gives the file's bytes", async () => {
  const path = realPath("bases/llama-torchscript");
  const float = await loadBaseModel(path);
  for (const file of ["onnx/model_q4.onnx", "onnx/model_quantized.onnx"]) {
    const base = await loadBaseModel(path, { file });
    const targets = base.weights.modules.map((m) => base.weights.get(m)!).filter((t) => t.quantized);
    assert.ok(targets.length >= 14, `${file}: ${targets.length} quantized weights`);
    if (file.endsWith("quantized.onnx")) assert.ok(targets.some((t) => t.kind === "embedding"), "the 8-bit embedding");
    for (const t of targets) {
      const f = float.weights.get(t.module)!;
      const original = float.readWeight(f.initializer);
      const w = f.layout === t.layout ? original : transposed(original, t.inFeatures, t.outFeatures);
      const stored = readQuantizedWeight(base.onnx.graph!, t, file);
      assert.ok(sameStored(requantize(stored, w, t.layout), stored), `${file} ${t.module}`);
      assert.ok(storesWeight(base.onnx.graph!, t, w, file));
      const moved = w.slice();
      moved[0] += 0.25;
      assert.ok(!storesWeight(base.onnx.graph!, t, moved, file), `${t.module}: a changed weight is not the base's`);
      // Symmetric formats (these MatMulNBits and int8 weights): the dequantized weight re-quantizes to the same bytes.
      if (t.kind === "linear") {
        const again = requantize(stored, dequantizeStored(stored, t.layout), t.layout);
        assert.ok(sameStored(again, stored), `${file} ${t.module} round trip`);
      }
    }
    await base.release();
  }
  await float.release();
});
