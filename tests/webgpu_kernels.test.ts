// WGSL LoRA kernels (src/webgpu) against the float64 TypeScript reference on
// ragged shapes, both layouts, one chunk and many. Skipped where WebGPU has
// no adapter (Bun, Node, Deno without a driver).
//
// Tolerance, per element, from float32 forward error bounds (u = 2^-24):
// the GPU sums each (B @ A) entry over the rank in float32 (error below
// rank * u * S, with S = sum_k |B[o,k] A[k,i]|), then rounds scale * sum and
// W + that (2 more roundings); the reference is exact until its one final
// rounding. So |gpu - ref| <= u * ((rank + 2) * |scale| * S + 2 * |W + scale * BA|),
// checked with a factor 2 of margin. DoRA norms add the float32 sum of
// squares (m = adds per thread + reduction levels, relative error m * u) and
// the square root: |gpu - ref| <= ||e||_2 + (m / 2 + 2) * u * norm.
// scaleOutputs is one float32 multiply: exact.
import { test } from "node:test";
import assert from "node:assert/strict";
import { KernelError } from "../src/errors.ts";
import {
  doraNormsReference,
  type LoraDims,
  mergeLoraReference,
  scaleOutputsReference,
  type WeightLayout,
} from "../src/kernels/reference.ts";
import { createWebGpuKernels, probeWebGpu, requestGpuDevice, WebGpuContext } from "../src/webgpu/mod.ts";

const { adapter, description } = await probeWebGpu();
const hasWebGpu = adapter !== undefined;
const skip = hasWebGpu ? false : `no WebGPU adapter: ${description}`;

const U = 2 ** -24;
const LAYOUTS: WeightLayout[] = ["out_in", "in_out"];

/** [out, in, rank, scale]: ragged, ranks across the 16-wide k tiles, rows past one 256-thread stride. */
const SHAPES: [number, number, number, number][] = [
  [1, 1, 1, 1],
  [1, 9, 2, -2],
  [9, 1, 3, 0.5],
  [5, 3, 16, 1.5],
  [3, 5, 17, 0.25],
  [17, 15, 7, -0.75],
  [15, 17, 33, 3],
  [31, 257, 8, 16 / Math.sqrt(8)],
  [257, 31, 5, 0.125],
  [100, 300, 64, 1 / 64],
  [300, 100, 12, 2],
  [3, 4099, 2, 1.5],
  [4099, 3, 3, 0.5],
];

/** Deterministic values in [-1, 1): a 32-bit xorshift. */
function values(n: number, seed: number): Float32Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  return Float32Array.from({ length: n }, () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 31 - 1;
  });
}

interface Case {
  dims: LoraDims;
  scale: number;
  w: Float32Array;
  a: Float32Array;
  b: Float32Array;
  label: string;
}

const CASES: Case[] = SHAPES.map(([outFeatures, inFeatures, rank, scale], n) => ({
  dims: { outFeatures, inFeatures, rank },
  scale,
  w: values(outFeatures * inFeatures, 10 + n),
  a: values(rank * inFeatures, 100 + n),
  b: values(outFeatures * rank, 1000 + n),
  label: `out=${outFeatures} in=${inFeatures} r=${rank} s=${scale.toFixed(3)}`,
}));

/** Index of W[o, i] in a layout. */
function at(dims: LoraDims, layout: WeightLayout, o: number, i: number): number {
  return layout === "out_in" ? o * dims.inFeatures + i : i * dims.outFeatures + o;
}

/** The per-element merge bound of the header, in W's layout. */
function mergeBounds(c: Case, layout: WeightLayout, merged: Float32Array): Float32Array {
  const { outFeatures: out, inFeatures: inf, rank } = c.dims;
  const bound = new Float32Array(out * inf);
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inf; i++) {
      let s = 0;
      for (let k = 0; k < rank; k++) s += Math.abs(c.b[o * rank + k] * c.a[k * inf + i]);
      const j = at(c.dims, layout, o, i);
      bound[j] = 2 * U * ((rank + 2) * Math.abs(c.scale) * s + 2 * Math.abs(merged[j]));
    }
  }
  return bound;
}

function assertWithin(actual: Float32Array, expected: Float32Array, bound: Float32Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let j = 0; j < expected.length; j++) {
    if (!(Math.abs(actual[j] - expected[j]) <= bound[j])) {
      assert.fail(`${what}: element ${j} is ${actual[j]}, reference ${expected[j]}, bound ${bound[j]}`);
    }
  }
}

/** The DoRA norm bound of the header; `m` float32 adds per sum of squares. */
function normBounds(c: Case, layout: WeightLayout, merged: Float32Array, norms: Float32Array): Float32Array {
  const { outFeatures: out, inFeatures: inf } = c.dims;
  const e = mergeBounds(c, layout, merged);
  const m = layout === "out_in" ? Math.ceil(inf / 256) + 8 : inf;
  return norms.map((norm, o) => {
    let e2 = 0;
    for (let i = 0; i < inf; i++) e2 += e[at(c.dims, layout, o, i)] ** 2;
    return 2 * (Math.sqrt(e2) + (m / 2 + 2) * U * norm);
  }).subarray(0, out);
}

for (const maxChunkRows of [undefined, 7]) {
  const chunking = maxChunkRows ? `in chunks of ${maxChunkRows} rows` : "in one chunk";
  test(`WGSL merge, DoRA norms and rescale match the reference on ragged shapes, ${chunking}`, { skip }, async () => {
    const gpu = new WebGpuContext();
    try {
      const k = createWebGpuKernels(await gpu.device(), { maxChunkRows });
      assert.equal(k.backend, "webgpu");
      for (const c of CASES) {
        for (const layout of LAYOUTS) {
          const what = `${c.label} ${layout}`;
          const expected = c.w.slice();
          mergeLoraReference(expected, c.a, c.b, c.dims, c.scale, layout);
          const bound = mergeBounds(c, layout, expected);

          const merged = c.w.slice();
          await k.mergeLora(merged, c.a, c.b, c.dims, c.scale, layout);
          assertWithin(merged, expected, bound, `mergeLora ${what}`);

          const refNorms = doraNormsReference(c.w, c.a, c.b, c.dims, c.scale, layout);
          const w = c.w.slice();
          const norms = await k.doraNorms(w, c.a, c.b, c.dims, c.scale, layout);
          assert.deepEqual(w, c.w, `doraNorms leaves w unchanged, ${what}`);
          assertWithin(norms, refNorms, normBounds(c, layout, expected, refNorms), `doraNorms ${what}`);

          const factors = values(c.dims.outFeatures, 7);
          const scaledRef = c.w.slice();
          scaleOutputsReference(scaledRef, factors, c.dims, layout);
          const scaled = c.w.slice();
          await k.scaleOutputs(scaled, factors, c.dims, layout);
          assert.deepEqual(scaled, scaledRef, `scaleOutputs is exact, ${what}`);
        }
      }
    } finally {
      gpu.destroy();
    }
  });
}

test("mergeWeight (one upload) matches merge.ts's DoRA sequence on the reference", { skip }, async () => {
  const device = await requestGpuDevice();
  try {
    const k = createWebGpuKernels(device, { maxChunkRows: 5 });
    for (const c of CASES.slice(0, 11)) {
      for (const layout of LAYOUTS) {
        const what = `${c.label} ${layout}`;
        const magnitude = values(c.dims.outFeatures, 3).map((v) => 1 + Math.abs(v));
        // The reference DoRA merge: norms of W + sBA, merge, rescale by m / norm.
        const norms = doraNormsReference(c.w, c.a, c.b, c.dims, c.scale, layout);
        const merged = c.w.slice();
        mergeLoraReference(merged, c.a, c.b, c.dims, c.scale, layout);
        const factors = magnitude.map((m, o) => m / norms[o]);
        const expected = merged.slice();
        scaleOutputsReference(expected, factors, c.dims, layout);

        const plain = c.w.slice();
        await k.mergeWeight(plain, c.a, c.b, c.dims, c.scale, layout);
        assertWithin(plain, merged, mergeBounds(c, layout, merged), `mergeWeight ${what}`);

        const dora = c.w.slice();
        await k.mergeWeight(dora, c.a, c.b, c.dims, c.scale, layout, magnitude);
        // Merged-value error times the factor, plus the norm's relative error on the value.
        const e = mergeBounds(c, layout, merged);
        const nb = normBounds(c, layout, merged, norms);
        const bound = expected.map((v, j) => {
          const o = layout === "out_in" ? Math.floor(j / c.dims.inFeatures) : j % c.dims.outFeatures;
          return Math.abs(factors[o]) * e[j] + Math.abs(v) * (nb[o] / norms[o] + 4 * U);
        });
        assertWithin(dora, expected, bound, `mergeWeight DoRA ${what}`);
      }
    }
  } finally {
    device.destroy();
  }
});

test("WebGPU kernels validate their arguments (KernelError) before touching the GPU", { skip }, async () => {
  const device = await requestGpuDevice();
  try {
    const k = createWebGpuKernels(device);
    const dims = { outFeatures: 2, inFeatures: 3, rank: 1 };
    const w = new Float32Array(6);
    await assert.rejects(
      () => k.mergeLora(new Float32Array(5), new Float32Array(3), new Float32Array(2), dims, 1, "out_in"),
      KernelError,
    );
    await assert.rejects(
      () => k.doraNorms(w, new Float32Array(3), new Float32Array(2), dims, NaN, "out_in"),
      KernelError,
    );
    await assert.rejects(() => k.scaleOutputs(w, new Float32Array(3), dims, "in_out"), KernelError);
    await assert.rejects(
      () => k.mergeWeight(w, new Float32Array(3), new Float32Array(2), dims, 1, "out_in", new Float32Array(3)),
      KernelError,
    );
    assert.deepEqual(w, new Float32Array(6));
  } finally {
    device.destroy();
  }
});
