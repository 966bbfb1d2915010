// The WASM SIMD optimizer kernels against the TypeScript reference (which
// tests/train.test.ts checks against PyTorch through the trainer): AdamW and
// SGD steps, sums of squares and scaling, on lengths that exercise the SIMD
// body and the scalar tail.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createWasmOptimizer } from "../src/kernels/optimizer_wasm.ts";
import { clipGradNorm, referenceOptimizer, totalNorm } from "../src/train/optimizers.ts";
import { createRng } from "../src/generate/rng.ts";

function random(n: number, seed: number, scale = 1): Float32Array {
  const rng = createRng(seed);
  return Float32Array.from({ length: n }, () => (rng.uniform() * 2 - 1) * scale);
}

function close(a: Float32Array, b: Float32Array, rel: number, what: string) {
  let worst = 0;
  const scale = b.reduce((m, v) => Math.max(m, Math.abs(v)), 0) || 1;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / scale);
  assert.ok(worst <= rel, `${what}: relative max diff ${worst}`);
}

for (const n of [1, 7, 64, 1027]) {
  test(`wasm AdamW, SGD, norms and scaling match the TypeScript reference (n=${n})`, async () => {
    const wasm = await createWasmOptimizer();
    assert.equal(wasm.backend, "wasm-simd");
    const p = [random(n, 1), random(n, 1)];
    const m = [new Float32Array(n), new Float32Array(n)];
    const v = [new Float32Array(n), new Float32Array(n)];
    for (let step = 1; step <= 5; step++) {
      const g = random(n, 10 + step, 0.1);
      const s = { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1, step };
      wasm.adamw(p[0], g, m[0], v[0], s);
      referenceOptimizer.adamw(p[1], g, m[1], v[1], s);
    }
    close(p[0], p[1], 1e-6, "adamw params");
    close(m[0], m[1], 1e-6, "adamw exp_avg");
    close(v[0], v[1], 1e-6, "adamw exp_avg_sq");
    for (
      const opts of [{ momentum: 0.9, nesterov: false, dampening: 0.1 }, {
        momentum: 0.5,
        nesterov: true,
        dampening: 0,
      }]
    ) {
      const q = [random(n, 2), random(n, 2)];
      const buf = [new Float32Array(n), new Float32Array(n)];
      for (let step = 0; step < 4; step++) {
        const g = random(n, 20 + step);
        const s = { lr: 0.1, weightDecay: 0.01, first: step === 0, ...opts };
        wasm.sgd(q[0], g, buf[0], s);
        referenceOptimizer.sgd(q[1], g, buf[1], s);
      }
      close(q[0], q[1], 1e-6, `sgd ${JSON.stringify(opts)}`);
    }
    const gs = [random(n, 3), random(n + 3, 4)];
    const norm = totalNorm(referenceOptimizer, gs);
    assert.ok(Math.abs(totalNorm(wasm, gs) - norm) <= 1e-12 * Math.max(1, norm) * n);
    const clipped = gs.map((g) => g.slice());
    assert.equal(clipGradNorm(wasm, clipped, norm / 2), totalNorm(wasm, gs));
    close(clipped[1], gs[1].map((x) => x * ((norm / 2) / (norm + 1e-6))), 1e-6, "clipped");
  });
}
