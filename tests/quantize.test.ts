import { test } from "node:test";
import assert from "node:assert/strict";
import {
  GraphProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  type NodeProto,
  NodeProtoSchema,
  TensorProtoSchema,
} from "../src/deps/onnx_proto.ts";
import { edited } from "../src/onnx/proto_edit.ts";
import { UnsupportedError } from "../src/errors.ts";
import { loadKernels } from "../src/kernels/kernels.ts";
import { adapterFeeds, doraScales } from "../src/lora/dynamic_feeds.ts";
import { makeNode, nameAllocator, usedNames } from "../src/onnx/graph_parts.ts";
import { addLoraBranches } from "../src/onnx/lora_branches.ts";
import { encodeModel } from "../src/onnx/model_file.ts";
import { dequantizeNBits, dequantizeQ8, quantizeNBits, quantizeQ8 } from "../src/onnx/quant_math.ts";
import { quantizeModel } from "./support/quantize.ts";
import { readTargetWeight } from "../src/onnx/quantized_weights.ts";
import { indexWeights } from "../src/onnx/weight_index.ts";
import { ADAPTERS, expected, maxAbsDiff, prefillAndStep } from "./support/fixtures.ts";
import { loadAdapter, loadBase, mergedReference, planModules, runner, weightReader } from "./support/dynamic.ts";

/**
 * q4 tolerance. MatMulNBits multiplies by exactly the dequantized weights
 * the reference model holds (`(q - zp) * scale` rounded once to float32, as
 * `dequantizeNBits` computes), so the quantized and dequantized bases agree
 * to float32 summation order (measured: 0 without adapter). With an adapter
 * the branch computes `x W + (x A^T)(s B)^T` while the reference computes
 * `x (W + s B A)`: the same sums regrouped, measured <= 6e-6 on the logits.
 */
const Q4_ATOL = 1e-4;

/**
 * q8 against the float reference. `DynamicQuantizeLinear` rounds every
 * activation entering a projection to a uint8 grid of step
 * `(max(x, 0) - min(x, 0)) / 255` (per tensor, per run), an error of up to
 * half a step per element (about 0.01 for these activations) that the int8
 * product carries through two layers: measured 0.010-0.020 on the base's
 * logits and up to 0.075 with the all-modules adapter (its deltas flow
 * through quantized inputs too). 0.15 bounds that with margin and stays far
 * below what the adapters change (0.7-3.3, checked below), so a missing or
 * misplaced branch cannot pass. The exactness of the q8 path itself is
 * checked separately at Q4_ATOL against a float graph that rounds the
 * activations the same way (QDQ): measured <= 2e-6 there, since the integer
 * product is exact and only the final scaling rounds differently.
 */
const Q8_FLOAT_ATOL = 0.15;

test("q4 blocks follow MatMulNBits' layout: low nibble first, packed zero points, (q - zp) * scale", () => {
  // K = 32 (two blocks of 16), N = 2, stored [K, N].
  const k = 32;
  const w = new Float32Array(k * 2);
  for (let i = 0; i < k; i++) {
    w[i * 2] = i < 16 ? i / 15 : -(i - 16) / 15; // column 0: block 0 in [0, 1], block 1 in [-1, 0]
    w[i * 2 + 1] = 0; // column 1: all zero
  }
  const q = quantizeNBits(w, k, 2, { bits: 4, blockSize: 16, symmetric: false }, "in_out");
  assert.equal(q.packed.length, 2 * 2 * 8);
  // An all-zero block gets scale 0 and zero point 0, as MLAS writes it.
  assert.deepEqual([...q.scales], [Math.fround(1 / 15), Math.fround(1 / 15), 0, 0]);
  // block 0: zp 0, codes 0..15 -> bytes (1 << 4 | 0), (3 << 4 | 2), ...
  assert.deepEqual([...q.packed.slice(0, 8)], [0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe]);
  // block 1: zp 15 (range [-1, 0]), codes 15, 14, ...; zero points of column 0 packed as (15 << 4 | 0).
  assert.deepEqual([...q.packed.slice(8, 10)], [0xef, 0xcd]);
  assert.deepEqual([...q.zeroPoints!], [0xf0, 0]);
  const back = dequantizeNBits(q, "in_out");
  for (let i = 0; i < w.length; i++) assert.ok(Math.abs(back[i] - w[i]) < 1e-6);
});

test("quantize/dequantize round trips stay within half a step, in both layouts", () => {
  const k = 80; // not a multiple of the block size: the last block is padded
  const n = 5;
  const w = Float32Array.from({ length: k * n }, (_, i) => Math.sin(i * 1.7) * (1 + (i % 7)));
  for (const layout of ["in_out", "out_in"] as const) {
    const q4 = quantizeNBits(w, k, n, { bits: 4, blockSize: 32, symmetric: false }, layout);
    const d4 = dequantizeNBits(q4, layout);
    const q8 = quantizeQ8(w, k, n, { signed: true, symmetric: true, perColumn: true }, layout);
    const d8 = dequantizeQ8(q8, layout);
    for (let col = 0; col < n; col++) {
      for (let i = 0; i < k; i++) {
        const idx = layout === "in_out" ? i * n + col : col * k + i;
        const s4 = q4.scales[col * 3 + Math.floor(i / 32)];
        assert.ok(Math.abs(d4[idx] - w[idx]) <= s4 / 2 + 1e-6, `q4 ${layout} (${i}, ${col})`);
        assert.ok(Math.abs(d8[idx] - w[idx]) <= q8.scales[col] / 2 + 1e-6, `q8 ${layout} (${i}, ${col})`);
      }
    }
  }
  // Reading other bit widths and the default zero point 2^(bits-1).
  const eight = dequantizeNBits({
    k: 16,
    n: 1,
    bits: 8,
    blockSize: 16,
    packed: new Uint8Array(16).fill(130),
    scales: new Float32Array([0.5]),
  }, "in_out");
  assert.ok(eight.every((v) => v === 1));
  const two = dequantizeNBits({
    k: 16,
    n: 1,
    bits: 2,
    blockSize: 16,
    packed: new Uint8Array(4).fill(0b11100100),
    scales: new Float32Array([1]),
  }, "in_out");
  assert.deepEqual([...two.slice(0, 4)], [-2, -1, 0, 1]);
  assert.throws(() => quantizeNBits(w, k, n, { bits: 4, blockSize: 24, symmetric: false }, "in_out"), RangeError);
});

for (const baseName of ["llama-tiny", "gpt2-tiny"]) {
  for (const format of ["q4", "q8"] as const) {
    test(`${baseName} ${format}: every projection quantized, indexed by module as a quantized linear target`, async () => {
      const base = await loadBase(baseName);
      const before = encodeModel(base.model);
      const q = quantizeModel(base.model, { format, blockSize: 32 });
      assert.deepEqual(encodeModel(base.model), before);
      const linear = base.weights.modules.filter((m) => base.weights.get(m)!.kind === "linear");
      assert.equal(q.quantized.length, linear.length);
      const qi = indexWeights(q.model.graph!);
      const di = indexWeights(q.dequantized.graph!);
      assert.deepEqual([...qi.modules].sort(), [...base.weights.modules].sort());
      for (const m of base.weights.modules) {
        const f = base.weights.get(m)!;
        const t = qi.get(m)!;
        assert.equal(t.kind, f.kind);
        assert.equal(t.inFeatures, f.inFeatures, m);
        assert.equal(t.outFeatures, f.outFeatures, m);
        if (f.kind === "embedding") {
          assert.equal(t.quantized, undefined);
          continue;
        }
        assert.equal(t.quantized?.op, format === "q4" ? "MatMulNBits" : "MatMulInteger");
        assert.match(t.nodeName, format === "q4" ? /_Q4$/ : /_quant$/);
        // The bias survives (GPT-2's Gemm becomes MatMul + Add) and stays a float initializer.
        assert.equal(t.bias?.initializer, f.bias?.initializer, m);
        // The quantized weight reads back as exactly the dequantized reference's weight.
        const deq = readTargetWeight(q.dequantized.graph!, di.get(m)!, "model.onnx");
        const back = readTargetWeight(q.model.graph!, t, "model.onnx");
        const asLayout = t.layout === di.get(m)!.layout ? back : transpose(back, t);
        assert.deepEqual(asLayout, deq, m);
      }
      // No float projection weight is left behind in the quantized model.
      const floatWeights = new Set(linear.map((m) => base.weights.get(m)!.initializer));
      const kept = q.model.graph!.initializer.filter((t) => floatWeights.has(t.name)).map((t) => t.name);
      assert.deepEqual(kept, []);
    });

    test(`${baseName} ${format}: the quantized base runs in onnxruntime-web and matches its dequantized float reference`, async () => {
      const base = await loadBase(baseName);
      const q = quantizeModel(base.model, { format });
      const e = await expected(baseName);
      const rq = await runner(q.model, base.config);
      const rd = await runner(q.dequantized, base.config);
      const oq = await prefillAndStep(rq, e);
      const od = await prefillAndStep(rd, e);
      const tol = format === "q4" ? Q4_ATOL : Q8_FLOAT_ATOL;
      assert.ok(maxAbsDiff(oq.logits, od.logits) < tol, `prefill ${maxAbsDiff(oq.logits, od.logits)}`);
      assert.ok(maxAbsDiff(oq.nextLogits, od.nextLogits) < tol);
      // Quantization changed the weights: the reference is not the float base.
      assert.ok(maxAbsDiff(od.logits, e.logits) > 1e-3);
      await Promise.all([rq.session.release(), rd.session.release()]);
    });

    for (const [name] of ADAPTERS.filter(([, b]) => b === baseName)) {
      test(`${baseName} ${format} + ${name} through branches equals the dequantized base with the adapter merged`, async () => {
        const base = await loadBase(baseName);
        const q = quantizeModel(base.model, { format });
        const qi = indexWeights(q.model.graph!);
        const di = indexWeights(q.dequantized.graph!);
        const adapter = await loadAdapter(name, qi);
        const { modules, dora } = planModules(adapter.plan);
        const { model, branches } = addLoraBranches(q.model, qi, modules, { dora });
        // DoRA norms come from the dequantized weights, as PEFT's DoRA on a quantized layer computes them.
        const scales = doraScales(adapter.plan, weightReader(q.model), adapter.tensor, await loadKernels());
        const feeds = adapterFeeds(branches, [{ ...adapter, doraScales: scales }]);
        const r = await runner(model, base.config, feeds);
        const e = await expected(baseName);
        const out = await prefillAndStep(r, e);
        const ref = await runner(mergedReference(q.dequantized, di, [await loadAdapter(name, di)]), base.config);
        const want = await prefillAndStep(ref, e);
        const tol = format === "q4" ? Q4_ATOL : Q8_FLOAT_ATOL;
        assert.ok(maxAbsDiff(out.logits, want.logits) < tol, `prefill max diff ${maxAbsDiff(out.logits, want.logits)}`);
        assert.ok(
          maxAbsDiff(out.nextLogits, want.nextLogits) < tol,
          `decode max diff ${maxAbsDiff(out.nextLogits, want.nextLogits)}`,
        );
        // The adapter moves the quantized model's logits far more than the tolerance.
        r.extra = adapterFeeds(branches, []);
        const off = await prefillAndStep(r, e);
        assert.ok(maxAbsDiff(off.logits, out.logits) > 3 * Q8_FLOAT_ATOL);
        if (format === "q8") {
          // Exactness of the q8 path: a float graph that rounds each projection's input the
          // way DynamicQuantizeLinear does (QDQ), with the branch on the unrounded input.
          const sim = simulateDynamicQuantization(addLoraBranches(q.dequantized, di, modules, { dora }).model, di);
          const rs = await runner(sim, base.config, feeds);
          const exact = await prefillAndStep(rs, e);
          assert.ok(
            maxAbsDiff(out.logits, exact.logits) < Q4_ATOL,
            `q8 vs QDQ float ${maxAbsDiff(out.logits, exact.logits)}`,
          );
          assert.ok(maxAbsDiff(out.nextLogits, exact.nextLogits) < Q4_ATOL);
          await rs.session.release();
        }
        await Promise.all([r.session.release(), ref.session.release()]);
      });
    }
  }
}

test("quantizeModel: Gemm left in float with gemm: false; bad formats and float16 weights refused", async () => {
  const base = await loadBase("gpt2-tiny");
  const q = quantizeModel(base.model, { format: "q4", gemm: false });
  assert.deepEqual(q.quantized, ["/lm_head/MatMul_Q4"]);
  const qi = indexWeights(q.model.graph!);
  assert.equal(qi.get("transformer.h.0.attn.c_attn")!.quantized, undefined);
  assert.throws(() => quantizeModel(base.model, { format: "q3" as "q4" }), UnsupportedError);
  const graph = base.model.graph!;
  const f16 = graph.initializer.map((t) =>
    t.name === "onnx::MatMul_488" ? edited(TensorProtoSchema, t, { dataType: 10 }) : t
  );
  const model = edited(ModelProtoSchema, base.model, { graph: edited(GraphProtoSchema, graph, { initializer: f16 }) });
  assert.throws(() => quantizeModel(model, { format: "q8" }), /not float32/);
});

/** `[out, in]` <-> `[in, out]` for a target's dims. */
function transpose(w: Float32Array, t: { inFeatures: number; outFeatures: number; layout: string }): Float32Array {
  const [rows, cols] = t.layout === "out_in" ? [t.outFeatures, t.inFeatures] : [t.inFeatures, t.outFeatures];
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c];
  return out;
}

/**
 * Rewrites each projection of the float index (MatMul/Gemm, found by node
 * name, so LoRA branch nodes keep reading the float input) to read
 * `DequantizeLinear(DynamicQuantizeLinear(x))`.
 */
function simulateDynamicQuantization(model: ModelProto, weights: ReturnType<typeof indexWeights>): ModelProto {
  const graph = model.graph!;
  const projections = new Set(
    weights.modules.filter((m) => weights.get(m)!.kind === "linear").map((m) => weights.get(m)!.nodeName),
  );
  const fresh = nameAllocator(usedNames(graph));
  const rounded = new Map<string, string>();
  const node: NodeProto[] = [];
  for (const n of graph.node) {
    if (!projections.has(n.name) || !(n.opType === "MatMul" || n.opType === "Gemm")) {
      node.push(n);
      continue;
    }
    const x = n.input[0];
    let xr = rounded.get(x);
    if (!xr) {
      const [q, s, z] = [fresh(`${x}_q`), fresh(`${x}_s`), fresh(`${x}_z`)];
      xr = fresh(`${x}_qdq`);
      node.push(
        makeNode("DynamicQuantizeLinear", [x], [q, s, z], `${x}_sim_q`),
        makeNode("DequantizeLinear", [q, s, z], [xr], `${x}_sim_dq`),
      );
      rounded.set(x, xr);
    }
    node.push(edited(NodeProtoSchema, n, { input: [xr, ...n.input.slice(1)] }));
  }
  return edited(ModelProtoSchema, model, { graph: edited(GraphProtoSchema, graph, { node }) });
}
