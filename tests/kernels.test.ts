// LoRA kernels: the wasm-simd and js backends against the TypeScript
// reference on ragged shapes, argument validation (throws KernelError, leaves inputs untouched) and the embedded
// module's integrity.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { KernelError } from "../src/errors.ts";
import {
  doraNormsReference,
  loadKernels,
  type LoraDims,
  type LoraKernels,
  mergeLoraReference,
  scaleOutputsReference,
  simdSupported,
  type WeightLayout,
} from "../src/kernels/mod.ts";
import { decodeBase64 } from "../src/kernels/base64.ts";
import { LORA_KERNEL_WASM_BASE64, LORA_KERNEL_WASM_SHA256 } from "../src/kernels/lora_kernel_wasm.ts";

/** A deliberately ill-typed argument, for the validation tests. */
function bad<T>(value: unknown): T {
  return value as T;
}

const wasm = await loadKernels({ backend: "wasm-simd" });
const js = await loadKernels({ backend: "js" });
const BACKENDS: LoraKernels[] = [wasm, js];
const LAYOUTS: WeightLayout[] = ["out_in", "in_out"];

/** [outFeatures, inFeatures, rank, scale]: ragged dims, ranks 1..16 and a few larger. */
const SHAPES: [number, number, number, number][] = [
  [1, 1, 1, 1],
  [1, 7, 1, 2],
  [7, 1, 3, 0.5],
  [3, 5, 2, 2],
  [5, 3, 4, 1.5],
  [7, 13, 5, -0.75],
  [13, 7, 6, 4],
  [17, 33, 7, 0.125],
  [33, 17, 8, 2],
  [65, 13, 9, 1 / 3],
  [13, 65, 10, 0.7],
  [127, 5, 11, 2],
  [5, 127, 12, 1.25],
  [33, 65, 13, 16 / Math.sqrt(13)],
  [65, 127, 14, 0.5],
  [127, 33, 15, 3],
  [17, 17, 16, 1],
  [129, 131, 3, 0.25],
  [3, 257, 1, 8],
  [257, 9, 16, 0.0625],
  [8, 16, 4, 2],
  [64, 64, 8, 1],
  [255, 100, 33, 0.3],
  [31, 513, 64, 1 / 64],
  // Larger than the wasm backend's 64 Ki-float window: W streams in blocks.
  [301, 515, 7, 0.5],
  [3, 70001, 2, 1.5],
  [70001, 3, 3, 0.5],
];

/** Deterministic uniform values in [-1, 1) (mulberry32). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

function randomArray(n: number, seed: number): Float32Array {
  const next = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = next();
  return out;
}

/** |actual - expected| <= 1e-5 * max(1, |expected|) for every element. */
function assertClose(
  actual: Float32Array,
  expected: Float32Array,
  what: string,
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const tol = 1e-5 * Math.max(1, Math.abs(expected[i]));
    if (!(Math.abs(actual[i] - expected[i]) <= tol)) {
      assert.fail(
        `${what}: element ${i} is ${actual[i]}, reference ${expected[i]}`,
      );
    }
  }
}

interface Case {
  dims: LoraDims;
  scale: number;
  w: Float32Array;
  a: Float32Array;
  b: Float32Array;
  label: string;
}

function cases(): Case[] {
  return SHAPES.map(([outFeatures, inFeatures, rank, scale], n) => ({
    dims: { outFeatures, inFeatures, rank },
    scale,
    w: randomArray(outFeatures * inFeatures, 1000 + n),
    a: randomArray(rank * inFeatures, 2000 + n),
    b: randomArray(outFeatures * rank, 3000 + n),
    label: `out=${outFeatures} in=${inFeatures} r=${rank}`,
  }));
}

test("SIMD128 feature detection is true here and auto picks wasm-simd", async () => {
  assert.equal(simdSupported(), true);
  assert.equal((await loadKernels()).backend, "wasm-simd");
  assert.equal((await loadKernels({ backend: "auto" })).backend, "wasm-simd");
  assert.equal(wasm.backend, "wasm-simd");
  assert.equal(js.backend, "js");
});

test("loadKernels rejects an unknown backend with KernelError", async () => {
  await assert.rejects(
    () => loadKernels({ backend: bad("gpu") }),
    KernelError,
  );
});

test("the embedded module matches its sha256 and wasm/lora_kernel.wasm", async () => {
  const bytes = decodeBase64(LORA_KERNEL_WASM_BASE64);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const hex = Array.from(digest, (x) => x.toString(16).padStart(2, "0")).join(
    "",
  );
  assert.equal(hex, LORA_KERNEL_WASM_SHA256);
  const file = readFileSync(
    new URL("../wasm/lora_kernel.wasm", import.meta.url),
  );
  assert.deepEqual(new Uint8Array(file), bytes);
  const module = new WebAssembly.Module(bytes);
  assert.deepEqual(WebAssembly.Module.imports(module), []);
});

test("SHAPES has at least 20 shapes, most of them ragged", () => {
  assert.ok(SHAPES.length >= 20);
  const ragged = SHAPES.filter(([o, i]) => o % 4 !== 0 && i % 4 !== 0);
  assert.ok(ragged.length >= 15);
});

for (const kernels of BACKENDS) {
  const name = kernels.backend;
  for (const layout of LAYOUTS) {
    test(`${name} mergeLora ${layout} equals the reference`, () => {
      for (const c of cases()) {
        const expected = c.w.slice();
        mergeLoraReference(expected, c.a, c.b, c.dims, c.scale, layout);
        const actual = c.w.slice();
        kernels.mergeLora(actual, c.a, c.b, c.dims, c.scale, layout);
        assertClose(actual, expected, `${c.label} ${layout}`);
      }
    });

    test(`${name} doraNorms ${layout} equals the reference and leaves w unchanged`, () => {
      for (const c of cases()) {
        const expected = doraNormsReference(
          c.w,
          c.a,
          c.b,
          c.dims,
          c.scale,
          layout,
        );
        const w = c.w.slice();
        const actual = kernels.doraNorms(w, c.a, c.b, c.dims, c.scale, layout);
        assertClose(actual, expected, `${c.label} ${layout}`);
        assert.deepEqual(w, c.w);
      }
    });

    test(`${name} scaleOutputs ${layout} equals the reference`, () => {
      for (const [n, c] of cases().entries()) {
        const factors = randomArray(c.dims.outFeatures, 4000 + n).map((x) => 2 * x);
        const expected = c.w.slice();
        scaleOutputsReference(expected, factors, c.dims, layout);
        const actual = c.w.slice();
        kernels.scaleOutputs(actual, factors, c.dims, layout);
        assertClose(actual, expected, `${c.label} ${layout}`);
      }
    });
  }

  test(`${name} DoRA merge (merge, norms, rescale) equals the reference in both layouts`, () => {
    for (const layout of LAYOUTS) {
      for (const [n, c] of cases().entries()) {
        const magnitude = randomArray(c.dims.outFeatures, 5000 + n).map((x) => 1 + x / 2);
        const dora = (k: {
          doraNorms: typeof doraNormsReference;
          mergeLora: typeof mergeLoraReference;
          scaleOutputs: typeof scaleOutputsReference;
        }) => {
          const w = c.w.slice();
          const norms = k.doraNorms(w, c.a, c.b, c.dims, c.scale, layout);
          k.mergeLora(w, c.a, c.b, c.dims, c.scale, layout);
          k.scaleOutputs(
            w,
            magnitude.map((m, o) => m / norms[o]),
            c.dims,
            layout,
          );
          return w;
        };
        const expected = dora({
          doraNorms: doraNormsReference,
          mergeLora: mergeLoraReference,
          scaleOutputs: scaleOutputsReference,
        });
        assertClose(dora(kernels), expected, `${c.label} ${layout}`);
      }
    }
  });

  test(`${name} mergeLora on the doc example and on subarray views`, () => {
    const w = new Float32Array(6);
    kernels.mergeLora(
      w,
      new Float32Array([1, 2, 3]),
      new Float32Array([1, -1]),
      { outFeatures: 2, inFeatures: 3, rank: 1 },
      2,
      "out_in",
    );
    assert.deepEqual(w, new Float32Array([2, 4, 6, -2, -4, -6]));
    // Views with a byte offset into larger buffers: only the view changes.
    const big = new Float32Array(20).fill(7);
    const view = big.subarray(5, 11);
    const aBig = new Float32Array([9, 1, 2, 3, 9]);
    kernels.mergeLora(
      view,
      aBig.subarray(1, 4),
      new Float32Array([1, -1]),
      { outFeatures: 2, inFeatures: 3, rank: 1 },
      1,
      "in_out",
    );
    assert.deepEqual(Array.from(big.subarray(0, 5)), [7, 7, 7, 7, 7]);
    assert.deepEqual(Array.from(view), [8, 6, 9, 5, 10, 4]);
    assert.deepEqual(Array.from(big.subarray(11)), Array(9).fill(7));
  });
}

// ------------------------------------------------------------------ bad input

/** Calls `fn`, expects KernelError, and checks every array kept its contents. */
function assertRejects(
  fn: () => unknown,
  arrays: ArrayLike<number>[],
  what: string,
): void {
  const before = arrays.map((x) => Array.from(x));
  assert.throws(fn, KernelError, what);
  arrays.forEach((x, i) => assert.deepEqual(Array.from(x), before[i], `${what}: input changed`));
}

for (const kernels of BACKENDS) {
  const name = kernels.backend;
  const dims = { outFeatures: 3, inFeatures: 5, rank: 2 };
  const fresh = () => ({
    w: randomArray(15, 1),
    a: randomArray(10, 2),
    b: randomArray(6, 3),
    f: randomArray(3, 4),
  });
  const badDims: [string, LoraDims][] = [
    ["rank 0", { ...dims, rank: 0 }],
    ["rank -1", { ...dims, rank: -1 }],
    ["rank 1.5", { ...dims, rank: 1.5 }],
    ["out 0", { ...dims, outFeatures: 0 }],
    ["in 2.5", { ...dims, inFeatures: 2.5 }],
    ["in NaN", { ...dims, inFeatures: NaN }],
    ["rank as string", { ...dims, rank: bad("2") }],
    ["dims null", bad(null)],
  ];

  test(`${name} merge and doraNorms reject bad input before touching memory`, () => {
    for (const method of ["mergeLora", "doraNorms"] as const) {
      for (const layout of LAYOUTS) {
        const { w, a, b } = fresh();
        const call = (
          ww: Float32Array,
          aa: Float32Array,
          bb: Float32Array,
          d: LoraDims,
          s: number,
          l: WeightLayout,
        ) =>
        () => kernels[method](ww, aa, bb, d, s, l);
        const all = [w, a, b];
        for (const [label, d] of badDims) {
          assertRejects(call(w, a, b, d, 1, layout), all, label);
        }
        for (const s of [NaN, Infinity, -Infinity]) {
          assertRejects(call(w, a, b, dims, s, layout), all, `scale ${s}`);
        }
        assertRejects(
          call(w.subarray(1), a, b, dims, 1, layout),
          all,
          "short w",
        );
        assertRejects(
          call(w, a.subarray(1), b, dims, 1, layout),
          all,
          "short a",
        );
        assertRejects(
          call(w, a, b.subarray(1), dims, 1, layout),
          all,
          "short b",
        );
        assertRejects(call(w, b, a, dims, 1, layout), all, "a and b swapped");
        assertRejects(
          call(w, a, b, { ...dims, outFeatures: 5, inFeatures: 3 }, 1, layout),
          all,
          "transposed dims",
        );
        assertRejects(
          call(w, a, b, dims, 1, bad("oi")),
          all,
          "unknown layout",
        );
        assertRejects(
          call(bad(new Float64Array(15)), a, b, dims, 1, layout),
          all,
          "f64 w",
        );
      }
    }
  });

  test(`${name} scaleOutputs rejects bad input before touching memory`, () => {
    const { w, f } = fresh();
    const scaleAll = [w, f];
    for (const [label, d] of badDims) {
      assertRejects(
        () => kernels.scaleOutputs(w, f, d, "out_in"),
        scaleAll,
        label,
      );
    }
    assertRejects(
      () => kernels.scaleOutputs(w, f.subarray(1), dims, "in_out"),
      scaleAll,
      "short f",
    );
    assertRejects(
      () => kernels.scaleOutputs(w.subarray(2), f, dims, "out_in"),
      scaleAll,
      "short w",
    );
    assertRejects(
      () => kernels.scaleOutputs(w, f, dims, bad(undefined)),
      scaleAll,
      "no layout",
    );
  });
}

test("reference functions validate too (KernelError, inputs untouched)", () => {
  const dims = { outFeatures: 2, inFeatures: 2, rank: 1 };
  const w = randomArray(4, 1);
  const a = randomArray(2, 2);
  const b = randomArray(2, 3);
  assertRejects(
    () => mergeLoraReference(w, a, b, dims, NaN, "out_in"),
    [w],
    "merge scale",
  );
  assertRejects(
    () => doraNormsReference(w, a, b, { ...dims, rank: 0 }, 1, "in_out"),
    [w],
    "norms rank",
  );
  assertRejects(() => scaleOutputsReference(w, a.subarray(1), dims, "out_in"), [
    w,
  ], "scale f");
});

test("wasm-simd reuses its memory across calls instead of growing each time", () => {
  const dims = { outFeatures: 300, inFeatures: 200, rank: 8 };
  const w = randomArray(300 * 200, 1);
  const a = randomArray(8 * 200, 2);
  const b = randomArray(300 * 8, 3);
  // The same call many times must not run out of memory (the arena resets).
  for (let i = 0; i < 200; i++) {
    wasm.mergeLora(w, a, b, dims, 1e-3, i % 2 ? "out_in" : "in_out");
  }
  assert.ok(w.every(Number.isFinite));
});
